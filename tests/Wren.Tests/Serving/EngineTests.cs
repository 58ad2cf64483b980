using TorchSharp;
using Wren.Inference;
using Wren.Models;
using Wren.Modules;
using Wren.Serving;
using Wren.Tokenization;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Serving;

/// <summary>The continuous-batching engine against the model's own forward (Scoring) and against itself run alone.</summary>
public class EngineTests
{
    /// <summary>Every layer type; attention layers 0 and 4 slide (window 5 ≪ prompts), layer 6 is global.</summary>
    static HybridConfig Mixed => Config("a", "deltanet", "m2", "gdn", "a", "f", "a", "mamba1", "rwkv7") with
    {
        NumMemoryTokens = 3,
        SlidingWindow = 5,
        GlobalAttnIdx = [6],
    };

    internal static SamplingOptions Greedy(int tokens) => new() { Temperature = 0, MaxNewTokens = tokens };

    internal static async Task<List<GenerationStep>> Collect(GenerationHandle handle)
    {
        var steps = new List<GenerationStep>();
        await foreach (var step in handle.Steps.ReadAllAsync()) steps.Add(step);
        return steps;
    }

    internal static int[] Prompt(int length, int seed) => RandomTokens(1, length, 97, seed).data<long>().Select(i => (int)i).ToArray();

    [Fact]
    public async Task Greedy_tokens_and_logprobs_match_the_full_forward()
    {
        using var model = RandomModel(Mixed, seed: 3);
        var options = new EngineOptions { MaxBatch = 4, PrefillChunk = 8, MaxContext = 64 };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        var prompt = Prompt(21, 1);
        var steps = await Collect(engine.Submit(new EngineRequest(prompt, Greedy(10), TopLogprobs: 2)));
        Assert.Equal(10, steps.Count);
        var all = prompt.Concat(steps.Select(s => s.TokenId)).Select(i => (long)i).ToArray();
        using var scope = NewDisposeScope();
        var reference = Scoring.Logits(model, tensor(all, [1, all.Length]))[0].log_softmax(-1);   // [T, V]
        for (int i = 0; i < steps.Count; i++)
        {
            var row = reference[prompt.Length - 1 + i];
            Assert.Equal(row.argmax().item<long>(), steps[i].TokenId);
            Assert.Equal(row[steps[i].TokenId].item<float>(), steps[i].Logprob!.Logprob!.Value, 4);
            Assert.Equal(steps[i].TokenId, steps[i].Logprob!.Top[0].TokenId);
        }
    }

    [Fact]
    public async Task Frequency_and_presence_penalties_match_the_formula_over_the_full_forward()
    {
        using var model = RandomModel(Mixed, seed: 3);
        var options = new EngineOptions { MaxBatch = 2, PrefillChunk = 8, MaxContext = 64 };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        var prompt = Prompt(9, 2);
        const double frequency = 1.5, presence = 0.75;
        var sampling = Greedy(16) with { FrequencyPenalty = frequency, PresencePenalty = presence };
        var ids = (await Collect(engine.Submit(new EngineRequest(prompt, sampling)))).Select(s => s.TokenId).ToList();
        var generatorIds = new TextGenerator(model, new ByteTokenizer(97)).GenerateIds([prompt], sampling).Select(t => t.TokenId).ToList();
        // Reference: each step's logits from one forward over everything so far, minus OpenAI's penalty per generated-token
        // count (prompt tokens not counted), then argmax, all written out per token.
        var all = prompt.Select(i => (long)i).ToList();
        var counts = new int[97];
        var expected = new List<int>();
        using var scope = NewDisposeScope();
        for (int step = 0; step < 16; step++)
        {
            var row = Scoring.Logits(model, tensor(all.ToArray(), [1, all.Count]))[0, -1].to(ScalarType.Float64).data<double>().ToArray();
            for (int v = 0; v < row.Length; v++) row[v] -= frequency * counts[v] + (counts[v] > 0 ? presence : 0);
            int best = Array.IndexOf(row, row.Max());
            expected.Add(best);
            counts[best]++;
            all.Add(best);
        }
        Assert.Equal(expected, ids);
        Assert.Equal(expected, generatorIds);
        Assert.True(expected.Distinct().Count() > 8, "the penalties should spread the greedy choices");
    }

