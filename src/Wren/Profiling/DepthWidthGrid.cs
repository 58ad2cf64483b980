using TorchSharp;
using Wren.Common;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>Measured batch-1 decode latency of one (depth, width) shape.</summary>
public sealed record GridPoint(int Depth, int Width, long Parameters, Measurement MsPerToken);

/// <summary>
/// The latency side of the depth–width study: a block pattern repeated <c>depth</c> times at each width, decode
/// latency measured for every pair (random weights), for the scaling-law fit and the budgeted choice of (D, W).
/// </summary>
public static class DepthWidthGrid
{
    public static IReadOnlyList<GridPoint> Measure(HybridConfig template, IReadOnlyList<string> pattern, IReadOnlyList<int> depths,
                                                   IReadOnlyList<int> widths,
                                                   int promptTokens, int decodeTokens, int repeats, IProgress<string>? progress = null)
    {
        if (pattern.Count == 0) throw new WrenException("the block pattern is empty");
        using var _ = no_grad();
        var points = new List<GridPoint>();
        foreach (int depth in depths)
            foreach (int width in widths)
            {
                progress?.Report($"depth {depth} × width {width}");
                var config = template.WithShape(Enumerable.Range(0, depth).SelectMany(_ => pattern).ToList(), width);
                using var model = new HybridForCausalLM(config);
                Initialization.Apply(model, seed: 0);
                model.eval();
                using var cache = LatencyProfiler.Prefilled(model, promptTokens, decodeTokens * (repeats + 2));
                var ms = Measurement.Repeat(() => LatencyProfiler.DecodeSeconds(model, cache, decodeTokens, null) / decodeTokens * 1e3,
                                            repeats);
                points.Add(new GridPoint(depth, width, model.parameters().Sum(p => p.NumberOfElements), ms));
            }
        return points;
    }

    /// <summary>Heatmap of ms/token (rows: depth, columns: width), as PNG and SVG.</summary>
    public static string[] Heatmap(IReadOnlyList<GridPoint> points, string pathWithoutExtension)
    {
        var depths = points.Select(p => p.Depth).Distinct().Order().ToArray();
        var widths = points.Select(p => p.Width).Distinct().Order().ToArray();
        var data = new double[depths.Length, widths.Length];
        foreach (var p in points) data[depths.Length - 1 - Array.IndexOf(depths, p.Depth), Array.IndexOf(widths,
            p.Width)] = p.MsPerToken.Median;
        var plot = new ScottPlot.Plot();
        var map = plot.Add.Heatmap(data);
        map.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(map).Label = "ms / token";
        for (int r = 0; r < depths.Length; r++)
            for (int c = 0; c < widths.Length; c++)
            {
                var label = plot.Add.Text($"{data[r, c]:F2}", c, depths.Length - 1 - r);
                label.LabelFontColor = ScottPlot.Colors.White;
                label.LabelAlignment = ScottPlot.Alignment.MiddleCenter;
            }
        plot.Axes.Bottom.SetTicks(widths.Select((_, i) => (double)i).ToArray(), widths.Select(w => w.ToString()).ToArray());
        plot.Axes.Left.SetTicks(depths.Select((_, i) => (double)i).ToArray(), depths.Select(d => d.ToString()).ToArray());
        plot.Axes.Bottom.Label.Text = "width (hidden size)";
        plot.Axes.Left.Label.Text = "depth (blocks)";
        plot.Title("Decode latency, batch 1");
        return Charts.Save(plot, pathWithoutExtension);
    }
}
