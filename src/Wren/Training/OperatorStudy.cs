using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Wren.Common;
using Wren.Data;
using Wren.Evaluation;
using Wren.Models;
using Wren.Profiling;

namespace Wren.Training;

/// <summary>One trained run of the study: a design at one seed, its validation perplexity and task accuracy.</summary>
/// <param name="Key">Fingerprint of the config and training options; a stored result with another key is stale.</param>
/// <param name="Accuracy">Mean "acc" over the evaluation tasks (null without tasks); per task in <paramref name="Tasks"/>.</param>
public sealed record StudyRun(string Design, long Seed, string Key, long Parameters, double TrainLoss, double ValLoss, double ValPerplexity,
                              double Seconds, double? Accuracy, IReadOnlyDictionary<string, double> Tasks);

/// <summary>Decode latency of a design at batch 1 (ms/token over the interleaved passes: median, min, max).</summary>
public sealed record StudyLatencyResult(string Design, double MedianMs, double MinMs, double MaxMs);

/// <summary>Decode throughput at the memory budget: the largest batch that fits, its tokens/s (median of the passes) and memory.</summary>
public sealed record StudyThroughput(string Design, int Batch, double TokensPerSecond, long MemoryBytes);

/// <summary>
/// The method's operator exploration (Nemotron-Flash §2, <c>shared/reference/nemotron-flash-method.md</c>): pure and hybrid
/// models with the same number of operators and the same parameter count (width and FFN size solved per design), trained on
/// the same tokens in the same order and schedule, then compared on validation perplexity, task accuracy and decode
/// latency. Every run, the latency measure and each throughput measure persist atomically in the study folder; a rerun
/// skips what is done.
/// </summary>
public static class OperatorStudy
{
    /// <summary>
    /// Width (a multiple of the head dimension, between half and twice the reference width) and FFN size (a multiple of
    /// the settings' ffn_multiple, its ratio to the width inside the settings' range) of <paramref name="design"/> whose parameter count is
    /// within the tolerance of <paramref name="target"/>; among those, the FFN ratio nearest the nominal one. Throws a
    /// one-line <see cref="WrenException"/> naming the closest shape when none is within tolerance. Parameters are counted
    /// by <see cref="ModelFootprint"/> on the real config; they are linear in the FFN size at a fixed width, so two counts
    /// per width place every FFN size.
    /// </summary>
    public static StudyDesign Solve(string design, OperatorStudySettings settings, HybridConfig template, long target)
    {
        var headed = Headed(settings, template);
        int step = settings.HeadDim, m = settings.FfnMultiple;
        var candidates = new List<(int Width, int Ffn, double Gap)>();
        for (int width = Math.Max(step, settings.Width / 2 / step * step); width <= settings.Width * 2; width += step)
        {
            int low = (int)Math.Ceiling(settings.FfnRatioRange[0] * width / m) * m;
            int high = (int)Math.Floor(settings.FfnRatioRange[1] * width / m) * m;
            low = Math.Max(low, m);
            if (high < low) continue;
            long atLow, slope;
            try
            {
                atLow = Parameters(design, settings, headed, width, low);
                slope = high > low ? Parameters(design, settings, headed, width, low + m) - atLow : 0;
            }
            catch (WrenException) { continue; }   // a width the operator's head sizes cannot take
            for (int ffn = low; ffn <= high; ffn += m)
                candidates.Add((width, ffn, (atLow + slope * ((ffn - low) / m) - target) / (double)target));
        }
        if (candidates.Count == 0) throw new WrenException($"design '{design}': no width near {settings.Width} fits its head sizes");
        var within = candidates.Where(c => Math.Abs(c.Gap) <= settings.Tolerance).ToList();
        var best = within.Count > 0
            ? within.MinBy(c => (Math.Abs((double)c.Ffn / c.Width - settings.FfnRatio), Math.Abs(c.Gap)))
            : candidates.MinBy(c => Math.Abs(c.Gap));
        var config = StudyDesign.ConfigOf(design, headed, settings.Operators, best.Width, best.Ffn, settings.SlidingWindow);
        long parameters = ModelFootprint.Of(config).Parameters;
        double gap = (parameters - target) / (double)target;
        if (Math.Abs(gap) > settings.Tolerance)
            throw new WrenException($"design '{design}': closest shape (width {best.Width}, FFN {best.Ffn}) has " +
                                    $"{parameters:N0} parameters, " +
                                    $"{gap:+0.0%;-0.0%} from {target:N0} (tolerance ±{settings.Tolerance:0.#%}); widen ffn_ratio_range");
        return new StudyDesign(design, config, parameters);
    }

    static long Parameters(string design, OperatorStudySettings settings, HybridConfig template, int width, int ffn) =>
        ModelFootprint.Of(StudyDesign.ConfigOf(design, template, settings.Operators, width, ffn, settings.SlidingWindow)).Parameters;

