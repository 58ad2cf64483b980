using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using Wren.Constraints;
using Wren.Inference;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;

namespace Wren.Serving;

/// <summary>
/// Continuous batching over one loaded model with chunked-prefill scheduling under a token budget (vLLM's
/// <c>max_num_batched_tokens</c>). One thread owns the model and every tensor (dispose scopes are thread-local). Each step
/// takes every running request first (one decode token each, all rows in one batched [R, 1] forward), then fills the rest
/// of <see cref="EngineOptions.MaxBatchedTokens"/> with prefill chunks of the waiting prompts in arrival order — several
/// chunks of one prompt, or chunks of several prompts, each prompt in a staging row of its own — and always at least one
/// chunk while prompts wait, so prefill progresses however many rows decode. A prompt's chunks start at multiples of
/// <see cref="EngineOptions.PrefillChunk"/> (after the longest cached prefix state, whose blocks are multiples of it), so where a
/// chunk begins and ends never depends on load, only how many chunks run in a step does. A prompt whose prefill ends
/// samples its first token and moves to a free slot; it decodes from the next step on. Prompts wait (arrival order) while
/// every slot is running or prefilling: a running request is never evicted, so the preemption counter stays 0.
/// A request leaves the batch when it finishes or is cancelled, and its slot is reused at the next step.
/// Each slot decodes at its own position with its own sampling settings and seed, and every kernel treats rows
/// independently, so a request's tokens and log-probabilities do not depend on what else runs (tested bit for bit for every
/// layer type).
/// Why the chunks are not packed with the decode rows (or with each other) into one forward: on AVX-512 the fp32
/// projections are batch-invariant (the tiled kernel sums every row as the one-row kernel does), but off it, and for
/// bf16/int8/4-bit prefill and the weights libtorch multiplies, a GEMM sums in another order than the matrix–vector kernel
/// (and its blocking changes with the row count), and the mixers would need a ragged form (a chunk's scan beside decode
/// rows' steps); packing would change a request's logits in the last bits depending on what runs beside it. Each chunk
/// therefore runs as its own [1, L] forward through its staging row, the same arithmetic as the request alone.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    readonly HybridForCausalLM model;
    readonly ITextTokenizer tokenizer;
    readonly ILogger logger;
    readonly Thread thread;
    readonly ConcurrentQueue<Job> incoming = new();
    readonly ConcurrentQueue<(Action Work, TaskCompletionSource Done)> calls = new();
    readonly SemaphoreSlim wake = new(0);
    readonly CancellationTokenSource stopping = new();
    int queued;
    long nextId;

    // Engine thread only:
    SlotCache? slots, staging;
    PrefixCache? prefixes;
    readonly Queue<Job> waiting = new();
    Job?[] running = [];
    int active;
    readonly List<Job> prefilling = [];          // arrival order; each holds a staging row (Job.StagingRow)
    readonly Stack<int> freeStaging = new();

    /// <param name="model">A model in eval mode; the engine's thread is its only user from now on.</param>
    /// <param name="tokenizer">Decodes generated ids (stop strings, text deltas, log-probability tokens).</param>
    public InferenceEngine(HybridForCausalLM model, ITextTokenizer tokenizer, EngineOptions options, ServingMetrics? metrics = null,
                           ILogger? logger = null)
    {
        options.Validate();
        this.model = model;
        this.tokenizer = tokenizer;
        this.logger = logger ?? NullLogger.Instance;
        Options = options;
        Metrics = metrics ?? new ServingMetrics();
        var footprint = ModelFootprint.Of(model.Config, model.Placement.Dtype, model.Placement.Weights);
        long perSlot = footprint.CacheBytes(1, options.MaxContext);
        Slots = options.MaxBatch;
        StagingRows = options.StagingRows;
        if (options.MaxMemoryBytes is { } budget)
        {
            Slots = (int)Math.Min(options.MaxBatch, options.SlotsWithin(footprint, budget));
            if (Slots < 1)
                throw new WrenException($"--max-memory {budget / 1e6:F0} MB holds no slot: weights take " +
                                        $"{footprint.WeightBytes / 1e6:F0} MB, the prefix cache {options.PrefixCacheBytes / 1e6:F0} MB " +
                                        $"and one slot of {options.MaxContext} tokens " +
                                        $"{perSlot / 1e6:F1} MB ({StagingRows + 1} are needed: {StagingRows} for prefill, " +
                                        "fewer with a lower --max-batched-tokens)");
            StagingRows = Math.Min(StagingRows, Slots);
        }
        else if (footprint.WeightBytes + options.PrefixCacheBytes + ((long)Slots + StagingRows) * perSlot is var need
                 && GC.GetGCMemoryInfo().TotalAvailableMemoryBytes is var physical && need > physical)
            throw new WrenException($"{Slots} slots (+{StagingRows} for prefill) of {options.MaxContext} tokens " +
                                    $"need {need / 1e6:F0} MB " +
                                    $"({perSlot / 1e6:F1} MB each, weights {footprint.WeightBytes / 1e6:F0} MB), more than this " +
                                    $"machine's {physical / 1e6:F0} MB: lower --max-context or --max-batch, or set --max-memory");
        SlotBytes = perSlot;
        var ready = new TaskCompletionSource();
        thread = new Thread(() => Run(ready)) { IsBackground = true, Name = "wren-inference" };
        thread.Start();
        ready.Task.GetAwaiter().GetResult();
    }

    public EngineOptions Options { get; }
    public ServingMetrics Metrics { get; }
    public HybridConfig Config => model.Config;
    /// <summary>The dtype of the model's weights (the output head's), for <see cref="OpenAiServer.Fingerprint"/>.</summary>
    public ScalarType WeightType => model.LmHeadWeight.dtype;
    public ITextTokenizer Tokenizer => tokenizer;
    /// <summary>Requests that can decode at once (<see cref="EngineOptions.MaxBatch"/>, cut to fit the memory budget).</summary>
    public int Slots { get; }
    /// <summary>
    /// Prompts that can prefill at once, each in a staging slot of its own (counted in the memory budget): as many
    /// <see cref="EngineOptions.PrefillChunk"/> chunks as <see cref="EngineOptions.MaxBatchedTokens"/> holds, at most
    /// <see cref="Slots"/>.
    /// </summary>
    public int StagingRows { get; }
    /// <summary>Cache bytes of one slot at <see cref="EngineOptions.MaxContext"/> tokens.</summary>
    public long SlotBytes { get; }
    /// <summary>Requests the engine holds at most: <see cref="Slots"/> running + <see cref="EngineOptions.MaxQueue"/> waiting.</summary>
    public int Capacity => Slots + Options.MaxQueue;
    /// <summary>Requests admitted by <see cref="Submit"/> and not yet finished, failed or dropped (each is released exactly
    /// once).</summary>
    public int Admitted => Volatile.Read(ref queued);

    /// <summary>
    /// Queues a request. Errors: <see cref="ServeError"/> 400 for an empty prompt, ids outside the vocabulary or more
    /// tokens than the context holds; 429 when <see cref="EngineOptions.MaxQueue"/> requests are already waiting; 503 once
    /// the engine is stopping.
    /// </summary>
    /// <param name="cancel">Cancelling (a client that disconnects) drops the request and frees its slot at the next step.</param>
    public GenerationHandle Submit(EngineRequest request, CancellationToken cancel = default)
    {
        Check(request);
        var cursor = Cursor(request.Sampling);
        if (stopping.IsCancellationRequested) throw ServeError.Stopping();
        if (Interlocked.Increment(ref queued) > Capacity)
        {
            Interlocked.Decrement(ref queued);
            throw ServeError.QueueFull(Options.MaxQueue);
        }
        var id = $"cmpl-{Interlocked.Increment(ref nextId):x}{Environment.TickCount64 & 0xffff:x4}";
        var job = new Job(request, new GenerationHandle(id, Channel.CreateUnbounded<GenerationStep>(new() { SingleWriter = true })),
                          new StreamingText(tokenizer, request.Sampling.StopStrings), cancel)
        { Cursor = cursor };
        job.Registration = cancel.Register(() => wake.Release());
        incoming.Enqueue(job);
        Metrics.QueueDepth.Inc();
        wake.Release();
        return job.Handle;
    }

    void Check(EngineRequest request)
    {
        var sampling = request.Sampling;
        if (request.Prompt.Count == 0) throw ServeError.Invalid("the prompt is empty", "prompt");
        foreach (var id in request.Prompt)
            if (id < 0 || id >= model.Config.VocabSize)
                throw ServeError.Invalid($"token id {id} is outside the model's vocabulary of {model.Config.VocabSize}", "prompt");
        if (sampling.MaxNewTokens < 0) throw ServeError.Invalid($"max_tokens must be >= 0, got {sampling.MaxNewTokens}", "max_tokens");
        if (sampling.MaxNewTokens == 0 && !request.EchoLogprobs)
            throw ServeError.Invalid("max_tokens must be >= 1 (0 only with echo and logprobs)", "max_tokens");
        if (SamplingOptions.ContextExceeded(request.Prompt.Count, sampling.MaxNewTokens, Options.MaxContext, "max_tokens") is { } exceeded)
            throw ServeError.Invalid(exceeded, "max_tokens", "context_length_exceeded");
        try { (sampling with { MaxNewTokens = Math.Max(1, sampling.MaxNewTokens) }).Validate(); }
        catch (WrenException e) { throw ServeError.Invalid(e.Message); }
        if (request.TopLogprobs is < 0 or > 20)
            throw ServeError.Invalid($"logprobs must be between 0 and 20, got {request.TopLogprobs}", "logprobs");
    }

    readonly System.Runtime.CompilerServices.ConditionalWeakTable<ByteGrammar, TokenMasker> maskers = new();

    /// <summary>A cursor at the start of the request's grammar (null without one); masks are cached per grammar instance.</summary>
    GrammarCursor? Cursor(SamplingOptions sampling)
    {
        if (sampling.Grammar is not { } grammar) return null;
        var bytes = tokenizer.TokenBytes
            ?? throw ServeError.Invalid($"constrained decoding needs the bytes of every token, which the tokenizer {tokenizer.Name} " +
                                        "does not give (byte-level BPE, SentencePiece and byte tokenizers do)", "response_format");
        try
        {
            var cursor = maskers.GetValue(grammar, g => new TokenMasker(g, bytes, model.Config.VocabSize)).Start(sampling.StopTokenIds);
            if (!cursor.Allowed().Contains(true))
                throw ServeError.Invalid("no token of this model's vocabulary can begin a string of the grammar", "response_format");
            return cursor;
        }
        catch (WrenException e) when (e is not ServeError) { throw ServeError.Invalid(e.Message, "response_format"); }
    }

    /// <summary>Runs <paramref name="work"/> on the engine thread between steps (tests read thread-local tensor statistics).</summary>
    internal Task InvokeAsync(Action work)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        calls.Enqueue((work, done));
        wake.Release();
        return done.Task;
    }

    sealed class Job(EngineRequest request, GenerationHandle handle, StreamingText text, CancellationToken cancel)
    {
        public EngineRequest Request { get; } = request;
        public GenerationHandle Handle { get; } = handle;
        public StreamingText Text { get; } = text;
        public CancellationToken Cancel { get; } = cancel;
        public CancellationTokenRegistration Registration { get; set; }
        public long Arrived { get; } = Stopwatch.GetTimestamp();
        public long LastToken { get; set; }
        public double? FirstTokenSeconds { get; set; }
        public int Prefilled { get; set; }
        public int StagingRow { get; set; } = -1;
        public int Cached { get; set; }
        public int Generated { get; set; }
        public int NextInput { get; set; }
        public Generator? Random { get; set; }
        public Tensor? Seen { get; set; }
        /// <summary>[1, V] float64 counts of generated tokens, for the frequency and presence penalties.</summary>
        public Tensor? Counts { get; set; }
        public GrammarCursor? Cursor { get; init; }

        public void Release()
        {
            Random?.Dispose();
            Seen?.Dispose();
            Counts?.Dispose();
            Registration.Dispose();
        }
    }

    void Run(TaskCompletionSource ready)
    {
        try
        {
            using var noGrad = no_grad();
            slots = new SlotCache(model, Slots, Options.MaxContext);
            staging = new SlotCache(model, StagingRows, Options.MaxContext);
            for (int row = StagingRows - 1; row >= 0; row--) freeStaging.Push(row);
            if (Options.PrefixCacheBytes > 0) prefixes = new PrefixCache(Options.PrefixCacheBytes, Options.CacheBlock);
            running = new Job?[Slots];
            ready.SetResult();
        }
        catch (Exception e)
        {
            ready.SetException(e);
            return;
        }
        using (no_grad())
            while (!stopping.IsCancellationRequested)
            {
                if (active == 0 && prefilling.Count == 0 && waiting.Count == 0 && incoming.IsEmpty && calls.IsEmpty) wake.Wait();
                while (wake.CurrentCount > 0) wake.Wait(0);
                while (calls.TryDequeue(out var call))
                {
                    try { call.Work(); call.Done.SetResult(); }
                    catch (Exception e) { call.Done.SetException(e); }
                }
                while (incoming.TryDequeue(out var job)) waiting.Enqueue(job);
                try { Step(); }
                catch (Exception e) { FailAll(e); }
            }
        FailAll(new ObjectDisposedException(nameof(InferenceEngine)));
        prefixes?.Dispose();
        slots?.Dispose();
        staging?.Dispose();
    }

    void Step()
    {
        // One look at each waiting request's token: a cancel that lands during this pass is seen at the next step, never lost.
        for (int i = waiting.Count; i > 0; i--)
        {
            var job = waiting.Dequeue();
            if (!job.Cancel.IsCancellationRequested) waiting.Enqueue(job);
            else
            {
                Metrics.QueueDepth.Dec();
                Drop(job);
            }
        }
        foreach (var job in prefilling.Where(j => j.Cancel.IsCancellationRequested).ToList())
        {
            Unstage(job);
            Drop(job);
        }
        while (active + prefilling.Count < Slots && freeStaging.Count > 0 && waiting.Count > 0)
        {
            var job = waiting.Dequeue();
            try { StartPrefill(job); }
            catch (Exception e) when (e is not OutOfMemoryException) { Fail(job, e); }
        }
        int decodeRows = active;
        if (active > 0) DecodeStep();
        var chunks = new List<int>();
        var prompts = new HashSet<Job>();
        int tokens = decodeRows;
        bool full = false;
        foreach (var job in prefilling.ToList())                                // arrival order
            while (!full && job.StagingRow >= 0)
            {
                int length = Math.Min(Options.PrefillChunk, job.Request.Prompt.Count - job.Prefilled);
                full = chunks.Count > 0 && tokens + length > Options.MaxBatchedTokens;   // the first chunk always runs
                if (full) break;
                chunks.Add(length);
                prompts.Add(job);
                tokens += length;
                try { PrefillChunk(job, length); }
                catch (Exception e) when (e is not OutOfMemoryException) { Fail(job, e); }
            }
        if (tokens > 0)
        {
            Metrics.BatchedTokens.Observe(tokens);
            StepPlanned?.Invoke(new StepPlan(decodeRows, chunks, prompts.Count));
        }
        Metrics.RunningBatch.Set(active);
        Metrics.PrefillingPrompts.Set(prefilling.Count);
        Metrics.PrefixCacheBytes.Set(prefixes?.Bytes ?? 0);
    }

    /// <summary>One step's work: decode rows, the prefill chunks' lengths in the order they ran, the prompts they came from.</summary>
    internal sealed record StepPlan(int DecodeRows, IReadOnlyList<int> Chunks, int Prompts);

    /// <summary>Called on the engine thread after each step that did work (tests check the token budget).</summary>
    internal Action<StepPlan>? StepPlanned { get; set; }

    /// <summary>Gives the job's staging row back (its prefill ended, failed or was cancelled).</summary>
    void Unstage(Job job)
    {
        if (job.StagingRow < 0) return;
        freeStaging.Push(job.StagingRow);
        job.StagingRow = -1;
        prefilling.Remove(job);
    }

    void StartPrefill(Job job)
    {
        Metrics.QueueDepth.Dec();
        var request = job.Request;
        if (request.EchoLogprobs) job.Handle.PromptLogprobs = PromptLogprobs(request.Prompt, request.TopLogprobs ?? 0);
        if (request.Sampling.MaxNewTokens == 0)
        {
            Metrics.PromptTokens.Inc(request.Prompt.Count);
            Finish(job, "length");
            return;
        }
        int row = freeStaging.Peek();
        var chain = prefixes?.Lookup(request.Prompt) ?? [];
        if (chain.Count > 0)
        {
            staging!.Restore(row, chain);
            job.Cached = job.Prefilled = chain.Count * Options.CacheBlock;
            Metrics.PrefixCacheHits.Inc();
            Metrics.PrefixCacheHitTokens.Inc(job.Cached);
        }
        else
        {
            staging!.Reset(row);
            if (prefixes is not null) Metrics.PrefixCacheMisses.Inc();
        }
        var device = model.LmHeadWeight.device;
        if (request.Sampling.Seed is { } seed) job.Random = new Generator(seed, device);
        if (request.Sampling.RepetitionPenalty != 1.0)
        {
            using var scope = NewDisposeScope();
            var seen = zeros([1, model.Config.VocabSize], ScalarType.Bool, device);
            seen.index_fill_(1, tensor(request.Prompt.Select(i => (long)i).ToArray(), device: device), true);
            job.Seen = seen.DetachFromDisposeScope();
        }
        job.StagingRow = freeStaging.Pop();
        prefilling.Add(job);
    }

    /// <summary>Log-probabilities of each prompt token given the ones before, from the same float32 logits as <c>wren logits</c>.</summary>
    IReadOnlyList<TokenLogprob> PromptLogprobs(IReadOnlyList<int> prompt, int top)
    {
        using var scope = NewDisposeScope();
        var ids = tensor(prompt.Select(i => (long)i).ToArray(), [1, prompt.Count], device: model.LmHeadWeight.device);
        var logprobs = Scoring.Logits(model, ids)[0].log_softmax(-1).cpu();                            // [T, V]
        var result = new List<TokenLogprob> { new(prompt[0], Piece(prompt[0]), null, []) };
        for (int t = 1; t < prompt.Count; t++) result.Add(Logprob(logprobs[t - 1], prompt[t], top));
        return result;
    }

    TokenLogprob Logprob(Tensor logprobs, int id, int top)
    {
        var alternatives = new List<TokenAlternative>();
        if (top > 0)
        {
            var (values, indices) = logprobs.topk(top);
            var v = values.data<float>().ToArray();
            var ix = indices.data<long>().ToArray();
            for (int i = 0; i < top; i++) alternatives.Add(new((int)ix[i], Piece((int)ix[i]), v[i]));
        }
        return new TokenLogprob(id, Piece(id), logprobs[id].item<float>(), alternatives);
    }

    string Piece(int id) => tokenizer.Decode([id]);

    /// <summary>Prefills the job's next <paramref name="length"/> prompt tokens in its staging row; the last chunk samples
    /// the first token and moves the row to a free slot.</summary>
    void PrefillChunk(Job job, int length)
    {
        var prompt = job.Request.Prompt;
        int start = job.Prefilled, row = job.StagingRow;
        Tensor logits;
        using (var scope = NewDisposeScope())
        using (var view = staging!.RowView(row))
        {
            var chunk = prompt.Skip(start).Take(length).Select(i => (long)i).ToArray();
            var ids = tensor(chunk, [1, length], device: model.LmHeadWeight.device);
            logits = model.forward(new LMInput(ids, view, LastPositionOnly: true)).Logits[0].MoveToOuterDisposeScope();   // [1, V]
        }
        using (logits)
        {
            staging.Advance(row, length);
            job.Prefilled += length;
            int block = Options.CacheBlock;
            if ((start + length) % block == 0) prefixes?.Add(prompt, (start + length) / block - 1, () => staging.Snapshot(row, block));
            if (job.Prefilled < prompt.Count) return;
            Unstage(job);
            Metrics.PromptTokens.Inc(prompt.Count);
            if (Emit(job, logits)) return;
        }
        slots!.CopyRow(staging, row, active);
        running[active++] = job;
    }

    void DecodeStep()
    {
        int n = active;
        Tensor logits;
        using (var scope = NewDisposeScope())
        using (var view = slots!.DecodeView(n))
        {
            var ids = tensor(running.Take(n).Select(j => (long)j!.NextInput).ToArray(), [n, 1], device: model.LmHeadWeight.device);
            logits = model.forward(new LMInput(ids, view, LastPositionOnly: true)).Logits.MoveToOuterDisposeScope();   // [n, 1, V]
        }
        var done = new List<int>();
        using (logits)
            for (int row = 0; row < n; row++)
            {
                slots.Advance(row, 1);
                var job = running[row]!;
                if (job.Cancel.IsCancellationRequested) { Drop(job); done.Add(row); continue; }
                using var rowLogits = logits[row];
                if (Emit(job, rowLogits)) done.Add(row);
            }
        foreach (var row in done.OrderByDescending(r => r)) Vacate(row);
    }

    /// <summary>Frees <paramref name="row"/>, moving the last running row into it so that rows [0, active) stay filled.</summary>
    void Vacate(int row)
    {
        int last = --active;
        if (row != last) slots!.CopyRow(slots, last, row);
        running[row] = running[last];
        running[last] = null;
    }

    /// <summary>Samples the job's next token from logits [1, V] and streams it; true when the job has finished.</summary>
    bool Emit(Job job, Tensor logits)
    {
        var request = job.Request;
        var sampling = request.Sampling;
        int id;
        TokenLogprob? logprob = null;
        using (NewDisposeScope())
        {
            Tensor? allowed = null;
            if (job.Cursor is { } grammar)
            {
                var mask = grammar.Allowed();
                if (!mask.Contains(true))
                {
                    Fail(job, new WrenException("no token of the vocabulary continues the grammar here"));
                    return true;
                }
                allowed = tensor(mask, device: logits.device).reshape(1, -1);
            }
            if (sampling.CountsGenerated && job.Counts is null)
                job.Counts = zeros([1, logits.shape[^1]], ScalarType.Float64, logits.device).DetachFromDisposeScope();
            id = (int)Sampler.Next(logits, sampling, job.Random, job.Seen, allowed, job.Counts).item<long>();
            job.Cursor?.Advance(id);
            job.Seen?.index_fill_(1, tensor(new long[] { id }, device: job.Seen.device), true);
            job.Counts?[0, id].add_(1.0);
            if (request.TopLogprobs is { } top) logprob = Logprob(logits[0].log_softmax(-1).cpu(), id, top);
        }
        long now = Stopwatch.GetTimestamp();
        if (job.FirstTokenSeconds is null)
        {
            job.FirstTokenSeconds = Stopwatch.GetElapsedTime(job.Arrived, now).TotalSeconds;
            Metrics.TimeToFirstToken.Observe(job.FirstTokenSeconds.Value);
        }
        else Metrics.InterTokenLatency.Observe(Stopwatch.GetElapsedTime(job.LastToken, now).TotalSeconds);
        job.LastToken = now;
        job.Generated++;
        job.NextInput = id;
        Metrics.GeneratedTokens.Inc();
        string text = "";
        string? reason = null;
        bool stopString = false;
        if (sampling.StopTokenIds.Contains(id)) reason = "stop";
        else
        {
            (text, stopString) = job.Text.Add(id);
            if (stopString || job.Cursor is { IsComplete: true }) reason = "stop";
            else if (job.Generated >= sampling.MaxNewTokens) reason = "length";
        }
        if (reason is not null && !stopString) text += job.Text.Flush();   // held-back text that did not become a stop string
        job.Handle.StepsWriter.TryWrite(new GenerationStep(id, text, logprob, reason));
        if (reason is null) return false;
        Finish(job, reason);
        return true;
    }

    void Finish(Job job, string reason)
    {
        double total = Stopwatch.GetElapsedTime(job.Arrived).TotalSeconds;
        var usage = new GenerationUsage(job.Request.Prompt.Count, job.Generated, job.Cached, job.FirstTokenSeconds ?? total, total, reason);
        job.Handle.Usage = usage;
        job.Release();                                    // released before the stream ends: a client that saw its last
        Interlocked.Decrement(ref queued);                // token finds its slot and queue place already free
        job.Handle.StepsWriter.TryComplete();
        logger.LogInformation("{Id} prompt={Prompt} cached={Cached} completion={Completion} ttft={Ttft:F3}s {Rate:F1} tokens/s " +
                              "finish={Finish}", job.Handle.Id, usage.PromptTokens, usage.CachedPromptTokens, usage.CompletionTokens,
                              usage.TimeToFirstTokenSeconds, usage.TokensPerSecond, reason);
    }

    void Drop(Job job)
    {
        job.Release();
        Interlocked.Decrement(ref queued);
        job.Handle.StepsWriter.TryComplete(new OperationCanceledException("the request was cancelled"));
        logger.LogInformation("{Id} cancelled after {Completion} tokens", job.Handle.Id, job.Generated);
    }

    /// <summary>Ends one request whose prefill failed (the staging slot is reset by the next prefill) or whose grammar no token
    /// continues; the batch goes on.</summary>
    void Fail(Job job, Exception error)
    {
        Unstage(job);
        job.Release();
        Interlocked.Decrement(ref queued);
        job.Handle.StepsWriter.TryComplete(error);
        logger.LogError("{Id} failed: {Message}", job.Handle.Id, error.Message);
    }

    void FailAll(Exception error)
    {
        Metrics.QueueDepth.Dec(waiting.Count);
        var jobs = waiting.Cast<Job?>().Concat(running.Take(active)).Concat(prefilling).OfType<Job>().ToList();
        waiting.Clear();
        foreach (var job in prefilling.ToList()) Unstage(job);
        Array.Clear(running);
        active = 0;
        foreach (var job in jobs)
        {
            job.Release();
            Interlocked.Decrement(ref queued);
            job.Handle.StepsWriter.TryComplete(error);
        }
        if (error is not ObjectDisposedException) logger.LogError(error, "inference step failed; running requests were ended");
    }

    public void Dispose()
    {
        stopping.Cancel();
        wake.Release();
        thread.Join();
        while (incoming.TryDequeue(out var job)) job.Handle.StepsWriter.TryComplete(new ObjectDisposedException(nameof(InferenceEngine)));
    }
}
