using TorchSharp;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;

namespace Wren.Evaluation;

/// <summary>A log-likelihood request in tokens: the harness's <c>(context_enc, continuation_enc)</c>.</summary>
/// <param name="Context">Tokens conditioned on (at least one).</param>
/// <param name="Continuation">Tokens scored (at least one).</param>
public sealed record TokenRequest(IReadOnlyList<int> Context, IReadOnlyList<int> Continuation);

/// <summary>The answer to a <see cref="TokenRequest"/>: the sum of the continuation's log-probabilities (natural log) and
/// whether every continuation token is the model's most likely token at its position (the harness's <c>is_greedy</c>).</summary>
public readonly record struct LoglikelihoodResult(double LogLikelihood, bool IsGreedy);

/// <summary>
/// Scores log-likelihood requests the way lm-evaluation-harness's Hugging Face model does
/// (lm_eval/models/huggingface.py, <c>_loglikelihood_tokens</c>): the input is <c>(context + continuation)[-(L+1):][:-1]</c>
/// for a maximum length L (truncated from the left), the continuation's log-probabilities are read from the last
/// positions of one forward, requests needing the same input share it, and identical requests are answered once (a
/// cache kept for the scorer's lifetime).
/// Requests run in batches of equal-or-shorter rows padded on the right, which a causal model never sees, so batched
/// and one-by-one scoring agree (to float rounding of the different matrix shapes).
/// </summary>
public sealed class LoglikelihoodScorer
{
    /// <summary>The harness's maximum length when the model config names none (<c>_DEFAULT_MAX_LENGTH</c>).</summary>
    public const int DefaultMaxLength = 2048;

    readonly HybridForCausalLM model;
    readonly Dictionary<string, LoglikelihoodResult> cache = new(StringComparer.Ordinal);

    /// <param name="model">The model, in eval mode.</param>
    /// <param name="tokenizer">Its tokenizer; its end-of-text id conditions empty contexts and the first rolling window.</param>
    /// <param name="batchSize">Rows per forward (≥ 1).</param>
    /// <param name="maxLength">Tokens per forward: default the config's <c>max_position_embeddings</c>, else 2048.</param>
    public LoglikelihoodScorer(HybridForCausalLM model, ITextTokenizer tokenizer, int batchSize = 1, int? maxLength = null)
    {
        if (batchSize < 1) throw new WrenException($"the batch size must be at least 1, got {batchSize}");
        this.model = model;
        Tokenizer = tokenizer;
        BatchSize = batchSize;
        MaxLength = maxLength ?? model.Config.MaxPositionEmbeddings ?? DefaultMaxLength;
        if (MaxLength < 2) throw new WrenException($"the maximum length must be at least 2 tokens, got {MaxLength}");
    }

    public ITextTokenizer Tokenizer { get; }
    public int BatchSize { get; }
    public int MaxLength { get; }

    /// <summary>Forward passes run so far (for throughput figures).</summary>
    public long Forwards { get; private set; }

    /// <summary>The token that conditions an empty context and the first rolling window (the harness's <c>prefix_token_id</c>):
    /// the tokenizer's end-of-text, else the config's <c>bos_token_id</c>, else its (first) <c>eos_token_id</c>.</summary>
    public int PrefixTokenId => Tokenizer.EndOfTextId ?? model.Config.BosTokenId ?? FirstId(model.Config.EosTokenId)
        ?? throw new WrenException($"the tokenizer ({Tokenizer.Name}) and config.json define no end-of-text or BOS token " +
                                   "to condition an empty context on");

    static int? FirstId(System.Text.Json.Nodes.JsonNode? node) => node switch
    {
        System.Text.Json.Nodes.JsonArray { Count: > 0 } list => (int?)list[0],
        System.Text.Json.Nodes.JsonValue value when value.TryGetValue(out int id) => id,
        _ => null,
    };

