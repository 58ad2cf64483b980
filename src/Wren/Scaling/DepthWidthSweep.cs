using System.Text.Json;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Data;
using Wren.Distributed;
using Wren.Evaluation;
using Wren.Models;
using Wren.Profiling;
using Wren.Training;

namespace Wren.Scaling;

/// <summary>One trained and timed (depth, width) shape.</summary>
/// <param name="DecodeMsPerToken">Batch-1 decode step (ms): <paramref name="DecodeRatio"/> × the median reference step over the
/// sweep's points, so every shape is at one machine speed.</param>
/// <param name="DecodeRatio">Decode step ÷ the sweep's reference step, measured interleaved with it (<see cref="InterleavedClock"/>);
/// null in sweeps timed before issue 13 (absolute medians).</param>
/// <param name="ReferenceMs">The reference's best step while this shape was timed (ms): the machine's speed at the time.</param>
public sealed record SweepPoint(int Depth, int Width, long Parameters, double ValLoss, double ValPerplexity, double DecodeMsPerToken,
                                double TrainSeconds, double? Accuracy = null, double? DecodeRatio = null, double? ReferenceMs = null);

/// <summary>What the sweep concludes: the law fitted on the non-held-out points, its errors on the held-out ones, the pick for a
/// budget.</summary>
public sealed record SweepAnalysis(ScalingLaw Law, IReadOnlyList<(SweepPoint Point, double Predicted, double ErrorPercent)> HeldOut,
                                   SweepPoint? Recommended, double? RecommendedPredicted, double? BudgetMs);

/// <summary>
/// The depth–width study (Nemotron-Flash paper, depth–width study): a block pattern repeated D times at width W, each shape trained for
/// the same token budget (validation perplexity) and timed (batch-1 decode ms/token); results saved after every point, so an
/// interrupted sweep continues where it stopped. Latency is measured as in the latency table (issue 13): every shape's decode runs
/// alternate with one reference model's (the pattern once at the smallest width), so the machine's drift cancels.
/// <para>With a <see cref="ProcessGroup"/> of several ranks every rank calls <see cref="Run"/> with the same arguments: rank 0
/// reads <c>sweep.json</c> and broadcasts the points done, every shape trains data parallel across the ranks, and rank 0 alone
/// writes the folder, scores the tasks and times the decode (the other ranks return the trained points untimed).</para>
/// </summary>
internal static class DepthWidthSweep
{

    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    public static IReadOnlyList<SweepPoint> Load(string path) =>
        File.Exists(path) ? JsonSerializer.Deserialize<List<SweepPoint>>(File.ReadAllText(path), Json) ?? [] : [];

    public static IReadOnlyList<SweepPoint> Run(HybridConfig template, IReadOnlyList<string> pattern, IReadOnlyList<int> depths,
                                                IReadOnlyList<int> widths,
                                                TokenDataset data, TrainingOptions proxy, int decodeTokens, string folder,
                                                IProgress<string>? progress = null, CancellationToken cancellation = default,
                                                bool remeasureLatency = false, EvalOptions? evaluation = null,
                                                ProcessGroup? group = null)
    {
        if (pattern.Count == 0) throw new WrenException("the block pattern is empty");
        group ??= ProcessGroup.Single;
        string results = Path.Combine(folder, "sweep.json");
        if (group.IsRoot) Directory.CreateDirectory(folder);
        var points = group.IsRoot ? Load(results).ToList() : [];
        if (group.Size > 1)
            points = JsonSerializer.Deserialize<List<SweepPoint>>(
                group.Broadcast(group.IsRoot ? JsonSerializer.SerializeToUtf8Bytes(points, Json) : null, "sharing sweep.json"), Json)!;
        HybridConfig Shape(int depth, int width) =>
            data.Manifest.ModelConfig(template.WithShape(Enumerable.Range(0, depth).SelectMany(_ => pattern).ToList(), width));
        if (remeasureLatency)   // e.g. trained elsewhere, timed on the target device; or a noisy first timing
            points = points.Select(p => p with { DecodeRatio = null, ReferenceMs = null }).ToList();
        foreach (int depth in depths)
            foreach (int width in widths)
            {
                cancellation.ThrowIfCancellationRequested();
                if (points.Any(p => p.Depth == depth && p.Width == width)) continue;
                var config = Shape(depth, width);
                progress?.Report($"depth {depth} × width {width}: training {proxy.TotalSteps} steps");
                string run = Path.Combine(folder, "runs", $"d{depth}-w{width}");
                if (group.IsRoot && Directory.Exists(run)) Directory.Delete(run, recursive: true);
                TrainingResult trained;
                double? accuracy = null;   // mean acc over the evaluation tasks (Evaluator), when asked for
                var options = proxy with { CheckpointEvery = TrainingOptions.Never, EvalEvery = TrainingOptions.Never };
                using (var trainer = Trainer.Open(run, data, new NewRun(config, options), group: group))
                {
                    trained = trainer.Run(cancellation: cancellation);
                    if (evaluation is not null && group.IsRoot)
                        accuracy = Evaluator.Run(trainer.Model, data.OpenTokenizer().Tokenizer, evaluation,
                                                 cancellation: cancellation).Average();
                }
                points.Add(new SweepPoint(depth, width, ModelFootprint.Of(config).Parameters, trained.ValLoss, trained.ValPerplexity,
                                          0, trained.Seconds, accuracy));
                if (!group.IsRoot) continue;
                Directory.Delete(run, recursive: true);
                AtomicFile.WriteAllText(results, JsonSerializer.Serialize(points, Json));
            }
        if (group.IsRoot && points.Any(p => p.DecodeRatio is null))
            TimeDecode(points, Shape(1, points.Min(p => p.Width)), p => Shape(p.Depth, p.Width), decodeTokens, progress, cancellation,
                       () => AtomicFile.WriteAllText(results, JsonSerializer.Serialize(points, Json)));
        return points.Where(p => depths.Contains(p.Depth) && widths.Contains(p.Width)).ToList();
    }

