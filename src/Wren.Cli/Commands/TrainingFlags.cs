using System.CommandLine;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary>The training options as command-line flags; each overrides the base options (defaults or <c>--options</c>) only when
/// given.</summary>
internal sealed class TrainingFlags
{
    readonly Option<string?> file = new("--options") { Description = "training.json with the base options (flags override it)" };
    readonly Option<long?> steps = new("--steps") { Description = "optimizer steps" };
    readonly Option<long?> tokens = new("--tokens") { Description = "training tokens (instead of --steps)" };
    readonly Option<int?> batch = new("--batch-size") { Description = "sequences per micro-batch (default 8)" };
    readonly Option<int?> seqLen = new("--seq-len") { Description = "tokens per sequence (default 256)" };
    readonly Option<int?> accumulation = new("--grad-accum") { Description = "micro-batches per step (default 1)" };
    readonly Option<string?> optimizer = new("--optimizer") { Description = "adamw (default) or adam" };
    readonly Option<double?> lr = new("--lr") { Description = "peak learning rate (default 1e-3)" };
    readonly Option<double?> minLr = new("--min-lr-ratio") { Description = "final LR ÷ peak (default 0.1)" };
    readonly Option<long?> warmup = new("--warmup") { Description = "warm-up steps (default 50)" };
    readonly Option<string?> schedule = new("--schedule") { Description = "cosine (default), wsd or constant" };
    readonly Option<double?> decay = new("--weight-decay") { Description = "AdamW decay on matrices (default 0.1; 0 with --weight-norm)" };
    readonly Option<double?> clip = new("--grad-clip") { Description = "global gradient-norm clip (default 1; 0 = off)" };
    readonly Option<bool?> weightNorm = new("--weight-norm") { Description = "project weights to unit-norm rows/columns after every step" };
    readonly Option<long?> seed = new("--seed") { Description = "initialization and data-order seed (default 0)" };
    readonly Option<long?> evalEvery = new("--eval-every") { Description = "validate every N steps (default 100)" };
    readonly Option<int?> evalWindows = new("--eval-windows") { Description = "validation windows (default 32)" };
    readonly Option<long?> checkpointEvery = new("--checkpoint-every") { Description = "checkpoint every N steps (default 100)" };
    readonly Option<int?> keep = new("--keep-checkpoints") { Description = "checkpoints kept (default 3)" };
    readonly Option<long?> logEvery = new("--log-every") { Description = "write training metrics every N steps (default 10)" };
    readonly Option<long?> checksumEvery = new("--checksum-every")
    {
        Description = "under mpirun: compare the ranks' weight checksums every N steps (default 100)",
    };

    public TrainingFlags(Command command)
    {
        foreach (var o in new Option[]
                 {
                     file, steps, tokens, batch, seqLen, accumulation, optimizer, lr, minLr, warmup, schedule, decay, clip,
                     weightNorm, seed, evalEvery, evalWindows, checkpointEvery, keep, logEvery, checksumEvery,
                 })
            command.Add(o);
        CommonOptions.MustBePositive(steps, tokens, evalEvery, checkpointEvery, logEvery, checksumEvery);
        CommonOptions.MustBePositive(batch, seqLen, accumulation, evalWindows, keep);
        CommonOptions.MustBePositive(lr);
    }

    public TrainingOptions Read(ParseResult r, TrainingOptions? fallback = null)
    {
        var o = r.GetValue(file) is { } path ? TrainingOptions.Load(path) : fallback ?? new TrainingOptions();
        return o with
        {
            Steps = r.GetValue(steps) ?? (r.GetValue(tokens) is not null ? 0 : o.Steps),
            Tokens = r.GetValue(tokens) ?? (r.GetValue(steps) is not null ? 0 : o.Tokens),
            BatchSize = r.GetValue(batch) ?? o.BatchSize,
            SeqLen = r.GetValue(seqLen) ?? o.SeqLen,
            GradAccumulation = r.GetValue(accumulation) ?? o.GradAccumulation,
            Optimizer = r.GetValue(optimizer) ?? o.Optimizer,
            LearningRate = r.GetValue(lr) ?? o.LearningRate,
            MinLrRatio = r.GetValue(minLr) ?? o.MinLrRatio,
            WarmupSteps = r.GetValue(warmup) ?? o.WarmupSteps,
            Schedule = r.GetValue(schedule) ?? o.Schedule,
            WeightDecay = r.GetValue(decay) ?? o.WeightDecay,
            GradClip = r.GetValue(clip) ?? o.GradClip,
            WeightNorm = r.GetValue(weightNorm) ?? o.WeightNorm,
            Seed = r.GetValue(seed) ?? o.Seed,
            EvalEvery = r.GetValue(evalEvery) ?? o.EvalEvery,
            EvalWindows = r.GetValue(evalWindows) ?? o.EvalWindows,
            CheckpointEvery = r.GetValue(checkpointEvery) ?? o.CheckpointEvery,
            KeepCheckpoints = r.GetValue(keep) ?? o.KeepCheckpoints,
            LogEvery = r.GetValue(logEvery) ?? o.LogEvery,
            ChecksumEvery = r.GetValue(checksumEvery) ?? o.ChecksumEvery,
        };
    }

    /// <summary>The length given on the command line, for a resumed run; null when neither flag is given.</summary>
    public RunLength? ReadLength(ParseResult r) =>
        r.GetValue(steps) is null && r.GetValue(tokens) is null ? null : new RunLength(r.GetValue(steps), r.GetValue(tokens));

    /// <summary>
    /// The learning-rate schedule and clipping given on the command line, which a resumed run may also change (the advised
    /// fix after a divergence); flags not given keep the run's values.
    /// </summary>
    public ResumeSchedule ReadSchedule(ParseResult r) =>
        new(r.GetValue(lr), r.GetValue(minLr), r.GetValue(warmup), r.GetValue(schedule), r.GetValue(clip));
}