    /// <summary>
    /// Context and continuation tokens as the harness makes them (lm_eval/api/model.py, <c>_encode_pair</c> and
    /// <c>loglikelihood</c>): trailing whitespace moves from the context to the continuation, <c>whole =
    /// encode(context + continuation)</c>, <c>context_enc = encode(context)</c>, <c>continuation_enc =
    /// whole[len(context_enc):]</c>, so a token merging across the boundary belongs to the continuation. An empty context
    /// becomes the prefix token, unless the continuation starts with it.
    /// </summary>
    public TokenRequest EncodePair(string context, string continuation)
    {
        if (context.Length == 0)
        {
            var alone = Tokenizer.Encode(continuation);
            if (alone.Count == 0) throw new WrenException("cannot score an empty continuation");
            return alone[0] != PrefixTokenId ? new TokenRequest([PrefixTokenId], alone)
                : new TokenRequest([alone[0]], alone.Skip(1).ToArray());
        }
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        var whole = Tokenizer.Encode(context + continuation);
        var contextTokens = Tokenizer.Encode(context);
        return new TokenRequest(contextTokens, whole.Skip(contextTokens.Count).ToArray());
    }

    /// <summary>
    /// The harness's rolling windows over a whole text (lm_eval/utils.py, <c>get_rolling_token_windows</c> with
    /// <c>context_len = 1</c>, then <c>make_disjoint_window</c>): the first window predicts the first
    /// <see cref="MaxLength"/> tokens after the prefix token, each next one the following tokens with as much preceding
    /// text as fits. Summing their log-likelihoods scores every token exactly once.
    /// </summary>
    public IReadOnlyList<TokenRequest> RollingWindows(string text)
    {
        var tokens = Tokenizer.Encode(text);
        var windows = new List<TokenRequest>();
        if (tokens.Count == 0) return windows;
        int first = Math.Min(MaxLength, tokens.Count);
        windows.Add(new TokenRequest([PrefixTokenId], tokens.Take(first).ToArray()));   // [prefix] + tokens[:first-1] made disjoint
        for (int predicted = first; predicted < tokens.Count;)
        {
            int length = Math.Min(tokens.Count - predicted, MaxLength);   // pred_len = max_seq_len - context_len + 1
            int end = predicted + length;
            var input = tokens.Skip(Math.Max(0, end - MaxLength - 1)).Take(end - 1 - Math.Max(0, end - MaxLength - 1)).ToArray();
            windows.Add(new TokenRequest(input[..(input.Length - (length - 1))], tokens.Skip(end - length).Take(length).ToArray()));
            predicted = end;
        }
        return windows;
    }