    /// <summary>
    /// Times every point against <paramref name="reference"/> in one session (interleaved, <see cref="InterleavedClock"/>; random
    /// weights, batch 1, decode right after the meta tokens; all points again, so ratios from one reference are never mixed with
    /// another's), saving after each, and puts every point at one machine speed: ms = ratio × the median reference step.
    /// </summary>
    static void TimeDecode(List<SweepPoint> points, HybridConfig reference, Func<SweepPoint, HybridConfig> shape, int decodeTokens,
                           IProgress<string>? progress, CancellationToken cancellation, Action save)
    {
        var options = new InterleaveOptions { DecodeTokens = decodeTokens };
        using var referenceRig = new DecodeRig(reference, 1, 0, options.DecodeTokens);
        var clock = new InterleavedClock(referenceRig, options);
        for (int i = 0; i < points.Count; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            progress?.Report($"depth {points[i].Depth} × width {points[i].Width}: timing decode against the reference");
            using var rig = new DecodeRig(shape(points[i]), 1, 0, options.DecodeTokens);
            var timing = clock.Measure(rig);
            points[i] = points[i] with { DecodeRatio = timing.Ratio, ReferenceMs = timing.ReferenceSeconds * 1e3 };
            save();
        }
        double level = Measurement.Of(points.Select(p => p.ReferenceMs!.Value).ToList()).Median;
        for (int i = 0; i < points.Count; i++) points[i] = points[i] with { DecodeMsPerToken = points[i].DecodeRatio!.Value * level };
        save();
    }

    /// <summary>
    /// Fits L(D, W) on perplexity over the points that are not held out, reports the held-out errors, and for a budget
    /// picks the shape whose predicted perplexity is lowest among those measured within it.
    /// </summary>
    public static SweepAnalysis Analyze(IReadOnlyList<SweepPoint> points, Func<SweepPoint, bool> heldOut, double? budgetMs)
    {
        var law = ScalingLaw.Fit(points.Where(p => !heldOut(p)).Select(p => new ScalingPoint(p.Depth, p.Width, p.ValPerplexity)).ToList());
        var errors = points.Where(heldOut).Select(p =>
        {
            double predicted = law.Predict(p.Depth, p.Width);
            return (p, predicted, Math.Abs(predicted - p.ValPerplexity) / p.ValPerplexity * 100);
        }).ToList();
        var within = budgetMs is { } budget ? points.Where(p => p.DecodeMsPerToken <= budget).ToList() : [];
        var pick = within.MinBy(p => law.Predict(p.Depth, p.Width));
        return new SweepAnalysis(law, errors, pick, pick is null ? null : law.Predict(pick.Depth, pick.Width), budgetMs);
    }

    /// <summary>Perplexity against decode latency for every shape, the Pareto frontier drawn through them (PNG + SVG).</summary>
    public static string[] FrontierPlot(IReadOnlyList<SweepPoint> points, string pathWithoutExtension)
    {
        var plot = new ScottPlot.Plot();
        foreach (var group in points.GroupBy(p => p.Depth).OrderBy(g => g.Key))
        {
            var series = plot.Add.ScatterPoints(group.Select(p => p.DecodeMsPerToken).ToArray(),
                                                group.Select(p => p.ValPerplexity).ToArray());
            series.LegendText = $"depth {group.Key}";
            series.MarkerSize = 9;
        }
        var front = Pareto.Front(points, p => p.ValPerplexity, p => p.DecodeMsPerToken).OrderBy(p => p.DecodeMsPerToken).ToList();
        var line = plot.Add.ScatterLine(front.Select(p => p.DecodeMsPerToken).ToArray(), front.Select(p => p.ValPerplexity).ToArray());
        line.LegendText = "frontier";
        foreach (var p in points) plot.Add.Text($"{p.Depth}×{p.Width}", p.DecodeMsPerToken, p.ValPerplexity).LabelFontSize = 10;
        plot.Title("Depth–width study: validation perplexity vs decode latency");
        plot.Axes.Bottom.Label.Text = "decode ms/token (batch 1)";
        plot.Axes.Left.Label.Text = "validation perplexity";
        plot.ShowLegend();
        return Charts.Save(plot, pathWithoutExtension);
    }
}
