using TorchSharp;
using Wren.Common;
using static TorchSharp.torch;

namespace Wren.Inference;

/// <summary>How the next token is chosen and when generation stops.</summary>
public sealed record SamplingOptions
{
    /// <summary>0 means greedy (argmax).</summary>
    public double Temperature { get; init; } = 0.8;
    /// <summary>Keep the k most likely tokens; 0 disables.</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of tokens whose probability reaches p; 1 disables.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>CTRL-style penalty on tokens already in the row (prompt included): logit/p if positive, logit·p otherwise; 1
    /// disables.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    public ulong? Seed { get; init; }
    public int MaxNewTokens { get; init; } = 128;
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>
    /// Constrained decoding: only tokens that keep the output a prefix of a string of this grammar are sampled, a stop token
    /// only where the output is complete, and generation ends ("stop") when nothing may follow (<see cref="Constraints"/>).
    /// </summary>
    public Constraints.ByteGrammar? Grammar { get; init; }
    /// <summary>Added to a token's logit before sampling (OpenAI's <c>logit_bias</c>: −100 bans a token, +100 all but forces
    /// it).</summary>
    public IReadOnlyDictionary<int, double> LogitBias { get; init; } = new Dictionary<int, double>();
    /// <summary>
    /// OpenAI's <c>frequency_penalty</c> in [−2, 2]: subtracted from a token's logit once per time it was already generated
    /// (prompt tokens not counted; https://platform.openai.com/docs/advanced-usage, "Frequency and presence penalties").
    /// </summary>
    public double FrequencyPenalty { get; init; }
    /// <summary>OpenAI's <c>presence_penalty</c> in [−2, 2]: subtracted from a token's logit once it has been generated at all.</summary>
    public double PresencePenalty { get; init; }
    /// <summary>Whether <see cref="Sampler.Next"/> needs the counts of generated tokens.</summary>
    public bool CountsGenerated => FrequencyPenalty != 0 || PresencePenalty != 0;

    public void Validate()
    {
        if (!(Temperature >= 0 && double.IsFinite(Temperature)))
            throw new WrenException($"temperature must be a finite number >= 0, got {Temperature}");
        if (TopK < 0) throw new WrenException($"top-k must be >= 0, got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new WrenException($"top-p must be in (0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty)))
            throw new WrenException($"repetition penalty must be a finite number > 0, got {RepetitionPenalty}");
        if (MaxNewTokens < 1) throw new WrenException($"max new tokens must be >= 1, got {MaxNewTokens}");
        if (StopStrings.Any(s => s.Length == 0)) throw new WrenException("stop strings must not be empty (one would stop at once)");
        if (LogitBias.Values.Any(b => !(b >= -100 && b <= 100)))
            throw new WrenException("logit biases must be between -100 and 100");
        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2))
            throw new WrenException($"frequency penalty must be between -2 and 2, got {FrequencyPenalty}");
        if (!(PresencePenalty >= -2 && PresencePenalty <= 2))
            throw new WrenException($"presence penalty must be between -2 and 2, got {PresencePenalty}");
    }

    /// <summary>The context rule shared by the generator and the server: prompt + new tokens must fit the model's context.</summary>
    /// <param name="field">How the caller names the new-token count ("max_tokens", "max new tokens").</param>
    /// <returns>The one-line error, or null when they fit.</returns>
    public static string? ContextExceeded(int promptTokens, int maxNewTokens, int contextLength, string field) =>
        (long)promptTokens + maxNewTokens <= contextLength ? null
            : $"this model's maximum context length is {contextLength} tokens; the prompt has {promptTokens} " +
              $"and {field} asks for {maxNewTokens} more";
}

/// <summary>Next-token selection from logits [B, V].</summary>
/// <remarks>
/// Any valid option gives finite probabilities: scores are float64, an overflow to +∞ is clamped to the largest double, and
/// the row maximum is subtracted before dividing by the temperature, so every scaled score is ≤ 0 with the best at 0. A tiny
/// temperature therefore tends to greedy (all mass on the best tokens) instead of overflowing softmax.
/// </remarks>
internal static class Sampler
{
    /// <param name="seen">[B, V] bool: tokens already in each row, for the repetition penalty (or null).</param>
    /// <param name="allowed">[B, V] bool: the only tokens each row may take (a grammar's mask; at least one per row), or null.</param>
    /// <param name="generated">
    /// [B, V] float64: how many times each row has generated each token, for the frequency and presence penalties (or null).
    /// </param>
    /// <returns>[B] int64 token ids.</returns>
    /// <exception cref="WrenException">The logits hold NaN (the model itself diverged).</exception>
    public static Tensor Next(Tensor logits, SamplingOptions options, Generator? generator, Tensor? seen = null, Tensor? allowed = null,
                              Tensor? generated = null)
    {
        using var scope = NewDisposeScope();
        var scores = logits.to(ScalarType.Float64);
        if (scores.isnan().any().item<bool>()) throw new WrenException("the model produced NaN logits; its weights are not finite");
        if (options.LogitBias.Count > 0)
        {
            var bias = new double[scores.shape[^1]];
            foreach (var (id, value) in options.LogitBias)
                if (id >= 0 && id < bias.Length) bias[id] = value;
            scores = scores + tensor(bias, device: scores.device);
        }
        if (options.CountsGenerated && generated is not null)
            scores = scores - generated * options.FrequencyPenalty - (generated > 0).to(ScalarType.Float64) * options.PresencePenalty;
        // Masked before the rest, so greedy, top-k and top-p all choose among allowed tokens only.
        if (allowed is not null) scores = scores.MaskedFill(allowed.logical_not(), double.NegativeInfinity);
        if (options.RepetitionPenalty != 1.0 && seen is not null)
        {
            var penalized = where(scores > 0, scores / options.RepetitionPenalty, scores * options.RepetitionPenalty);
            scores = where(seen, penalized, scores);
        }
        if (options.Temperature == 0) return scores.argmax(-1).MoveToOuterDisposeScope();
        scores = scores.clamp_max(double.MaxValue);
        scores = (scores - scores.max(-1, keepdim: true).values) / options.Temperature;
        if (options.TopK > 0 && options.TopK < scores.shape[^1])
        {
            var kth = scores.topk(options.TopK, dim: -1).values.narrow(-1, options.TopK - 1, 1);
            scores = scores.MaskedFill(scores < kth, double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, order) = scores.sort(-1, descending: true);
            var probabilities = sorted.softmax(-1);
            // Drop a token when the tokens ranked above it already reach p; the top token always stays.
            var drop = (probabilities.cumsum(-1) - probabilities) >= options.TopP;
            var dropInVocabOrder = zeros_like(drop).scatter(-1, order, drop);
            scores = scores.MaskedFill(dropInVocabOrder, double.NegativeInfinity);
        }
        return multinomial(scores.softmax(-1), 1, generator: generator).squeeze(-1).MoveToOuterDisposeScope();
    }
}
