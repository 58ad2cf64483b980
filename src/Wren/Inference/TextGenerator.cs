using System.Diagnostics;
using TorchSharp;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;

namespace Wren.Inference;

/// <summary>One decoding step: the new token of every row still running, and the text it adds.</summary>
/// <param name="Row">Prompt index.</param>
/// <param name="TokenId">The sampled id.</param>
/// <param name="Text">Text this token completes (may be empty while a multi-byte character is incomplete).</param>
/// <param name="FinishReason">Null while running; "stop-token", "stop-string", "stop-grammar" (the grammar's string is
/// complete and nothing may follow) or "length" on the row's last step.</param>
public sealed record GeneratedToken(int Row, int TokenId, string Text, string? FinishReason);

/// <summary>Timing of one generation call.</summary>
public sealed class GenerationStats
{
    public long PromptTokens { get; internal set; }
    public double PrefillSeconds { get; internal set; }
    public long GeneratedTokens { get; internal set; }
    public double DecodeSeconds { get; internal set; }
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(PrefillSeconds, 1e-9);
    public double DecodeTokensPerSecond => GeneratedTokens / Math.Max(DecodeSeconds, 1e-9);
}

/// <summary>
/// Streaming text generation: ragged prompts are left-padded into one batch, prefilled in parallel from the
/// reused meta-token state, then decoded token by token through the caches. Tensor work stays on the caller's
/// thread (dispose scopes are thread-local): enumerate synchronously.
/// </summary>
public sealed class TextGenerator(HybridForCausalLM model, ITextTokenizer tokenizer)
{
    public GenerationStats LastStats { get; private set; } = new();

    public IEnumerable<GeneratedToken> Generate(string prompt, SamplingOptions options) => Generate([prompt], options);

    public IEnumerable<GeneratedToken> Generate(IReadOnlyList<string> prompts, SamplingOptions options) =>
        GenerateIds(prompts.Select(p => tokenizer.EncodePrompt(p).ToArray()).ToList(), options);

    /// <summary>Checks the options and prompts at once (before anything streams), then returns the lazy stream of tokens.</summary>
    /// <exception cref="WrenException">Invalid sampling options, no prompt, an empty prompt, a prompt or stop id outside the
    /// vocabulary, or the longest prompt + max new tokens past the model's <c>max_position_embeddings</c> (when set).</exception>
    public IEnumerable<GeneratedToken> GenerateIds(IReadOnlyList<int[]> prompts, SamplingOptions options)
    {
        options.Validate();
        foreach (var id in options.StopTokenIds)
            if (id < 0 || id >= model.Config.VocabSize)
                throw new WrenException($"stop token id {id} is outside the model's vocabulary of {model.Config.VocabSize} " +
                                        "(stop ids come from the tokenizer's end-of-text tokens and --stop-token ids: " +
                                        "is the tokenizer this model's?)");
        if (prompts.Count == 0) throw new WrenException("no prompt given");
        if (options.Grammar is not null && tokenizer.TokenBytes is null)
            throw new WrenException($"constrained decoding needs the bytes of every token, which the tokenizer {tokenizer.Name} does " +
                                    "not give (byte-level BPE, SentencePiece and byte tokenizers do)");
        if (model.Config.MaxPositionEmbeddings is { } context
            && SamplingOptions.ContextExceeded(prompts.Max(p => p.Length), options.MaxNewTokens, context, "max new tokens") is { } exceeded)
            throw new WrenException(exceeded);
        for (int b = 0; b < prompts.Count; b++)
        {
            if (prompts[b].Length == 0) throw new WrenException($"prompt {b} is empty after tokenization");
            foreach (var id in prompts[b])
                if (id < 0 || id >= model.Config.VocabSize) throw new WrenException($"prompt {b} has token id {id}, outside the model's " +
                                                                                    $"vocabulary of {model.Config.VocabSize}");
        }
        return Stream(prompts, options);
    }

