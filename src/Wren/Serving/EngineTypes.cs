using System.Threading.Channels;
using Wren.Inference;

namespace Wren.Serving;

/// <summary>How the engine is sized.</summary>
public sealed record EngineOptions
{
    /// <summary>
    /// Largest <see cref="MaxBatch"/>: the rows the fused CPU matrix–vector kernel takes in one decode step
    /// (<see cref="Kernels.MatVec.MaxInputRows"/>).
    /// </summary>
    public const int MaxSlots = Kernels.MatVec.MaxInputRows;

    /// <summary>Largest <see cref="MaxBatchedTokens"/>: a step's staging slots are one per chunk it can hold.</summary>
    public const int MaxBatchedTokensLimit = 1 << 16;

    /// <summary>Most requests decoding at once (slots); at most <see cref="MaxSlots"/>.</summary>
    public int MaxBatch { get; init; } = 32;
    /// <summary>Most requests waiting for a slot; one more is refused (<see cref="ServeError.QueueFull"/>).</summary>
    public int MaxQueue { get; init; } = 256;
    /// <summary>Prompt + generated tokens of one request (meta tokens not counted).</summary>
    public int MaxContext { get; init; } = 4096;
    /// <summary>Bytes for weights + slot caches + prefix cache; the slots are cut to fit (null: <see cref="MaxBatch"/> slots).</summary>
    public long? MaxMemoryBytes { get; init; }
    /// <summary>Bytes of the prefix-state cache; 0 turns it off.</summary>
    public long PrefixCacheBytes { get; init; } = 512L << 20;
    /// <summary>
    /// Prompt tokens of one prefill chunk (a [1, chunk] forward), interleaved with decode steps: each chunk stalls the running
    /// requests for its length, so shorter chunks bound inter-token latency. 64 prefills as fast as 128 on the 2-core
    /// reference machine (flash-300m: 280 vs 275 tokens/s) and, with <see cref="MaxBatchedTokens"/> 80, gave 16 streams of
    /// 256-token prompts 9 % more output tokens/s and 58 % lower ITL p99 than 128/256 (docs/benchmarks.md).
    /// </summary>
    public int PrefillChunk { get; init; } = 64;
    /// <summary>Prompt tokens per prefix-cache block (a snapshot of the slot state after each block), rounded up to a multiple
    /// of <see cref="PrefillChunk"/> (<see cref="CacheBlock"/>) so that cached prefixes end on chunk boundaries.</summary>
    public int PrefixBlock { get; init; } = 128;
    /// <summary><see cref="PrefixBlock"/> rounded up to a multiple of <see cref="PrefillChunk"/>: the block the engine caches.</summary>
    public int CacheBlock => (PrefixBlock + PrefillChunk - 1) / PrefillChunk * PrefillChunk;
    /// <summary>
    /// Tokens one engine step runs at most (vLLM's <c>max_num_batched_tokens</c>): one per decoding request, the rest prefill
    /// chunks; a step runs one chunk even when the decoding requests alone fill the budget, so a budget below
    /// <see cref="PrefillChunk"/> means one chunk a step.
    /// </summary>
    public int MaxBatchedTokens { get; init; } = 80;

    /// <summary>Staging rows a step prefills into: one per chunk the token budget holds, at most <see cref="MaxBatch"/>.</summary>
    public int StagingRows => Math.Min(MaxBatch, (MaxBatchedTokens + PrefillChunk - 1) / PrefillChunk);

    /// <summary>
    /// Slots of <see cref="MaxContext"/> tokens that fit <paramref name="budget"/> bytes beside the weights, the prefix cache and
    /// the <see cref="StagingRows"/> prefill rows (the engine's rule), before the <see cref="MaxBatch"/> cap; 0 when none fits.
    /// </summary>
    public long SlotsWithin(Models.ModelFootprint footprint, long budget)
    {
        long perSlot = footprint.CacheBytes(1, MaxContext);
        return Math.Max(0, (budget - footprint.WeightBytes - PrefixCacheBytes - StagingRows * perSlot) / perSlot);
    }

