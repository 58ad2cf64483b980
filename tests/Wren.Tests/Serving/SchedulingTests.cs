using System.Collections.Concurrent;
using TorchSharp;
using Wren.Inference;
using Wren.Serving;
using Wren.Tokenization;
using static Wren.Tests.Serving.EngineTests;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Serving;

/// <summary>
/// Chunked-prefill scheduling under <see cref="EngineOptions.MaxBatchedTokens"/>: steps that mix decode rows with prefill
/// chunks of several prompts give each request the output it gets alone, the budget bounds every step, and cancelled or
/// timed-out prompts give their staging and decode slots back.
/// </summary>
public class SchedulingTests
{
    /// <summary>Prompt lengths around the 8-token chunk: shorter than one, exactly one, several with a remainder.</summary>
    static readonly int[] Lengths = [3, 29, 8, 17, 40, 11, 2, 24];

    static EngineRequest Request(int i) => new(Prompt(Lengths[i], 60 + i), Greedy(4 + i % 5), TopLogprobs: 1);

    /// <summary>Submits every request from the engine thread, so that the first step sees them all (a deterministic schedule).</summary>
    static async Task<GenerationHandle[]> SubmitAtOnce(InferenceEngine engine, IReadOnlyList<EngineRequest> requests,
                                                       CancellationToken cancel = default)
    {
        var handles = new GenerationHandle[requests.Count];
        await engine.InvokeAsync(() =>
        {
            for (int i = 0; i < requests.Count; i++) handles[i] = engine.Submit(requests[i], cancel);
        });
        return handles;
    }

