using TorchSharp;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Inference;

/// <summary>How closely a model with bf16 or int8 weights follows its fp32 reference.</summary>
/// <param name="Precision">The candidate's weight precision (float32, bfloat16, int8).</param>
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

/// <summary>Measures <see cref="PrecisionAccuracy"/>: the decode path (caches, matrix–vector kernels) for logits and greedy agreement, the parallel forward for perplexity.</summary>
public static class PrecisionAccuracyMeasurement
{
    /// <summary>
    /// Runs <paramref name="reference"/> and <paramref name="candidate"/> in lockstep: both prefill
    /// <paramref name="prompt"/> [1, P], then for <paramref name="greedyTokens"/> steps the reference's greedy token is
    /// fed to both, and their logits are compared. With <paramref name="validation"/> (windows [N, T+1] of token ids),
    /// both models' next-token perplexity over the windows is measured too.
    /// </summary>
    public static PrecisionAccuracy Compare(HybridForCausalLM reference, HybridForCausalLM candidate, Tensor prompt, int greedyTokens, Tensor? validation = null)
    {
        if (prompt.dim() != 2 || prompt.shape[0] != 1 || prompt.shape[1] < 1) throw new WrenException("the prompt must be one row of at least one token");
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
            var expected = reference.forward(new LMInput(input, referenceCache, LastPositionOnly: true)).Logits.reshape(-1).to(ScalarType.Float64);
            var actual = candidate.forward(new LMInput(input, candidateCache, LastPositionOnly: true)).Logits.reshape(-1).to(ScalarType.Float64);
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
        return new PrecisionAccuracy(candidate.Placement.Weights.Name(), maxError, Math.Sqrt(squaredError / values), Math.Sqrt(squaredReference / values), greedyTokens, (double)agreed / greedyTokens,
            firstDivergence, referencePerplexity, perplexity);
    }

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
