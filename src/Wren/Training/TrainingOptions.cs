using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Checkpoints;
using Wren.Common;

namespace Wren.Training;

/// <summary>
/// Everything that decides a training run besides the model config and the data; saved as <c>training.json</c> in
/// the run folder so that a run can be resumed and repeated. Defaults suit a small hybrid on a CPU.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Optimizer steps; when 0, derived from <see cref="Tokens"/>.</summary>
    public long Steps { get; init; }
    /// <summary>Training tokens (alternative to <see cref="Steps"/>): steps = tokens ÷ (batch × seq len × accumulation).</summary>
    public long Tokens { get; init; }
    public int BatchSize { get; init; } = 8;
    public int SeqLen { get; init; } = 256;
    public int GradAccumulation { get; init; } = 1;

    /// <summary><c>adamw</c> (decoupled weight decay) or <c>adam</c> (decay as L2 in the gradient).</summary>
    public string Optimizer { get; init; } = "adamw";
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Final learning rate as a fraction of the peak.</summary>
    public double MinLrRatio { get; init; } = 0.1;
    public long WarmupSteps { get; init; } = 50;
    /// <summary><c>cosine</c>, <c>wsd</c> (warm-up, stable, linear decay over the last <see cref="DecayFraction"/>) or
    /// <c>constant</c>.</summary>
    public string Schedule { get; init; } = "cosine";
    public double DecayFraction { get; init; } = 0.2;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Clip the global gradient norm to this (0: no clipping).</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Project weights to unit-norm rows/columns after every step (Nemotron-Flash paper, weight normalization); forces weight
    /// decay to 0.</summary>
    public bool WeightNorm { get; init; }
    public long Seed { get; init; }

    public long EvalEvery { get; init; } = 100;
    public int EvalWindows { get; init; } = 32;
    public long CheckpointEvery { get; init; } = 100;
    public int KeepCheckpoints { get; init; } = 3;
    public long LogEvery { get; init; } = 10;
    /// <summary>Compare the ranks' weight checksums every N steps (and before each checkpoint); data-parallel runs only.</summary>
    public long ChecksumEvery { get; init; } = 100;
    /// <summary>Ranks (MPI processes) the run was last started with; recorded, not chosen: resuming may use another number.</summary>
    public int WorldSize { get; init; } = 1;

    /// <summary>An interval that never comes: only the final step validates or checkpoints (proxy runs).</summary>
    public const long Never = long.MaxValue / 2;

    /// <summary>Sequences per optimizer step, over all ranks: batch size × accumulation.</summary>
    public long GlobalBatch => (long)BatchSize * GradAccumulation;
    public long TokensPerStep => GlobalBatch * SeqLen;
    public long TotalSteps => Steps > 0 ? Steps : (Tokens + TokensPerStep - 1) / TokensPerStep;
    /// <summary>The weight decay actually applied: none with weight normalization (Nemotron-Flash paper, weight normalization).</summary>
    public double EffectiveWeightDecay => WeightNorm ? 0 : WeightDecay;

    public void Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new WrenException(message); }
        Require(Steps > 0 || Tokens > 0, "give a training length: --steps N or --tokens N");
        Require(Steps >= 0 && Tokens >= 0, "steps and tokens must not be negative");
        Require(BatchSize >= 1 && SeqLen >= 1 && GradAccumulation >= 1,
                "batch size, sequence length and gradient accumulation must be ≥ 1");
        Require(Optimizer is "adamw" or "adam", $"unknown optimizer '{Optimizer}' (adamw, adam)");
        Require(Schedule is "cosine" or "wsd" or "constant", $"unknown schedule '{Schedule}' (cosine, wsd, constant)");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"the learning rate must be positive, got {LearningRate}");
        Require(MinLrRatio is >= 0 and <= 1, $"min LR ratio must be in [0, 1], got {MinLrRatio}");
        Require(DecayFraction is > 0 and <= 1, $"the WSD decay fraction must be in (0, 1], got {DecayFraction}");
        Require(WarmupSteps >= 0 && WeightDecay >= 0 && GradClip >= 0,
                "warm-up steps, weight decay and gradient clip must not be negative");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1 && Eps > 0, "Adam betas must be in [0, 1) and eps positive");
        Require(EvalEvery >= 1 && EvalWindows >= 1 && CheckpointEvery >= 1 && KeepCheckpoints >= 1 && LogEvery >= 1 && ChecksumEvery >= 1,
                "eval/checkpoint/log/checksum intervals, eval windows and kept checkpoints must be ≥ 1");
    }

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    public static TrainingOptions Load(string path)
    {
        if (!File.Exists(path)) throw new WrenException($"training options not found: {path}");
        try
        {
            return JsonSerializer.Deserialize<TrainingOptions>(File.ReadAllText(path), Json) ?? throw new WrenException($"{path}: empty");
        }
        catch (JsonException e) { throw new WrenException($"{path}: invalid training options ({e.Message})", e); }
    }
}

/// <summary>Learning rate per step: linear warm-up, then cosine, WSD or constant down to <c>MinLrRatio</c> × peak.</summary>
internal static class LearningRateSchedule
{
    public static double At(TrainingOptions options, long step)
    {
        double peak = options.LearningRate, floor = peak * options.MinLrRatio;
        long total = options.TotalSteps, warmup = Math.Min(options.WarmupSteps, Math.Max(0, total - 1));
        if (step < warmup) return peak * (step + 1) / warmup;
        switch (options.Schedule)
        {
            case "constant": return peak;
            case "wsd":
            {
                long decaySteps = Math.Max(1, (long)Math.Round((total - warmup) * options.DecayFraction));
                long decayStart = total - decaySteps;
                if (step < decayStart) return peak;
                return peak + (floor - peak) * Math.Min(1.0, (double)(step - decayStart + 1) / decaySteps);
            }
            default:
            {
                double progress = total - warmup <= 1 ? 1 : Math.Min(1.0, (double)(step - warmup) / (total - warmup - 1));
                return floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress));
            }
        }
    }
}