    /// <summary>
    /// Scores <paramref name="requests"/> (in order), longest first in batches of <see cref="BatchSize"/>; repeated
    /// requests are computed once. <paramref name="progress"/> gets the number of requests answered after each batch.
    /// </summary>
    public IReadOnlyList<LoglikelihoodResult> Score(IReadOnlyList<TokenRequest> requests, Action<int>? progress = null)
    {
        var keys = requests.Select(Key).ToArray();
        var copies = keys.GroupBy(k => k, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        // One row per distinct model input: requests whose context + continuation[:-1] agree (the choices " A" … " D" after
        // one context) read their tokens from the same logits, as the harness's one-token-continuation grouping does.
        var rows = Enumerable.Range(0, requests.Count).Where(i => !cache.ContainsKey(keys[i])).DistinctBy(i => keys[i])
            .Select(i => (Request: i, Input: Input(requests[i], MaxLength)))
            .GroupBy(r => string.Join(',', r.Input), StringComparer.Ordinal)
            .Select(g => (g.First().Input, Requests: g.Select(r => r.Request).ToList()))
            .OrderByDescending(r => r.Input.Length).ThenBy(r => r.Requests[0]).ToList();
        int done = requests.Count - rows.Sum(r => r.Requests.Sum(i => copies[keys[i]]));
        progress?.Invoke(done);
        for (int start = 0; start < rows.Count; start += BatchSize)
        {
            var batch = rows.Skip(start).Take(BatchSize).ToList();
            var rowRequests = batch.Select(r => r.Requests.Select(i => requests[i]).ToList()).ToList();
            var results = ScoreBatch(batch.Select(r => r.Input).ToList(), rowRequests);
            for (int b = 0; b < batch.Count; b++)
                for (int j = 0; j < batch[b].Requests.Count; j++) cache[keys[batch[b].Requests[j]]] = results[b][j];
            done += batch.Sum(r => r.Requests.Sum(i => copies[keys[i]]));
            progress?.Invoke(done);
        }
        return keys.Select(k => cache[k]).ToArray();
    }

    static string Key(TokenRequest r) => string.Join(',', r.Context) + "|" + string.Join(',', r.Continuation);

    /// <summary>One forward over <paramref name="inputs"/> (right-padded), then each row's requests read from its logits.</summary>
    LoglikelihoodResult[][] ScoreBatch(IReadOnlyList<long[]> inputs, IReadOnlyList<List<TokenRequest>> requests)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        int width = inputs.Max(i => i.Length);
        var ids = new long[inputs.Count * width];   // right padding with id 0: later positions never reach earlier ones
        for (int b = 0; b < inputs.Count; b++) inputs[b].CopyTo(ids, b * width);
        var input = tensor(ids, [inputs.Count, width], device: model.LmHeadWeight.device);
        var logits = model.forward(new LMInput(input)).Logits;   // [B, T, V]
        Forwards++;
        return requests.Select((row, b) => row.Select(r => Read(logits[b], inputs[b].Length, r.Continuation)).ToArray()).ToArray();
    }

    /// <summary><c>(context + continuation)[-(L+1):][:-1]</c>: the tokens fed to the model.</summary>
    static long[] Input(TokenRequest request, int maxLength)
    {
        if (request.Context.Count == 0 || request.Continuation.Count == 0)
            throw new WrenException("a log-likelihood request needs at least one context and one continuation token");
        if (request.Continuation.Count > maxLength)
            throw new WrenException($"the continuation has {request.Continuation.Count} tokens, more than the maximum length {maxLength}");
        var all = request.Context.Concat(request.Continuation).Select(t => (long)t).ToArray();
        return all[Math.Max(0, all.Length - (maxLength + 1))..^1];
    }

    /// <summary>Sum of log-softmax at the continuation's tokens over the last positions of one row's logits [T, V].</summary>
    static LoglikelihoodResult Read(Tensor rowLogits, int inputLength, IReadOnlyList<int> continuation)
    {
        int n = continuation.Count;
        var logProbs = rowLogits.narrow(0, inputLength - n, n).log_softmax(-1);                 // [n, V]
        var target = tensor(continuation.Select(t => (long)t).ToArray(), device: logProbs.device);
        double sum = logProbs.gather(1, target.unsqueeze(1)).to(ScalarType.Float64).sum().item<double>();
        bool greedy = logProbs.argmax(-1).eq(target).all().item<bool>();
        return new LoglikelihoodResult(sum, greedy);
    }

    /// <summary>
    /// The log-likelihood of <paramref name="continuation"/> after <paramref name="context"/> (token ids), computed as
    /// <c>wren eval</c> computes it: the harness's <c>loglikelihood</c> request. A server's echoed log-probabilities
    /// must sum to this. <paramref name="maxLength"/> defaults as in the constructor.
    /// </summary>
    public static LoglikelihoodResult Loglikelihood(HybridForCausalLM model, IReadOnlyList<int> context, IReadOnlyList<int> continuation,
                                                    int? maxLength = null)
    {
        var request = new TokenRequest(context, continuation);
        int length = maxLength ?? model.Config.MaxPositionEmbeddings ?? DefaultMaxLength;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var input = Input(request, length);
        var logits = model.forward(new LMInput(tensor(input, [1, input.Length], device: model.LmHeadWeight.device))).Logits;
        return Read(logits[0], input.Length, continuation);
    }
}
