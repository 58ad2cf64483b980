using ScottPlot;

namespace Wren.Profiling;

/// <summary>Charts of profiles, written as PNG and SVG side by side.</summary>
public static class ProfilePlots
{
    /// <summary>Writes latency-vs-context and throughput-vs-batch charts into <paramref name="folder"/>; returns the files.</summary>
    public static IReadOnlyList<string> Write(IReadOnlyList<ModelProfile> profiles, string folder)
    {
        Directory.CreateDirectory(folder);
        var files = new List<string>();
        files.AddRange(Save(Chart("Decode latency vs context (batch 1)", "context (tokens)", "ms / token",
            profiles.Select(p => (p.Name, p.LatencyByContext.Select(c => (double)c.Context).ToArray(), p.LatencyByContext.Select(c => c.MsPerToken.Median).ToArray()))),
            Path.Combine(folder, "latency-vs-context")));
        files.AddRange(Save(Chart($"Decode throughput vs batch (context {profiles.FirstOrDefault()?.ThroughputContext})", "batch", "tokens / s",
            profiles.Select(p => (p.Name, p.Throughput.Select(t => (double)t.Batch).ToArray(), p.Throughput.Select(t => t.TokensPerSecond.Median).ToArray()))),
            Path.Combine(folder, "throughput-vs-batch")));
        return files;
    }

    /// <summary>A line chart with one series per (name, xs, ys).</summary>
    public static Plot Chart(string title, string xLabel, string yLabel, IEnumerable<(string Name, double[] X, double[] Y)> series)
    {
        var plot = new Plot();
        foreach (var (name, x, y) in series)
            if (x.Length > 0) plot.Add.Scatter(x, y).LegendText = name;
        plot.Title(title);
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Axes.Left.Label.Text = yLabel;
        plot.ShowLegend();
        return plot;
    }

    public static string[] Save(Plot plot, string pathWithoutExtension, int width = 800, int height = 500)
    {
        plot.SavePng(pathWithoutExtension + ".png", width, height);
        plot.SaveSvg(pathWithoutExtension + ".svg", width, height);
        return [pathWithoutExtension + ".png", pathWithoutExtension + ".svg"];
    }
}