    IEnumerable<GeneratedToken> Stream(IReadOnlyList<int[]> prompts, SamplingOptions options)
    {
        var stats = new GenerationStats { PromptTokens = prompts.Sum(p => p.Length) };
        LastStats = stats;
        var device = model.LmHeadWeight.device;
        int B = prompts.Count, longest = prompts.Max(p => p.Length);
        var leftPad = prompts.Select(p => (long)(longest - p.Length)).ToArray();
        var padId = model.Config.PadTokenId ?? 0;
        var padded = prompts.SelectMany((p, b) => Enumerable.Repeat((long)padId, (int)leftPad[b]).Concat(p.Select(i => (long)i))).ToArray();
        using var generator = options.Seed is { } seed ? new Generator(seed, device) : null;
        var stopIds = new HashSet<int>(options.StopTokenIds);
        var texts = Enumerable.Range(0, B).Select(_ => new StreamingText(tokenizer, options.StopStrings)).ToArray();
        var finished = new bool[B];
        var masker = options.Grammar is { } grammar
            ? new Constraints.TokenMasker(grammar, tokenizer.TokenBytes!, model.Config.VocabSize) : null;
        var cursors = Enumerable.Range(0, B).Select(_ => masker?.Start(options.StopTokenIds)).ToArray();

        using var noGrad = no_grad();
        using var cache = model.NewCache(B, longest + options.MaxNewTokens, (int)leftPad.Max());
        using var seen = zeros([B, model.Config.VocabSize], ScalarType.Bool, device);
        using var counts = options.CountsGenerated ? zeros([B, model.Config.VocabSize], ScalarType.Float64, device) : null;
        if (options.RepetitionPenalty != 1.0)
        {
            // Pads are replaced by the row's first real token so only real tokens count as seen.
            var real = prompts.SelectMany(p => Enumerable.Repeat((long)p[0], longest - p.Length).Concat(p.Select(i => (long)i))).ToArray();
            using var scope = NewDisposeScope();
            var ids = tensor(real, [B, longest], device: device);
            seen.scatter_(1, ids, ones_like(ids, ScalarType.Bool));
        }

        var clock = Stopwatch.StartNew();
        Tensor logits = empty(0);
        using (var ids = tensor(padded, [B, longest], device: device))
        using (var pads = tensor(leftPad, device: device))
        using (NewDisposeScope())
        {
            logits.Dispose();
            logits = model.forward(new LMInput(ids, cache, leftPad.Any(p => p > 0) ? pads : null,
                                               LastPositionOnly: true)).Logits.squeeze(1).MoveToOuterDisposeScope();
        }
        stats.PrefillSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();

        try
        {
            for (int step = 0; step < options.MaxNewTokens && finished.Contains(false); step++)
            {
                long[] next;
                using (NewDisposeScope())
                {
                    // Each row's own mask (finished rows, whose token is ignored, take any token).
                    var masks = cursors.Select((c, b) => c is null || finished[b] ? null : c.Allowed()).ToArray();
                    if (masks.Any(m => m is not null && !m.Contains(true)))
                        throw new WrenException("no token of the vocabulary continues the grammar here");
                    var allowed = masker is null ? null
                        : tensor(masks.SelectMany(m => m ?? Enumerable.Repeat(true, model.Config.VocabSize)).ToArray(), device: device)
                            .reshape(B, -1);
                    var chosen = Sampler.Next(logits, options, generator, options.RepetitionPenalty != 1.0 ? seen : null, allowed,
                                              counts);
                    next = chosen.cpu().data<long>().ToArray();
                    if (options.RepetitionPenalty != 1.0) seen.scatter_(1, chosen.unsqueeze(1), ones([B, 1], ScalarType.Bool, device));
                    counts?.scatter_add_(1, chosen.unsqueeze(1), ones([B, 1], ScalarType.Float64, device));
                }
                logits.Dispose();
                var events = new List<GeneratedToken>();
                for (int b = 0; b < B; b++)
                {
                    if (finished[b]) continue;
                    int id = (int)next[b];
                    stats.GeneratedTokens++;
                    // Text is held back while its last character is incomplete (a multi-byte UTF-8 sequence split across
                    // tokens) or could still become a stop string, and flushed when the row ends, U+FFFD standing for bytes
                    // that can never complete (the same rule as the server's streams).
                    bool stopToken = stopIds.Contains(id);
                    cursors[b]?.Advance(id);
                    bool complete = cursors[b] is { IsComplete: true };
                    bool ending = stopToken || complete || step == options.MaxNewTokens - 1;
                    var (delta, stopped) = stopToken ? ("", false) : texts[b].Add(id);
                    if (ending && !stopped) delta += texts[b].Flush();
                    string? reason = stopped ? "stop-string" : stopToken ? "stop-token" : complete ? "stop-grammar"
                        : ending ? "length" : null;
                    if (reason is not null) finished[b] = true;
                    events.Add(new GeneratedToken(b, id, delta, reason));
                }
                if (finished.Contains(false) && step < options.MaxNewTokens - 1)
                {
                    using var ids = tensor(next, [B, 1], device: device);
                    using (NewDisposeScope())
                        logits = model.forward(new LMInput(ids, cache, LastPositionOnly: true)).Logits.squeeze(1).MoveToOuterDisposeScope();
                }
                else logits = empty(0);
                stats.DecodeSeconds = clock.Elapsed.TotalSeconds;
                clock.Stop();   // the consumer's time (printing) is not decode time
                foreach (var e in events) yield return e;
                clock.Start();
            }
        }
        finally
        {
            logits.Dispose();   // also when the consumer stops early
        }
    }
}
