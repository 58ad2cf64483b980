using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Common;
using Wren.Evaluation;
using Wren.Models;

namespace Wren.Search;

/// <summary>
/// The outcome of a study, written into a folder: <c>report.md</c> and <c>report.json</c> (printers of one
/// <see cref="SearchSummary"/>), the front and trajectory plots (PNG + SVG), and the winner exported as
/// <c>winner.config.json</c>, ready for <c>wren train</c>; with an evaluation, the accuracy of trained models side by side
/// (also as <c>accuracy.md</c>).
/// </summary>
public static class SearchReport
{
    public sealed record Outcome(string Markdown, TrialRow? Winner, string ReportFile, string? WinnerConfig);

    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,   // perplexities may be infinite
    };

    /// <summary>
    /// Writes the report into <paramref name="folder"/>. With <paramref name="evaluation"/>, each of <paramref name="evalModels"/>
    /// (trained model folders: e.g. the winner trained from <c>winner.config.json</c>, and baselines) is scored on its tasks,
    /// so a searched design can be compared with the baselines by accuracy as well (off by default: it costs time).
    /// </summary>
    /// <exception cref="WrenException">An evaluation without models to score.</exception>
    public static Outcome Write(IReadOnlyList<Trial> trials, SearchSpace space, HybridConfig template, string study, string folder,
                                EvalOptions? evaluation = null, IReadOnlyList<string>? evalModels = null,
                                CancellationToken cancellation = default)
    {
        if (evaluation is not null && evalModels is not { Count: > 0 }) throw new WrenException("--eval-tasks needs --eval-models DIR...");
        Directory.CreateDirectory(folder);
        var summary = SearchSummary.Of(trials, space, study);
        if (evaluation is not null)
        {
            summary = summary with
            {
                Accuracy = evalModels!.Select(m => Evaluator.Run(m, evaluation, cancellation: cancellation)).ToList(),
            };
            AtomicFile.WriteAllText(Path.Combine(folder, "accuracy.md"), EvalReport.Comparison(summary.Accuracy));
        }
        string? configPath = null;
        if (summary.Winner is { } winner)
        {
            configPath = Path.Combine(folder, "winner.config.json");
            AtomicFile.WriteAllText(configPath,
                                    space.Config(Architecture.Parse(winner.Architecture, space), winner.Width, template).ToJson());
            Plot(summary, space, folder);
        }
        string markdown = Markdown(summary, space, configPath);
        string reportFile = Path.Combine(folder, "report.md");
        AtomicFile.WriteAllText(reportFile, markdown);
        AtomicFile.WriteAllText(Path.Combine(folder, "report.json"), JsonSerializer.Serialize(summary, Json));
        return new Outcome(markdown, summary.Winner, reportFile, configPath);
    }

    /// <summary>The Markdown report; table cells escape <c>|</c> (architectures contain it).</summary>
    internal static string Markdown(SearchSummary s, SearchSpace space, string? winnerConfig)
    {
        var lines = new List<string> { $"# Search report: {s.Study}", "", SpaceLine(space), "" };
        lines.Add($"Trials: {s.Trials} ({s.Done} done, {s.Failed} failed, {s.Open} open); population {space.Evolution.Population}, " +
                  $"{space.Evolution.Cycles} cycles × {space.Evolution.ChildrenPerCycle} children, sample {space.Evolution.Sample}, " +
                  $"seed {space.Evolution.Seed}. Proxy training time {s.ProxyTrainingMinutes:F1} min in all.");
        if (s.Throughput is { } t)
            lines.AddRange(["", $"Throughput: {t.Candidates} candidates in {t.WallMinutes:F1} min of wall time ({t.PerHour:F0} per " +
                                $"hour); " +
                                $"{t.OutsidePercent:F2} % of it outside proxy training (proposals, latency prediction, the store, " +
                                $"waiting)."]);
        lines.Add("");
        if (s.Accuracy is { } accuracy)
            lines.AddRange(["## Accuracy of trained models (mean acc: the average over the tasks)", "",
                            .. EvalReport.Comparison(accuracy).TrimEnd('\n').Split('\n'), ""]);
        if (s.Winner is null || s.Origin is null)
        {
            lines.Add("No finished trials yet.");
            return string.Join("\n", lines) + "\n";
        }
        lines.AddRange(["## Winner", "", .. TrialTable([s.Winner]), "", $"Layers: `{s.Origin.Layers}`; {s.Origin.Text}.", "",
                        BasisLine(s.Basis), ""]);
        if (s.Seeds.Count > 0)
            lines.AddRange(["## Against the seeded designs (pure operators and the hand-made hybrid), each at the widest width within " +
                            "the target", "",
                            .. TrialTable(s.Seeds), ""]);
        lines.AddRange(["## Loss–latency front (predicted latency)", "", .. TrialTable(s.Front), ""]);
        if (s.Measured.Count > 0)
            lines.AddRange(["## Latency of the re-measured trials (ms at the latency table's machine speed)", "",
                            "| trial | architecture | width | predicted ms | measured ms | prediction error | meets target |",
                            "|---|---|---|---|---|---|---|",
                            .. s.Measured.Select(m => $"| #{m.Trial.Number} | {Code(m.Trial.Architecture)} | {m.Trial.Width} | " +
                                                     $"{m.Trial.PredictedMs:F0} | {m.Trial.MeasuredMs:F0} | " +
                                                     $"{m.ErrorPercent:+0.0;-0.0} % | {Verdict(m, space)} |"), ""]);
        lines.AddRange(["## Best architecture per latency budget", "", "| budget ms | trial | architecture | width | proxy loss |",
                        "|---|---|---|---|---|",
                        .. s.Budgets.Select(b =>
                            $"| {b.BudgetMs:F0} | #{b.Best.Number} | {Code(b.Best.Architecture)} | {b.Best.Width} | " +
                            $"{b.Best.ProxyLoss:F4} |"), ""]);
        lines.AddRange(["## Trajectory", "", "| cycle | trials | mean proxy loss | best so far (feasible) | feasible share (predicted) |",
                        "|---|---|---|---|---|",
                        .. s.Trajectory.Select(c => $"| {c.Name} | {c.Trials} | {c.MeanLoss:F4} | {c.BestSoFar:F4} | " +
                                                    $"{c.FeasibleShare * 100:F0} % |"), ""]);
        lines.Add("![front](front.png) ![trajectory](trajectory.png)");
        if (winnerConfig is not null)
            lines.AddRange(["", $"Winner config: `winner.config.json` (train it with `wren train --config {winnerConfig} --data …`)."]);
        return string.Join("\n", lines) + "\n";
    }

    static string BasisLine(WinnerBasis basis) => basis switch
    {
        WinnerBasis.Measured => "Chosen as the lowest proxy loss among trials whose re-measured latency meets the target.",
        WinnerBasis.Predicted => "Chosen by predicted latency only: no trial was re-measured.",
        WinnerBasis.PredictedOnlyNoneMeasuredFeasible =>
            "**Flag: no re-measured trial meets the target**; this is the lowest-loss trial whose *predicted* latency does.",
        _ => "**Flag: no trial meets the target, even by prediction**; this is the lowest-loss trial.",
    };

    /// <summary>"yes", or a flag saying by how much the measured latency misses the target.</summary>
    static string Verdict(LatencyRow row, SearchSpace space) =>
        row.MeetsTarget ? "yes"
            : $"**NO: {(row.Trial.MeasuredMs!.Value / space.Latency.TargetMs!.Value - 1) * 100:F0} % over the " +
              $"{space.Latency.TargetMs:F0} ms target**";

    static string SpaceLine(SearchSpace space) =>
        $"Space `{space.Name}`: {space.Stages} stages, mixers {string.Join("/", space.Mixers)}, ratios {string.Join(" ", space.Ratios)}, " +
        $"FFNs per mixer {string.Join("/", space.FfnPerMixer)}, ≤ {space.MaxOperators} operators, widths " +
        $"{string.Join("/", space.Widths)}. " +
        $"Latency: decode {space.Latency.DecodeTokens} tokens after {space.Latency.Prompt} at batch {space.Latency.Batch}" +
        (space.Latency.TargetMs is { } target && !space.Evolution.MultiObjective ? $", target {target:F0} ms." : " (multi-objective).") +
        $" Proxy: {space.Proxy.Steps} steps × {space.Proxy.BatchSize}×{space.Proxy.SeqLen} tokens ({space.Proxy.Fitness}).";

    static IEnumerable<string> TrialTable(IEnumerable<TrialRow> rows) =>
        new[] { "| trial | architecture | width | params | proxy loss | predicted ms | measured ms |", "|---|---|---|---|---|---|---|" }
            .Concat(rows.Select(t =>
                $"| #{t.Number} | {Code(t.Architecture)} | {t.Width} | {t.Parameters / 1e6:F2}M | {t.ProxyLoss:F4} | " +
                                     $"{t.PredictedMs:F0} | {(t.MeasuredMs is { } m ? $"{m:F0}" : "–")} |"));

    /// <summary>Inline code in a table cell: a bare <c>|</c> would end the cell, so it is escaped.</summary>
    static string Code(string text) => $"`{text.Replace("|", "\\|")}`";

    /// <summary>The loss–latency scatter with its front (and the seeds and target), and the evolution curve.</summary>
    static void Plot(SearchSummary s, SearchSpace space, string folder)
    {
        var scatter = new ScottPlot.Plot();
        scatter.Add.ScatterPoints(s.Curve.Select(t => t.PredictedMs).ToArray(),
                                  s.Curve.Select(t => t.Loss).ToArray()).LegendText = "trials";
        scatter.Add.Scatter(s.Front.Select(t => t.PredictedMs).ToArray(), s.Front.Select(t => t.ProxyLoss).ToArray()).LegendText = "front";
        if (s.Seeds.Count > 0)
        {
            var seeded = scatter.Add.ScatterPoints(s.Seeds.Select(t => t.PredictedMs).ToArray(),
                                                   s.Seeds.Select(t => t.ProxyLoss).ToArray());
            seeded.LegendText = "seeded designs";
            seeded.MarkerSize = 10;
        }
        if (space.Latency.TargetMs is { } limit
            && !space.Evolution.MultiObjective) scatter.Add.VerticalLine(limit).LegendText = "latency target";
        scatter.Title($"{s.Study}: proxy loss vs predicted latency");
        scatter.Axes.Bottom.Label.Text = $"predicted ms to decode {space.Latency.DecodeTokens} tokens";
        scatter.Axes.Left.Label.Text = "proxy validation loss";
        scatter.ShowLegend();
        Charts.Save(scatter, Path.Combine(folder, "front"));
        var xs = s.Curve.Select(c => (double)c.Number).ToArray();
        Charts.Save(Charts.Lines($"{s.Study}: evolution", "trial", "proxy validation loss",
            [("trial loss", xs, s.Curve.Select(c => c.Loss).ToArray()), ("best so far", xs, s.Curve.Select(c => c.BestSoFar).ToArray())]),
            Path.Combine(folder, "trajectory"));
    }
}