    /// <summary>The parameter count every design matches: the settings' target, else the first design's at the reference width and
    /// the nominal FFN ratio.</summary>
    public static long Target(OperatorStudySettings settings, HybridConfig template)
    {
        if (settings.TargetParameters is { } t) return t;
        int m = settings.FfnMultiple;
        int ffn = Math.Max(m, (int)(settings.FfnRatio * settings.Width) / m * m);
        return Parameters(settings.Designs[0], settings, Headed(settings, template), settings.Width, ffn);
    }

    /// <summary>The template at the study's head dimension, FFN step (null when it is the released 128) and Mamba2 head.</summary>
    static HybridConfig Headed(OperatorStudySettings settings, HybridConfig template) => template with
    {
        HiddenSize = settings.HeadDim * template.NumAttentionHeads,
        FfnMultipleOf = settings.FfnMultiple == 128 ? null : settings.FfnMultiple,
        Mamba2HeadDim = settings.Mamba2HeadDim ?? template.Mamba2HeadDim,
    };

    /// <summary>Every design solved against <see cref="Target"/>, with the template fitted to the dataset's tokenizer.</summary>
    public static IReadOnlyList<StudyDesign> Designs(OperatorStudySettings settings, DataManifest manifest)
    {
        var template = manifest.ModelConfig(HybridConfig.Load(settings.Template));
        long target = Target(settings, template);
        return settings.Designs.Select(d => Solve(d, settings, template, target)).ToList();
    }

    /// <summary>Folder of one run inside the study folder.</summary>
    public static string RunFolder(string folder, string design, long seed) => Path.Combine(folder, "runs", $"{design}-s{seed}");

    const string RunFile = "study-run.json";