    [Theory]
    [MemberData(nameof(LayerTypes), MemberType = typeof(EngineTests))]
    public async Task Steps_mixing_decode_rows_and_chunks_of_several_prompts_give_each_request_its_solo_output(string name,
                                                                                                              string layers)
    {
        using var model = RandomModel(ConfigOf(layers), seed: 20 + name.Length);
        var options = new EngineOptions { MaxBatch = 4, PrefillChunk = 8, MaxBatchedTokens = 20, MaxContext = 96, PrefixCacheBytes = 0 };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        Assert.Equal(3, engine.StagingRows);
        var requests = Enumerable.Range(0, Lengths.Length).Select(Request).ToArray();
        var alone = new List<GenerationStep>[requests.Length];
        for (int i = 0; i < requests.Length; i++) alone[i] = await Collect(engine.Submit(requests[i]));
        var plans = new ConcurrentQueue<InferenceEngine.StepPlan>();
        engine.StepPlanned = plans.Enqueue;
        var together = await Task.WhenAll((await SubmitAtOnce(engine, requests)).Select(Collect));
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(alone[i].Select(s => s.TokenId), together[i].Select(s => s.TokenId));
            var expected = alone[i].Select(s => s.Logprob!.Logprob!.Value).ToArray();
            var actual = together[i].Select(s => s.Logprob!.Logprob!.Value).ToArray();
            Assert.Equal(expected, actual);                                                                          // bit for bit
        }
        Assert.Contains(plans, p => p.Prompts >= 2);                                   // several prompts prefilled in one step
        Assert.Contains(plans, p => p.DecodeRows > 0 && p.Chunks.Count > 0);            // and beside running requests
    }

    [Fact]
    public async Task The_token_budget_bounds_every_step_except_for_the_one_chunk_that_always_runs()
    {
        using var model = RandomModel(Config("a", "m2", "f"), seed: 31);
        const int chunk = 4, budget = 8;
        var options = new EngineOptions
        {
            MaxBatch = 6, PrefillChunk = chunk, MaxBatchedTokens = budget, MaxContext = 96, PrefixCacheBytes = 0,
        };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        Assert.Equal(2, engine.StagingRows);                                           // 8 / 4 chunks fit a step
        var plans = new ConcurrentQueue<InferenceEngine.StepPlan>();
        engine.StepPlanned = plans.Enqueue;
        var requests = Enumerable.Range(0, 12).Select(i => new EngineRequest(Prompt(5 + 3 * i, 70 + i), Greedy(40))).ToArray();
        foreach (var steps in await Task.WhenAll((await SubmitAtOnce(engine, requests)).Select(Collect))) Assert.Equal(40, steps.Count);
        Assert.All(plans, p =>
        {
            Assert.All(p.Chunks, c => Assert.InRange(c, 1, chunk));
            Assert.True(p.DecodeRows + p.Chunks.Sum() <= budget || p.Chunks.Count == 1,
                        $"{p.DecodeRows} + [{string.Join(", ", p.Chunks)}]");
            Assert.InRange(p.DecodeRows, 0, engine.Slots);
        });
        Assert.Contains(plans, p => p.DecodeRows + p.Chunks.Sum() > budget);          // five rows decode, one chunk still runs
        Assert.Contains(plans, p => p.Chunks.Count >= 2);
        Assert.Equal(plans.Count, engine.Metrics.BatchedTokens.Count);
        Assert.Equal(plans.Sum(p => p.DecodeRows + p.Chunks.Sum()), engine.Metrics.BatchedTokens.Sum);
        Assert.Equal(0, engine.Metrics.Preemptions.Value);
        // Every prompt token was prefilled once: the chunks add up to the prompts.
        Assert.Equal(requests.Sum(r => r.Prompt.Count), plans.Sum(p => p.Chunks.Sum()));
    }

    [Fact]
    public async Task Prompts_cancelled_or_past_their_deadline_while_prefilling_free_their_slots()
    {
        using var model = RandomModel(Config("a", "gdn", "f"), seed: 32);
        var options = new EngineOptions { MaxBatch = 3, PrefillChunk = 4, MaxBatchedTokens = 8, MaxContext = 4096, PrefixCacheBytes = 0 };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        var probe = new EngineRequest(Prompt(13, 80), Greedy(5), TopLogprobs: 0);
        var expected = await Collect(engine.Submit(probe));
        long before = 0, after = 0;
        await engine.InvokeAsync(() => before = DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        using var cancel = new CancellationTokenSource();
        using var deadline = new CancellationTokenSource();
        var plans = new ConcurrentQueue<InferenceEngine.StepPlan>();
        // The deadline fires after the fourth step: both long prompts (thousands of chunks) are still prefilling.
        engine.StepPlanned = p =>
        {
            plans.Enqueue(p);
            if (plans.Count == 4) deadline.Cancel();
        };
        var longPrompt = new EngineRequest(Prompt(3000, 81), Greedy(2));
        var cancelled = engine.Submit(longPrompt, cancel.Token);
        var timedOut = engine.Submit(longPrompt with { Prompt = Prompt(3001, 82) }, deadline.Token);
        await Task.Delay(1);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Collect(cancelled));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Collect(timedOut));
        Assert.Equal(0, engine.Admitted);
        await engine.InvokeAsync(() => { });                                            // the step that dropped them has ended
        Assert.Equal(0, engine.Metrics.PrefillingPrompts.Value);
        // All three slots free again: three requests run at once and each gets its solo output.
        var again = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => Collect(engine.Submit(probe))));
        foreach (var steps in again) Assert.Equal(expected.Select(s => s.Logprob!.Logprob), steps.Select(s => s.Logprob!.Logprob));
        await engine.InvokeAsync(() => after = DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.True(after == before, $"live tensors {before} → {after}");
    }

    [Fact]
    public void A_budget_below_one_chunk_means_one_chunk_a_step_and_zero_is_refused()
    {
        var options = new EngineOptions { PrefillChunk = 128, MaxBatchedTokens = 80 };   // the old chunk with the new budget
        options.Validate();
        Assert.Equal(1, options.StagingRows);
        var error = Assert.Throws<WrenException>(() => new EngineOptions { MaxBatchedTokens = 0 }.Validate());
        Assert.Contains("max batched tokens must be between 1 and", error.Message);
    }

    [Fact]
    public void The_prefix_block_is_rounded_up_to_whole_chunks()
    {
        Assert.Equal(144, new EngineOptions { PrefillChunk = 48, PrefixBlock = 128 }.CacheBlock);   // three chunks
        Assert.Equal(128, new EngineOptions { PrefillChunk = 64, PrefixBlock = 128 }.CacheBlock);
        Assert.Equal(16, new EngineOptions { PrefillChunk = 16, PrefixBlock = 1 }.CacheBlock);
        var error = Assert.Throws<WrenException>(() => new EngineOptions { PrefixBlock = 0 }.Validate());
        Assert.Contains("prefix block must be between 1 and", error.Message);
    }

    [Fact]
    public async Task A_stopped_engine_refuses_with_503()
    {
        using var model = RandomModel(Config("a", "f"), seed: 33);
        var options = new EngineOptions { MaxBatch = 1, PrefillChunk = 8, MaxContext = 64 };
        var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        Assert.Single(await Collect(engine.Submit(new EngineRequest(Prompt(3, 1), Greedy(1)))));
        engine.Dispose();
        var error = Assert.Throws<ServeError>(() => engine.Submit(new EngineRequest(Prompt(3, 1), Greedy(1))));
        Assert.Equal((503, "shutting_down"), (error.Status, error.Code));
        Assert.Equal(0, engine.Admitted);
    }
}