    [Theory]
    [InlineData(WeightPrecision.BFloat16)]
    [InlineData(WeightPrecision.Int8)]
    public async Task Packed_weights_serve_and_their_budget_counts_their_own_bytes(WeightPrecision precision)
    {
        using var full = RandomModel(Mixed, seed: 4);
        using var model = WeightPacking.Pack(full, precision);
        var footprint = ModelFootprint.Of(Mixed, ScalarType.Float32, precision);
        long perSlot = footprint.CacheBytes(1, 64);
        var options = new EngineOptions
        {
            MaxBatch = 64, PrefillChunk = 8, MaxBatchedTokens = 8, MaxContext = 64, PrefixCacheBytes = 0,
            MaxMemoryBytes = footprint.WeightBytes + 4 * perSlot,   // room for 3 slots + one staging slot at these weights only
        };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        Assert.Equal(3, engine.Slots);
        var prompt = Prompt(21, 1);
        var steps = await Collect(engine.Submit(new EngineRequest(prompt, Greedy(6))));
        var all = prompt.Concat(steps.Select(s => s.TokenId)).Select(i => (long)i).ToArray();
        using var scope = NewDisposeScope();
        var reference = Scoring.Logits(model, tensor(all, [1, all.Length]))[0];   // the packed model's own full forward
        for (int i = 0; i < steps.Count; i++) Assert.Equal(reference[prompt.Length - 1 + i].argmax().item<long>(), steps[i].TokenId);
    }

