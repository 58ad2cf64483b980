using TorchSharp;
using Wren.Data;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Inference;

/// <summary>How closely a model with bf16, int8 or 4-bit weights follows its fp32 reference.</summary>
/// <param name="Precision">The candidate's weight precision (float32, bfloat16, int8, q4, q4k).</param>
/// <param name="MaxLogitError">max |Δlogit| over every decode step and vocabulary entry.</param>
/// <param name="RmsLogitError">RMS of Δlogit over the same values.</param>
/// <param name="ReferenceLogitRms">RMS of the reference's logits, the scale the errors compare to.</param>
/// <param name="GreedyTokens">Tokens the reference generated greedily after the prompt.</param>
/// <param name="GreedyAgreement">Fraction of those steps at which the candidate, fed the same tokens, picks the same argmax.</param>
/// <param name="FirstDivergence">The first step whose argmax differs (where free-running greedy outputs part), or null if none.</param>
/// <param name="ReferencePerplexity">Validation perplexity of the reference, when validation windows were given.</param>
/// <param name="Perplexity">Validation perplexity of the candidate on the same windows.</param>
public sealed record PrecisionAccuracy(string Precision, double MaxLogitError, double RmsLogitError, double ReferenceLogitRms,
                                       int GreedyTokens, double GreedyAgreement, int? FirstDivergence,
                                       double? ReferencePerplexity, double? Perplexity)
{
    /// <summary>Relative perplexity change (candidate − reference) / reference, or null without validation data.</summary>
    public double? PerplexityChange => Perplexity / ReferencePerplexity - 1;
}

/// <summary>
/// Measures <see cref="PrecisionAccuracy"/>: the decode path (caches, matrix–vector kernels) for logits and greedy
/// agreement, the parallel forward for perplexity.
/// </summary>
public static class PrecisionAccuracyMeasurement
{
    /// <summary>
    /// Runs <paramref name="reference"/> and <paramref name="candidate"/> in lockstep: both prefill
    /// <paramref name="prompt"/> [1, P], then for <paramref name="greedyTokens"/> steps the reference's greedy token is
    /// fed to both, and their logits are compared. With <paramref name="validation"/> (windows [N, T+1] of token ids),
    /// both models' next-token perplexity over the windows is measured too.
    /// </summary>
    public static PrecisionAccuracy Compare(HybridForCausalLM reference, HybridForCausalLM candidate, Tensor prompt, int greedyTokens,
                                            Tensor? validation = null)
    {
        if (prompt.dim() != 2 || prompt.shape[0] != 1 || prompt.shape[1] < 1)
            throw new WrenException("the prompt must be one row of at least one token");
        if (greedyTokens < 1) throw new WrenException("greedy tokens must be positive");
        using var _ = no_grad();
        int P = (int)prompt.shape[1];
        using var referenceCache = reference.NewCache(1, P + greedyTokens);
        using var candidateCache = candidate.NewCache(1, P + greedyTokens);
        var input = prompt;
        double maxError = 0, squaredError = 0, squaredReference = 0;
        long values = 0;
        int agreed = 0;
        int? firstDivergence = null;
        for (int step = 0; step < greedyTokens; step++)
        {
            using var scope = NewDisposeScope();
            var expected = NextLogits(reference, input, referenceCache);
            var actual = NextLogits(candidate, input, candidateCache);
            var error = actual - expected;
            maxError = Math.Max(maxError, error.abs().max().item<double>());
            squaredError += error.square().sum().item<double>();
            squaredReference += expected.square().sum().item<double>();
            values += expected.shape[0];
            long token = expected.argmax().item<long>();
            if (actual.argmax().item<long>() == token) agreed++;
            else firstDivergence ??= step;
            input = tensor(new[] { token }, [1, 1]).MoveToOuterDisposeScope();
        }
        double? referencePerplexity = validation is null ? null : Perplexity(reference, validation);
        double? perplexity = validation is null ? null : Perplexity(candidate, validation);
        return new PrecisionAccuracy(candidate.Placement.Weights.Name(), maxError, Math.Sqrt(squaredError / values),
            Math.Sqrt(squaredReference / values), greedyTokens, (double)agreed / greedyTokens, firstDivergence,
            referencePerplexity, perplexity);
    }

    /// <summary>Logits [V] (fp64) of the last position after feeding <paramref name="input"/> through the cache.</summary>
    static Tensor NextLogits(HybridForCausalLM model, Tensor input, ModelCache cache) =>
        model.forward(new LMInput(input, cache, LastPositionOnly: true)).Logits.reshape(-1).to(ScalarType.Float64);

