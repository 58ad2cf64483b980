using ScottPlot;

namespace Wren.Common;

/// <summary>Line charts written as PNG and SVG side by side (ScottPlot): training curves, profiles, fronts.</summary>
internal static class Charts
{
    /// <summary>A line chart with one series per (name, xs, ys); empty series are skipped.</summary>
    public static Plot Lines(string title, string xLabel, string yLabel, IEnumerable<(string Name, double[] X, double[] Y)> series)
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

    /// <summary>Writes <c>path.png</c> and <c>path.svg</c>; returns both paths.</summary>
    public static string[] Save(Plot plot, string pathWithoutExtension, int width = 800, int height = 500)
    {
        plot.SavePng(pathWithoutExtension + ".png", width, height);
        plot.SaveSvg(pathWithoutExtension + ".svg", width, height);
        return [pathWithoutExtension + ".png", pathWithoutExtension + ".svg"];
    }
}