    [Fact]
    public async Task A_request_decodes_the_same_alone_and_in_a_full_batch()
    {
        using var model = RandomModel(Mixed, seed: 5);
        var options = new EngineOptions { MaxBatch = 8, PrefillChunk = 8, MaxContext = 96, PrefixCacheBytes = 0 };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        var requests = Enumerable.Range(0, 12).Select(i => new EngineRequest(Prompt(1 + 5 * i, 10 + i), i % 3 == 0
            ? new SamplingOptions { Temperature = 0.9, TopK = 20, Seed = (ulong)i, MaxNewTokens = 6 + i }
            : Greedy(6 + i), TopLogprobs: 0)).ToArray();
        var alone = new List<GenerationStep>[requests.Length];
        for (int i = 0; i < requests.Length; i++) alone[i] = await Collect(engine.Submit(requests[i]));
        var handles = requests.Select(r => engine.Submit(r)).ToArray();                // 12 requests over 8 slots: joins and leaves
        var together = await Task.WhenAll(handles.Select(Collect));
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(alone[i].Select(s => s.TokenId), together[i].Select(s => s.TokenId));
            Assert.Equal(alone[i].Select(s => s.Logprob!.Logprob), together[i].Select(s => s.Logprob!.Logprob));   // bit for bit
        }
    }

    [Fact]
    public async Task A_long_prompt_is_prefilled_in_chunks_while_running_requests_keep_decoding()
    {
        using var model = RandomModel(Mixed, seed: 7);
        var options = new EngineOptions { MaxBatch = 2, PrefillChunk = 4, MaxBatchedTokens = 5, MaxContext = 256 };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), options);
        var running = engine.Submit(new EngineRequest(Prompt(5, 1), Greedy(40)));
        await running.Steps.WaitToReadAsync();
        var arriving = engine.Submit(new EngineRequest(Prompt(200, 2), Greedy(3)));        // 50 prefill chunks
        await arriving.Steps.WaitToReadAsync();
        // One chunk per engine step (the budget: one decode token + one chunk) beside the decode step: the 40-token request
        // finished before the first token of the long prompt (prefilled at once, it would still be running).
        Assert.True(running.Usage is not null, "the running request was held up by the arriving prompt");
        Assert.Equal(40, (await Collect(running)).Count);
    }

    /// <summary>A small model of one <see cref="LayerTypes"/> entry: that layer type and an FFN layer, with 2 meta tokens.</summary>
    internal static HybridConfig ConfigOf(string layers) => layers switch
    {
        "mixed" => Mixed,
        // Two window-16 layers see 32 tokens back: more than a turn adds after the cached blocks, less than the chat's length.
        "swa" => Config("a", "a", "f") with { SlidingWindow = 16, GlobalAttnIdx = [], NumMemoryTokens = 2 },
        // The released Hymba layout: meta tokens that never leave the window, layer 2 reading layer 1's KV, a plain lm_head.
        "hymba-released" => Config("hymba", "hymba", "hymba", "f") with
        {
            ModelType = "hymba",
            SlidingWindow = 16,
            GlobalAttnIdx = [0],
            NumMemoryTokens = 2,
            KvReuseGroup = [[1, 2]],
        },
        _ => Config(layers, "f") with { NumMemoryTokens = 2 },
    };

    public static TheoryData<string, string> LayerTypes => new()
    {
        { "attention", "a" }, { "sliding window", "swa" }, { "mamba2", "m2" }, { "deltanet", "deltanet" }, { "gated deltanet", "gdn" },
        { "mamba1", "mamba1" }, { "gated linear attention", "gla" }, { "mlstm", "mlstm" }, { "rwkv7", "rwkv7" }, { "hymba", "hymba" },
        { "hymba, released layout", "hymba-released" },
        { "every type", "mixed" },
    };

    [Theory]
    [MemberData(nameof(LayerTypes))]
    public async Task A_chat_continued_turn_by_turn_gives_identical_logprobs_with_and_without_the_prefix_cache(string name, string layers)
    {
        var config = ConfigOf(layers);
        using var model = RandomModel(config, seed: name.Length);
        // Blocks of two chunks: a cached prefix ends on a block boundary, and the prefill goes on from there in chunks of 4.
        var options = new EngineOptions { MaxBatch = 2, PrefillChunk = 4, PrefixBlock = 8, MaxContext = 128 };
        using var cold = new InferenceEngine(model, new ByteTokenizer(97), options with { PrefixCacheBytes = 0 });
        using var warm = new InferenceEngine(model, new ByteTokenizer(97), options);
        var conversation = Prompt(13, 40).ToList();
        int previous = 0;
        for (int turn = 0; turn < 4; turn++)
        {
            var request = new EngineRequest(conversation.ToArray(), Greedy(5), TopLogprobs: 0);
            var expected = await Collect(cold.Submit(request));
            var handle = warm.Submit(request);
            var actual = await Collect(handle);
            Assert.Equal(expected.Select(s => s.TokenId), actual.Select(s => s.TokenId));
            Assert.Equal(expected.Select(s => s.Logprob!.Logprob), actual.Select(s => s.Logprob!.Logprob));
            Assert.Equal(previous / 8 * 8, handle.Usage!.CachedPromptTokens);                   // every whole block of the last prompt
            previous = conversation.Count;
            conversation.AddRange(actual.Select(s => s.TokenId));
            conversation.AddRange(Prompt(7, 50 + turn));                                      // the next user message
        }
        Assert.Equal(3, warm.Metrics.PrefixCacheHits.Value);
        Assert.Equal(0, cold.Metrics.PrefixCacheHits.Value);
    }

    [Fact]
    public async Task Cancelled_and_finished_requests_leave_no_live_tensors()
    {
        using var model = RandomModel(Mixed, seed: 2);
        using var engine = new InferenceEngine(model, new ByteTokenizer(97),
            new EngineOptions { MaxBatch = 4, PrefillChunk = 8, MaxContext = 2000, PrefixCacheBytes = 0 });
        await Collect(engine.Submit(new EngineRequest(Prompt(9, 1), Greedy(3))));            // warm: meta-token state, lm_head norms
        long before = 0, after = 0;
        await engine.InvokeAsync(() => before = DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        using var cancel = new CancellationTokenSource();
        // Long enough that it cannot finish between its first step and the cancel, however slowly this test's thread runs.
        var long1 = engine.Submit(new EngineRequest(Prompt(30, 2), Greedy(1900)), cancel.Token);
        var sampled = new SamplingOptions { Temperature = 1, TopP = 0.9, RepetitionPenalty = 1.3, Seed = 7, MaxNewTokens = 20 };
        var others = Enumerable.Range(0, 6)
            .Select(i => engine.Submit(new EngineRequest(Prompt(5 + i, 3 + i), sampled, TopLogprobs: 3))).ToList();
        await long1.Steps.ReadAsync();
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Collect(long1));
        foreach (var h in others) Assert.Equal(20, (await Collect(h)).Count);
        await engine.InvokeAsync(() => after = DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.True(after == before, $"live tensors {before} → {after}");
    }

    [Fact]
    public async Task Disconnects_racing_admission_release_every_request_exactly_once()
    {
        using var model = RandomModel(Config("a", "f"), seed: 8);
        using var engine = new InferenceEngine(model, new ByteTokenizer(97),
            new EngineOptions { MaxBatch = 1, MaxQueue = 8, PrefillChunk = 8, MaxContext = 4096, PrefixCacheBytes = 0 });
        Assert.Equal(9, engine.Capacity);
        using var stopBusy = new CancellationTokenSource();
        var busy = engine.Submit(new EngineRequest(Prompt(4, 1), Greedy(4000)), stopBusy.Token);   // keeps the engine stepping
        await busy.Steps.WaitToReadAsync();
        // Waiting requests cancelled at spread-out moments: some land while a step checks the queue for cancellations.
        var random = new Random(5);
        int admitted = 0;
        for (int i = 0; i < 20000 && admitted < 1000 && busy.Usage is null; i++)
        {
            using var cancel = new CancellationTokenSource();
            try
            {
                engine.Submit(new EngineRequest(Prompt(3, i), Greedy(2)), cancel.Token);
                admitted++;
            }
            catch (ServeError e) when (e.Status == 429) { }
            Thread.SpinWait(random.Next(4000));
            cancel.Cancel();
        }
        Assert.True(admitted > 300, $"only {admitted} requests were admitted");
        stopBusy.Cancel();
        for (int i = 0; i < 500 && (engine.Admitted > 0 || engine.Metrics.QueueDepth.Value != 0); i++) await Task.Delay(20);
        Assert.Equal(0, engine.Admitted);
        Assert.Equal(0, engine.Metrics.QueueDepth.Value);
        Assert.Equal(2, (await Collect(engine.Submit(new EngineRequest(Prompt(3, 9), Greedy(2))))).Count);
        Assert.Equal(0, engine.Admitted);
    }
}