    /// <summary>
    /// Runs the study in <paramref name="folder"/>: trains every design at every seed (through <paramref name="train"/>, which may
    /// show progress; a run's result is stored in its folder and a rerun skips it), scores the evaluation tasks, measures decode
    /// latency interleaved across designs and throughput at the memory budget, then writes <c>results.json</c>,
    /// <c>report.md</c> and <c>ppl-latency.png/svg</c>. <paramref name="say"/> receives one line per step.
    /// </summary>
    public static OperatorStudyReport Run(OperatorStudySettings settings, string dataPath, TokenDataset data, string folder,
                                          Func<StudyDesign, long, Trainer, TrainingResult> train, Action<string>? say = null,
                                          CancellationToken cancellation = default)
    {
        say ??= _ => { };
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, "settings.json"), settings.ToJson());
        var designs = Designs(settings, data.Manifest);
        foreach (var d in designs)
            say($"{d.Name}: width {d.Config.HiddenSize}, FFN {d.Config.FfnSize}, {d.Parameters:N0} parameters");
        var runs = new List<StudyRun>();
        foreach (var seed in settings.Seeds)
            foreach (var design in designs)
            {
                cancellation.ThrowIfCancellationRequested();
                runs.Add(TrainOne(settings, design, seed, data, folder, train, say, cancellation));
            }
        var latency = Latency(settings, designs, folder, say, cancellation);
        var throughput = settings.Latency.MemoryBudgetGib > 0
            ? designs.Select(d => Throughput(settings, d, folder, say, cancellation)).ToList() : [];
        var report = OperatorStudyReport.Create(settings, dataPath, designs, runs, latency, throughput);
        AtomicFile.WriteAllText(Path.Combine(folder, "results.json"), report.ToJson());
        AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), report.ToMarkdown());
        report.Plot(Path.Combine(folder, "ppl-latency"));
        return report;
    }

    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    static string Key(StudyDesign design, TrainingOptions options, OperatorStudySettings settings) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
            design.Config.ToJson() + options.ToJson() + string.Join(",", settings.EvalTasks) + settings.EvalLimit)))[..16];

    static StudyRun TrainOne(OperatorStudySettings settings, StudyDesign design, long seed, TokenDataset data, string folder,
                             Func<StudyDesign, long, Trainer, TrainingResult> train, Action<string> say, CancellationToken cancellation)
    {
        string run = RunFolder(folder, design.Name, seed), stored = Path.Combine(run, RunFile);
        var options = settings.Training with { Seed = seed };
        string key = Key(design, options, settings);
        if (File.Exists(stored))
        {
            var done = JsonSerializer.Deserialize<StudyRun>(File.ReadAllText(stored), Json)
                       ?? throw new WrenException($"{stored}: empty study result");
            if (done.Key != key)
                throw new WrenException($"{stored} was made with other settings; delete {run} or use another --out");
            say($"{design.Name} seed {seed}: done earlier (PPL {done.ValPerplexity:F2})");
            return done;
        }
        TrainingResult outcome;
        using (var trainer = Trainer.Open(run, data, new NewRun(design.Config, options), resume: true))
            outcome = train(design, seed, trainer);
        double? accuracy = null;
        var tasks = new Dictionary<string, double>();
        if (settings.EvalTasks.Count > 0)
        {
            var report = Evaluator.Run(outcome.ModelFolder, new EvalOptions(TaskFiles.Resolve(settings.EvalTasks), null, settings.EvalLimit,
                                                                             BatchSize: 4), cancellation: cancellation);
            foreach (var t in report.Tasks) tasks[t.Task] = (t.Metrics.FirstOrDefault(m => m.Name == "acc") ?? t.Metrics[0]).Value;
            accuracy = report.Average();
        }
        var result = new StudyRun(design.Name, seed, key, design.Parameters, outcome.Loss, outcome.ValLoss, outcome.ValPerplexity,
                                  outcome.Seconds, accuracy, tasks);
        AtomicFile.WriteAllText(stored, JsonSerializer.Serialize(result, Json));
        say($"{design.Name} seed {seed}: validation PPL {result.ValPerplexity:F2}" + (accuracy is { } a ? $", acc {a:P1}" : ""));
        return result;
    }

    sealed record StoredLatency(string Key, IReadOnlyList<StudyLatencyResult> Results);

    /// <summary>
    /// Batch-1 decode ms/token of every design after a <see cref="StudyLatency.Context"/>-token prompt (random weights: latency
    /// does not depend on them), timed in interleaved passes (each pass times every design once, starting one design later than
    /// the previous pass), so that a slow spell of a shared machine falls on every design alike.
    /// </summary>
    static IReadOnlyList<StudyLatencyResult> Latency(OperatorStudySettings settings, IReadOnlyList<StudyDesign> designs, string folder,
                                                     Action<string> say, CancellationToken cancellation)
    {
        var l = settings.Latency;
        string path = Path.Combine(folder, "latency.json");
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{l.Context}/{l.DecodeTokens}/{l.Passes}/" + string.Join(",", designs.Select(d => d.Config.ToJson())))))[..16];
        if (File.Exists(path) && JsonSerializer.Deserialize<StoredLatency>(File.ReadAllText(path), Json) is { } s && s.Key == key)
        {
            say("latency: measured earlier");
            return s.Results;
        }
        say($"latency: {designs.Count} designs, context {l.Context}, {l.Passes} interleaved passes");
        var rigs = new List<DecodeRig>();
        try
        {
            foreach (var d in designs) rigs.Add(new DecodeRig(d.Config, 1, l.Context, l.DecodeTokens));
            var times = designs.Select(_ => new List<double>()).ToList();
            for (int pass = 0; pass < l.Passes; pass++)
                for (int k = 0; k < rigs.Count; k++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    int i = (pass + k) % rigs.Count;
                    times[i].Add(rigs[i].StepSeconds() * 1e3);
                }
            var results = designs.Select((d, i) => new StudyLatencyResult(d.Name, Median(times[i]), times[i].Min(), times[i].Max()))
                .ToList();
            AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new StoredLatency(key, results), Json));
            return results;
        }
        finally
        {
            foreach (var rig in rigs) rig.Dispose();
        }
    }

    sealed record StoredThroughput(string Key, StudyThroughput Result);

    /// <summary>Tokens/s of the largest batch whose weights, caches and activations fit the budget
    /// (<see cref="LatencyProfiler.LargestBatch"/>), after the study's context; one design at a time.</summary>
    static StudyThroughput Throughput(OperatorStudySettings settings, StudyDesign design, string folder, Action<string> say,
                                      CancellationToken cancellation)
    {
        var l = settings.Latency;
        string path = Path.Combine(folder, "throughput", design.Name + ".json");
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{l.Context}/{l.DecodeTokens}/{l.Passes}/{l.MemoryBudgetGib}/{l.MaxBatch}/{design.Config.ToJson()}")))[..16];
        if (File.Exists(path) && JsonSerializer.Deserialize<StoredThroughput>(File.ReadAllText(path), Json) is { } s && s.Key == key)
            return s.Result;
        cancellation.ThrowIfCancellationRequested();
        var footprint = ModelFootprint.Of(design.Config);
        int tokensPerRow = l.Context + l.DecodeTokens;
        int batch = LatencyProfiler.LargestBatch(footprint, tokensPerRow, (long)(l.MemoryBudgetGib * (1L << 30)), l.MaxBatch);
        var result = new StudyThroughput(design.Name, batch, 0, LatencyProfiler.MemoryNeeded(footprint, batch, tokensPerRow));
        if (batch > 0)
        {
            using var rig = new DecodeRig(design.Config, batch, l.Context, l.DecodeTokens);
            var seconds = Enumerable.Range(0, l.Passes).Select(_ => rig.StepSeconds()).ToList();
            result = result with { TokensPerSecond = batch / Median(seconds) };
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new StoredThroughput(key, result), Json));
        say($"{design.Name}: throughput {result.TokensPerSecond:F0} tokens/s at batch {batch}");
        return result;
    }

    static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