    /// <summary>exp(mean next-token cross-entropy) over windows [N, T+1], one window at a time.</summary>
    public static double Perplexity(HybridForCausalLM model, Tensor windows)
    {
        using var _ = no_grad();
        double sum = 0;
        long T = windows.shape[1] - 1;
        for (long i = 0; i < windows.shape[0]; i++)
        {
            using var scope = NewDisposeScope();
            var row = windows.narrow(0, i, 1);
            var logits = model.forward(new LMInput(row.narrow(1, 0, T))).Logits;
            sum += nn.functional.cross_entropy(logits.reshape(T, -1), row.narrow(1, 1, T).reshape(T)).item<float>();
        }
        return Math.Exp(sum / windows.shape[0]);
    }
}

/// <summary>What <see cref="PrecisionAccuracyReport.Measure"/> compares.</summary>
/// <param name="Model">A model folder (its weights, read as fp32, are the reference), or null to use <paramref name="Config"/>.</param>
/// <param name="Config">A config file or preset with seeded random weights, when there is no model folder.</param>
/// <param name="Data">A prepared dataset folder: the prompt and the validation windows come from its validation split.</param>
public sealed record PrecisionAccuracyOptions(string? Model, string? Config, string? Data)
{
    public IReadOnlyList<WeightPrecision> Precisions { get; init; } =
        [WeightPrecision.BFloat16, WeightPrecision.Int8, WeightPrecision.Q4, WeightPrecision.Q4K];
    public int GreedyTokens { get; init; } = 256;
    public int PromptTokens { get; init; } = 16;
    public int ValidationWindows { get; init; } = 16;
    public int SequenceLength { get; init; } = 256;
    public long Seed { get; init; }

    public void Validate()
    {
        if ((Model is null) == (Config is null)) throw new WrenException("give exactly one of a model folder or a config");
        if (GreedyTokens < 1 || PromptTokens < 1 || ValidationWindows < 1 || SequenceLength < 1)
            throw new WrenException("greedy tokens, prompt tokens, validation windows and sequence length must be positive");
    }
}

/// <summary>Every precision of one model against its fp32 form, as a report.</summary>
/// <param name="Name">The model folder or config it measured.</param>
/// <param name="Rows">One row per candidate precision.</param>
public sealed record PrecisionAccuracyReport(string Name, IReadOnlyList<PrecisionAccuracy> Rows)
{
    /// <summary>Loads (or randomly initializes) the fp32 reference, packs it into each precision and compares them.</summary>
    public static PrecisionAccuracyReport Measure(PrecisionAccuracyOptions options, Device? device = null)
    {
        options.Validate();
        using var reference = options.Model is { } folder
            ? HybridForCausalLM.FromPretrained(folder, device: device)
            : RandomModel(options, device);
        Tensor? validation = null, prompt;
        if (options.Data is { } data)
        {
            using var dataset = TokenDataset.Open(data);
            var windows = WindowSampler.Evenly(dataset.Validation, options.ValidationWindows, options.SequenceLength, out int count);
            if (windows.Max() >= reference.Config.VocabSize)
                throw new WrenException($"{data}: token id {windows.Max()} is outside the vocabulary ({reference.Config.VocabSize})");
            validation = tensor(windows, [count, options.SequenceLength + 1]);
            prompt = validation.narrow(0, 0, 1).narrow(1, 0, Math.Min(options.PromptTokens, options.SequenceLength)).clone();
        }
        else prompt = randint(0, reference.Config.VocabSize, [1, options.PromptTokens], generator: new Generator((ulong)options.Seed));
        using (validation)
        using (prompt)
            return new PrecisionAccuracyReport(options.Model ?? options.Config!, options.Precisions.Select(precision =>
            {
                using var candidate = WeightPacking.Pack(reference, precision);
                return PrecisionAccuracyMeasurement.Compare(reference, candidate, prompt, options.GreedyTokens, validation);
            }).ToList());
    }

    static HybridForCausalLM RandomModel(PrecisionAccuracyOptions options, Device? device)
    {
        var model = new HybridForCausalLM(HybridConfig.Load(options.Config!), new Placement(ScalarType.Float32, device ?? CPU));
        Initialization.Apply(model, options.Seed);
        model.eval();
        return model;
    }

    /// <summary>A Markdown table: one row per precision.</summary>
    public string ToMarkdown()
    {
        var lines = new List<string>
        {
            $"accuracy against float32: {Name}",
            "",
            "| weights | max Δlogit | RMS Δlogit | RMS logit | greedy agreement | first divergence | " +
            "perplexity (fp32 → this) | change |",
            "|---|---|---|---|---|---|---|---|",
        };
        lines.AddRange(Rows.Select(r =>
            $"| {r.Precision} | {r.MaxLogitError:G3} | {r.RmsLogitError:G3} | {r.ReferenceLogitRms:G3} | " +
            $"{r.GreedyAgreement:P1} of {r.GreedyTokens} | " +
            $"{(r.FirstDivergence is { } d ? $"step {d}" : "none")} | " +
            (r.Perplexity is { } p
                ? $"{r.ReferencePerplexity:F3} → {p:F3} | {r.PerplexityChange:+0.00%;-0.00%;0.00%} |"
                : "– | – |")));
        return string.Join('\n', lines);
    }
}
