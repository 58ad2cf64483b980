using Wren.Common;
using Wren.Data;
using Wren.Distributed;
using Wren.Evaluation;
using Wren.Models;
using Wren.Training;

namespace Wren.Scaling;

/// <summary>What <c>wren scaling sweep</c> asks for: the pattern, the grid, the per-shape training and the decode timing.</summary>
/// <param name="HoldoutDepths">Depths kept out of the fit to test extrapolation; empty: the largest.</param>
/// <param name="BudgetMs">Decode budget (ms/token) for the recommendation; null: the median measured.</param>
/// <param name="Evaluation">Tasks to score each trained shape on (mean acc, <see cref="EvalReport.Average"/>); null: none.</param>
public sealed record SweepOptions(HybridConfig Template, IReadOnlyList<string> Pattern, IReadOnlyList<int> Depths,
                                  IReadOnlyList<int> Widths,
                                  TrainingOptions Proxy, int DecodeTokens, IReadOnlyList<int> HoldoutDepths, double? BudgetMs = null,
                                  bool RemeasureLatency = false, EvalOptions? Evaluation = null);

/// <summary>A finished sweep: every shape, the analysis (fit, held-out errors, pick) and how it was run.</summary>
public sealed record SweepReport(SweepOptions Options, IReadOnlyList<SweepPoint> Points, SweepAnalysis Analysis, double BudgetMs)
{
    /// <summary>
    /// Trains and times every shape (resuming from <c>sweep.json</c>), fits L(D, W) without the held-out depths, and
    /// writes <c>frontier.png/svg</c> and <c>report.md</c> into <paramref name="folder"/>. With a <paramref name="group"/> of
    /// several ranks each shape trains across them and rank 0 does the rest; the other ranks return null.
    /// </summary>
    public static SweepReport? Run(SweepOptions options, TokenDataset data, string folder, IProgress<string>? progress = null,
                                   CancellationToken cancellation = default, ProcessGroup? group = null)
    {
        foreach (var layer in options.Pattern) OperatorRegistry.Get(layer);
        var held = options.HoldoutDepths.Count > 0 ? options.HoldoutDepths : [options.Depths.Max()];
        var points = DepthWidthSweep.Run(options.Template, options.Pattern, options.Depths, options.Widths, data, options.Proxy,
                                         options.DecodeTokens,
                                         folder, progress, cancellation, options.RemeasureLatency, options.Evaluation, group);
        if (group is { IsRoot: false }) return null;
        double budget = options.BudgetMs ?? points.Select(p => p.DecodeMsPerToken).Order().ElementAt(points.Count / 2);
        var analysis = DepthWidthSweep.Analyze(points, p => held.Contains(p.Depth), budget);
        DepthWidthSweep.FrontierPlot(points, Path.Combine(folder, "frontier"));
        var report = new SweepReport(options with { HoldoutDepths = held }, points, analysis, budget);
        AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), report.ToMarkdown());
        return report;
    }

    public string ToMarkdown()
    {
        var held = Options.HoldoutDepths;
        bool accuracy = Points.Any(p => p.Accuracy is not null);   // the mean acc column only when tasks were scored
        var lines = new List<string>
        {
            "# Depth–width sweep", "",
            $"Pattern `{string.Join(" ", Options.Pattern)}` × D at width W, {Options.Proxy.TotalSteps} steps × " +
            $"{Options.Proxy.TokensPerStep:N0} tokens each; " +
            "latency: batch-1 decode ms/token, measured interleaved with a reference model (the pattern once at the smallest width; " +
            "× reference = the ratio to it) and put at one machine speed" +
            (accuracy ? "; mean acc over the evaluation tasks where measured." : "."), "",
            "| depth | width | params | val loss | val PPL | decode ms/token | × reference | fit |" + (accuracy ? " mean acc |" : ""),
            "|---|---|---|---|---|---|---|---|" + (accuracy ? "---|" : ""),
        };
        lines.AddRange(Points.OrderBy(p => p.Depth).ThenBy(p => p.Width).Select(p =>
            $"| {p.Depth} | {p.Width} | {p.Parameters / 1e6:F2}M | {p.ValLoss:F4} | {p.ValPerplexity:F2} | {p.DecodeMsPerToken:F2} | " +
            $"{p.DecodeRatio:F2} | " +
            $"{(held.Contains(p.Depth) ? "held out" : "fitted")} |" + (accuracy ? $" {p.Accuracy:F4} |" : "")));
        lines.AddRange(["", $"Fitted on perplexity: {Analysis.Law} (RMS residual {Analysis.Law.RmsError:F3}).", "",
                        "| held-out shape | measured PPL | predicted PPL | error |", "|---|---|---|---|"]);
        lines.AddRange(Analysis.HeldOut.Select(e =>
            $"| {e.Point.Depth}×{e.Point.Width} | {e.Point.ValPerplexity:F2} | {e.Predicted:F2} | {e.ErrorPercent:F1} % |"));
        if (Analysis.HeldOut.Count > 0)
            lines.AddRange(["", $"Mean extrapolation error {Analysis.HeldOut.Average(e => e.ErrorPercent):F1} % (the method: within " +
                                $"5.3 %)."]);
        lines.Add("");
        lines.Add(Analysis.Recommended is { } r
            ? $"For a budget of {BudgetMs:F2} ms/token: depth {r.Depth}, width {r.Width} (predicted PPL " +
              $"{Analysis.RecommendedPredicted:F2}, " +
              $"measured {r.ValPerplexity:F2}, {r.DecodeMsPerToken:F2} ms/token)."
            : $"No measured shape decodes within {BudgetMs:F2} ms/token.");
        lines.AddRange(["", "![frontier](frontier.png)"]);
        return string.Join("\n", lines) + "\n";
    }
}
