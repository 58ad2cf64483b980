using System.Text;
using Wren.Checkpoints;
using Wren.Models;
using Wren.Profiling;
using Wren.Common;

namespace Wren.Search;

/// <summary>
/// The outcome of a study: the loss–latency front, the best architecture per latency budget, the searched winner
/// against the seeded pure-operator baselines, the evolution trajectory (plots as PNG + SVG), a Markdown report,
/// and the winner exported as a config ready for <c>wren train</c>.
/// </summary>
public static class SearchReport
{
    public sealed record Outcome(string Markdown, Trial? Winner, string? WinnerConfig);

    public static Outcome Write(IReadOnlyList<Trial> trials, SearchSpace space, HybridConfig template, string study, string folder)
    {
        Directory.CreateDirectory(folder);
        var done = trials.Where(t => t.Status == "done" && t.ProxyLoss is { } l && double.IsFinite(l)).ToList();
        var text = new StringBuilder();
        text.AppendLine($"# Search report: {study}");
        text.AppendLine();
        text.AppendLine($"Space `{space.Name}`: {space.Stages} stages, mixers {string.Join("/", space.Mixers)}, ratios {string.Join(" ", space.Ratios)}, " +
                        $"FFNs per mixer {string.Join("/", space.FfnPerMixer)}, ≤ {space.MaxOperators} operators, widths {string.Join("/", space.Widths)}. " +
                        $"Latency: decode {space.Latency.DecodeTokens} tokens after {space.Latency.Prompt} at batch {space.Latency.Batch}" +
                        (space.Latency.TargetMs is { } target && !space.Evolution.MultiObjective ? $", target {target:F0} ms." : " (multi-objective).") +
                        $" Proxy: {space.Proxy.Steps} steps × {space.Proxy.BatchSize}×{space.Proxy.SeqLen} tokens ({space.Proxy.Fitness}).");
        text.AppendLine();
        text.AppendLine($"Trials: {trials.Count} ({done.Count} done, {trials.Count(t => t.Status == "failed")} failed, {trials.Count(t => t.Status is "pending" or "running")} open); " +
                        $"population {space.Evolution.Population}, {space.Evolution.Cycles} cycles × {space.Evolution.ChildrenPerCycle} children, sample {space.Evolution.Sample}, seed {space.Evolution.Seed}. " +
                        $"Proxy training time {done.Sum(t => t.TrainSeconds ?? 0) / 60:F1} min in all.");
        var timed = trials.Where(t => t.Finished is not null).ToList();
        if (timed.Count > 0)
        {
            double wall = (timed.Max(t => t.Finished!.Value) - trials.Min(t => t.Created)) / 1000.0;
            double training = timed.Sum(t => t.TrainSeconds ?? 0);
            text.AppendLine();
            text.AppendLine($"Throughput: {timed.Count} candidates in {wall / 60:F1} min of wall time ({timed.Count / (wall / 3600):F0} per hour); " +
                            $"{Math.Max(0, 1 - training / wall) * 100:F2} % of it outside proxy training (proposals, latency prediction, the store, waiting).");
        }
        text.AppendLine();
        if (done.Count == 0)
        {
            text.AppendLine("No finished trials yet.");
            AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), text.ToString());
            return new Outcome(text.ToString(), null, null);
        }

        string Row(Trial t) => $"| #{t.Number} | `{t.Architecture}` | {t.Width} | {t.Parameters / 1e6:F2}M | {t.ProxyLoss:F4} | {t.PredictedLatencyMs:F0} | " +
                               $"{(t.MeasuredLatencyMs is { } m ? $"{m:F0}" : "–")} |";
        const string Header = "| trial | architecture | width | params | proxy loss | predicted ms | measured ms |\n|---|---|---|---|---|---|---|";

        var feasible = done.Where(t => t.Feasible).ToList();
        var winner = (feasible.Count > 0 ? feasible : done).MinBy(t => t.ProxyLoss)!;
        text.AppendLine("## Winner");
        text.AppendLine();
        text.AppendLine(Header);
        text.AppendLine(Row(winner));
        text.AppendLine();
        text.AppendLine($"Layers: `{string.Join(" ", Architecture.Parse(winner.Architecture, space).Layers(space))}`" + (winner.Mutation.Length > 0 ? $"; found by mutating {winner.Parent} ({winner.Mutation})." : "."));
        text.AppendLine();

        var seeds = done.Where(t => t.Cycle < 0 && space.Seeds.Any(s => Architecture.Parse(s, space).ToString() == t.Architecture)).ToList();
        if (seeds.Count > 0)
        {
            text.AppendLine("## Against the seeded designs (pure operators and the hand-made hybrid), each at the widest width within the target");
            text.AppendLine();
            text.AppendLine(Header);
            foreach (var t in seeds.Append(winner).DistinctBy(t => t.Number).OrderBy(t => t.ProxyLoss)) text.AppendLine(Row(t));
            text.AppendLine();
        }

        var front = Pareto.Front(done, t => t.ProxyLoss!.Value, t => t.PredictedLatencyMs).OrderBy(t => t.PredictedLatencyMs).ToList();
        text.AppendLine("## Loss–latency front (predicted latency)");
        text.AppendLine();
        text.AppendLine(Header);
        foreach (var t in front) text.AppendLine(Row(t));
        text.AppendLine();

        text.AppendLine("## Best architecture per latency budget");
        text.AppendLine();
        text.AppendLine("| budget ms | trial | architecture | width | proxy loss |");
        text.AppendLine("|---|---|---|---|---|");
        var latencies = done.Select(t => t.PredictedLatencyMs).Order().ToList();
        foreach (double q in new[] { 0.2, 0.4, 0.6, 0.8, 1.0 })
        {
            double budget = latencies[(int)Math.Round(q * (latencies.Count - 1))];
            var best = done.Where(t => t.PredictedLatencyMs <= budget).MinBy(t => t.ProxyLoss)!;
            text.AppendLine($"| {budget:F0} | #{best.Number} | `{best.Architecture}` | {best.Width} | {best.ProxyLoss:F4} |");
        }
        text.AppendLine();

        text.AppendLine("## Trajectory");
        text.AppendLine();
        text.AppendLine("| cycle | trials | mean proxy loss | best so far (feasible) |");
        text.AppendLine("|---|---|---|---|");
        double bestSoFar = double.PositiveInfinity;
        var xs = new List<double>(); var bests = new List<double>(); var losses = new List<double>();
        foreach (var cycle in done.GroupBy(t => t.Cycle).OrderBy(g => g.Key))
        {
            foreach (var t in cycle.OrderBy(t => t.Number))
            {
                if (t.Feasible || space.Evolution.MultiObjective) bestSoFar = Math.Min(bestSoFar, t.ProxyLoss!.Value);
                xs.Add(t.Number); losses.Add(t.ProxyLoss!.Value); bests.Add(bestSoFar);
            }
            text.AppendLine($"| {(cycle.Key < 0 ? "initial" : (cycle.Key + 1).ToString())} | {cycle.Count()} | {cycle.Average(t => t.ProxyLoss!.Value):F4} | {bestSoFar:F4} |");
        }
        text.AppendLine();
        text.AppendLine("![front](front.png) ![trajectory](trajectory.png)");

        var scatter = new ScottPlot.Plot();
        var all = scatter.Add.ScatterPoints(done.Select(t => t.PredictedLatencyMs).ToArray(), done.Select(t => t.ProxyLoss!.Value).ToArray());
        all.LegendText = "trials";
        var frontLine = scatter.Add.Scatter(front.Select(t => t.PredictedLatencyMs).ToArray(), front.Select(t => t.ProxyLoss!.Value).ToArray());
        frontLine.LegendText = "front";
        if (seeds.Count > 0)
        {
            var seeded = scatter.Add.ScatterPoints(seeds.Select(t => t.PredictedLatencyMs).ToArray(), seeds.Select(t => t.ProxyLoss!.Value).ToArray());
            seeded.LegendText = "seeded designs";
            seeded.MarkerSize = 10;
        }
        if (space.Latency.TargetMs is { } limit && !space.Evolution.MultiObjective) scatter.Add.VerticalLine(limit).LegendText = "latency target";
        scatter.Title($"{study}: proxy loss vs predicted latency");
        scatter.Axes.Bottom.Label.Text = $"predicted ms to decode {space.Latency.DecodeTokens} tokens";
        scatter.Axes.Left.Label.Text = "proxy validation loss";
        scatter.ShowLegend();
        Charts.Save(scatter, Path.Combine(folder, "front"));
        Charts.Save(Charts.Lines($"{study}: evolution", "trial", "proxy validation loss",
            [("trial loss", xs.ToArray(), losses.ToArray()), ("best so far", xs.ToArray(), bests.ToArray())]), Path.Combine(folder, "trajectory"));

        var config = space.Config(Architecture.Parse(winner.Architecture, space), winner.Width, template);
        string configPath = Path.Combine(folder, "winner.config.json");
        AtomicFile.WriteAllText(configPath, config.ToJson());
        text.AppendLine();
        text.AppendLine($"Winner config: `winner.config.json` (train it with `wren train --config {configPath} --data …`).");
        AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), text.ToString());
        return new Outcome(text.ToString(), winner, configPath);
    }
}