    public void Validate()
    {
        if (MaxBatch is < 1 or > MaxSlots)
            throw new WrenException($"max batch must be between 1 and {MaxSlots}, got {MaxBatch}");
        if (MaxQueue < 0) throw new WrenException($"max queue must be >= 0, got {MaxQueue}");
        if (MaxContext < 2) throw new WrenException($"max context must be >= 2, got {MaxContext}");
        if (PrefixCacheBytes < 0) throw new WrenException($"prefix cache size must be >= 0, got {PrefixCacheBytes}");
        if (PrefillChunk is < 1 or > Models.HybridForCausalLM.PrefillChunk)
            throw new WrenException($"prefill chunk must be between 1 and {Models.HybridForCausalLM.PrefillChunk}, got {PrefillChunk}");
        if (PrefixBlock is < 1 or > MaxBatchedTokensLimit)
            throw new WrenException($"prefix block must be between 1 and {MaxBatchedTokensLimit}, got {PrefixBlock}");
        if (MaxBatchedTokens is < 1 or > MaxBatchedTokensLimit)
            throw new WrenException($"max batched tokens must be between 1 and {MaxBatchedTokensLimit}, got {MaxBatchedTokens}");
    }
}

/// <summary>One generation request in token ids.</summary>
/// <param name="Prompt">Prompt ids (non-empty, inside the vocabulary).</param>
/// <param name="Sampling">Sampling settings, seed, max new tokens (0 allowed with <paramref name="EchoLogprobs"/>), stops.</param>
/// <param name="TopLogprobs">Null: no log-probabilities; otherwise each generated token's, with this many alternatives.</param>
/// <param name="EchoLogprobs">Also return the prompt's token log-probabilities (from <see cref="Scoring.Logits"/>).</param>
public sealed record EngineRequest(IReadOnlyList<int> Prompt, SamplingOptions Sampling, int? TopLogprobs = null, bool EchoLogprobs = false);

/// <summary>A token's log-probability (natural log) and the most likely alternatives at its position.</summary>
public sealed record TokenLogprob(int TokenId, string Token, double? Logprob, IReadOnlyList<TokenAlternative> Top);

/// <summary>An alternative token at a position.</summary>
public sealed record TokenAlternative(int TokenId, string Token, double Logprob);

/// <summary>One generated token: the text it adds (stop strings held back and cut) and, when asked, its log-probability.</summary>
/// <param name="FinishReason">Null while running; "stop" (stop token or string) or "length" on the last step.</param>
public sealed record GenerationStep(int TokenId, string Text, TokenLogprob? Logprob, string? FinishReason);

/// <summary>Timing and counts of a finished request.</summary>
public sealed record GenerationUsage(int PromptTokens, int CompletionTokens, int CachedPromptTokens, double TimeToFirstTokenSeconds,
                                     double TotalSeconds, string FinishReason)
{
    public double TokensPerSecond => CompletionTokens / Math.Max(TotalSeconds - TimeToFirstTokenSeconds, 1e-9);
}

/// <summary>A submitted request: its steps as they are generated. Cancel its token (or stop reading) to free its slot.</summary>
public sealed class GenerationHandle
{
    internal GenerationHandle(string id, Channel<GenerationStep> steps)
    {
        Id = id;
        this.steps = steps;
    }

    readonly Channel<GenerationStep> steps;
    public string Id { get; }
    public ChannelReader<GenerationStep> Steps => steps.Reader;
    internal ChannelWriter<GenerationStep> StepsWriter => steps.Writer;
    /// <summary>
    /// Set before the first step when <see cref="EngineRequest.EchoLogprobs"/>: one entry per prompt token, the first with a null
    /// log-probability.
    /// </summary>
    public IReadOnlyList<TokenLogprob>? PromptLogprobs { get; internal set; }
    /// <summary>Set when the steps end normally.</summary>
    public GenerationUsage? Usage { get; internal set; }
}

/// <summary>A request the server refuses: HTTP status and an OpenAI-style error body.</summary>
public sealed class ServeError(int status, string type, string message, string? param = null, string? code = null) : WrenException(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public static ServeError Invalid(string message, string? param = null, string? code = null) =>
        new(400, "invalid_request_error", message, param, code);

    /// <summary>The queue is full: 429 with <c>Retry-After</c> (RFC 6585 §4; OpenAI answers overload with 429 too).</summary>
    public static ServeError QueueFull(int maxQueue) =>
        new(429, "server_error", $"the server is overloaded: {maxQueue} requests are already waiting; retry later", null, "queue_full");

    /// <summary>The engine is shutting down: 503 with <c>Retry-After</c> (another instance may take the request).</summary>
    public static ServeError Stopping() =>
        new(503, "server_error", "the server is shutting down and takes no new requests; retry later", null, "shutting_down");
}
