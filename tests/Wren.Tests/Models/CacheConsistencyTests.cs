using TorchSharp;
using Wren.Inference;
using Wren.Models;
using Wren.Tests.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Models;

/// <summary>prefill L0 tokens then decode token by token == the full forward, at every position.</summary>
public class CacheConsistencyTests
{
    public static TheoryData<string, string> Cases => new()
    {
        { "attention", "a" },
        { "mamba2", "m2" },
        { "mamba1", "mamba1" },
        { "deltanet", "deltanet" },
        { "gated deltanet", "gdn" },
        { "gated linear attention", "gla" },
        { "mlstm", "mlstm" },
        { "rwkv7", "rwkv7 rwkv7" },
        { "ffn only", "f" },
        { "flash pattern", "deltanet f m2 f a f" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Prefill_then_decode_equals_full_forward(string name, string layers)
    {
        using var scope = NewDisposeScope();
        var config = Config(layers.Split(' ')) with { NumMemoryTokens = 3 };
        using var model = RandomModel(config, seed: name.Length);
        var tokens = RandomTokens(3, 23, config.VocabSize, 1);
        var full = Scoring.Logits(model, tokens);
        foreach (var prefill in new[] { 0, 1, 9, 23 })
            AssertClose(Scoring.Logits(model, tokens, prefill), full, 1e-4, $"{name}, prefill {prefill}");
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(4, 0)]
    [InlineData(4, 5)]
    public void Sliding_window_decode_keeps_exactly_the_window(int metaTokens, int prefill)
    {
        // T = 30 ≫ W = 6 with meta tokens sliding out of the window like any other token; layer 2 stays global.
        using var scope = NewDisposeScope();
        var config = Config("a", "m2", "a", "f") with { SlidingWindow = 6, GlobalAttnIdx = [2], NumMemoryTokens = metaTokens };
        using var model = RandomModel(config, seed: 4);
        var tokens = RandomTokens(2, 30, config.VocabSize, 2);
        AssertClose(Scoring.Logits(model, tokens, prefill), Scoring.Logits(model, tokens), 1e-4, "swa");
    }

    [Fact]
    public void Sliding_window_sees_w_plus_one_keys()
    {
        // Against a W-key window the logits differ visibly: the convention is observable, and ours is W+1.
        using var scope = NewDisposeScope();
        var swa = Config("a") with { SlidingWindow = 4, GlobalAttnIdx = [] };
        using var model = RandomModel(swa, seed: 9);
        var tokens = RandomTokens(1, 12, swa.VocabSize, 3);
        var logits = Scoring.Logits(model, tokens);
        // Position 4 sees keys 0…4 (W+1 = 5 keys): same as full attention there, different from full at position 5.
        using var full = RandomModel(Config("a"), seed: 9);
        var fullLogits = Scoring.Logits(full, tokens);
        AssertClose(logits.narrow(1, 0, 5), fullLogits.narrow(1, 0, 5), 1e-5, "first W+1 positions");
        Assert.True((logits.narrow(1, 5, 1) - fullLogits.narrow(1, 5, 1)).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void Reused_meta_token_state_equals_recomputed()
    {
        using var scope = NewDisposeScope();
        var config = Config("a", "deltanet", "m2", "gdn") with { NumMemoryTokens = 5 };
        using var model = RandomModel(config, seed: 6);
        var tokens = RandomTokens(2, 11, config.VocabSize, 4);
        var first = Scoring.Logits(model, tokens, 4);
        var cached = model.MetaTokenState();
        Assert.Same(cached, model.MetaTokenState());                  // computed once per loaded model
        var reused = Scoring.Logits(model, tokens, 4);
        model.InvalidateInferenceCaches();
        var recomputed = Scoring.Logits(model, tokens, 4);
        Assert.NotSame(cached, model.MetaTokenState());
        AssertClose(reused, recomputed, 1e-6, "reused vs recomputed");
        AssertClose(first, Scoring.Logits(model, tokens), 1e-4, "vs full forward");
    }

    [Fact]
    public void Ragged_batch_with_left_padding_matches_each_row_alone()
    {
        using var scope = NewDisposeScope();
        var config = Config("a", "deltanet", "m2", "gdn", "mamba1", "f") with
        {
            NumMemoryTokens = 2,
            SlidingWindow = 5,
            GlobalAttnIdx = [],
        };
        MixerModelChecks.LeftPaddedRowsEqualEachRowAlone(config);
    }

    [Fact]
    public void Cache_bytes_formula_equals_allocated_bytes()
    {
        var config = Config("a", "deltanet", "m2", "gdn", "a", "mamba1", "f", "rwkv7") with
        {
            NumMemoryTokens = 3,
            SlidingWindow = 7,
            GlobalAttnIdx = [4],
        };
        using var model = RandomModel(config);
        var footprint = ModelFootprint.Of(config);
        foreach (var (batch, tokens) in new[] { (1, 1), (2, 50), (3, 4) })
        {
            using var cache = model.NewCache(batch, tokens);
            Assert.Equal(footprint.CacheBytes(batch, tokens), cache.Bytes);
        }
        Assert.Equal(footprint.Parameters, model.parameters().Sum(p => p.NumberOfElements));
    }

    [Fact]
    public void Decoding_does_not_leak_tensors()
    {
        var config = Config("a", "deltanet", "m2", "f") with { NumMemoryTokens = 2 };
        using var model = RandomModel(config);
        var tokenizer = new Wren.Tokenization.ByteTokenizer(config.VocabSize);
        var generator = new TextGenerator(model, tokenizer);
        var options = new SamplingOptions { MaxNewTokens = 8, Seed = 1, RepetitionPenalty = 1.2, TopK = 20, TopP = 0.9 };
        generator.GenerateIds([[1, 2, 3]], options).ToList();   // warm: meta-token state, lm_head norms
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        generator.GenerateIds([[1, 2, 3], [4, 5]], options).ToList();
        generator.GenerateIds([[1, 2, 3]], options with { MaxNewTokens = 30 }).ToList();
        long afterTwo = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        generator.GenerateIds([[1, 2, 3]], options with { MaxNewTokens = 60 }).ToList();
        generator.GenerateIds([[1, 2, 3]], options with { MaxNewTokens = 60 }).Take(2).ToList();   // consumer stops early
        Assert.True(before == DisposeScopeManager.Statistics.ThreadTotalLiveCount,
                    $"live tensors {before} → {afterTwo} → {DisposeScopeManager.Statistics.ThreadTotalLiveCount}");
    }
}

public class ChunkedPrefillTests
{
    [Fact]
    public void Prompts_longer_than_a_chunk_prefill_exactly()
    {
        using var scope = NewDisposeScope();
        var config = Config("a", "deltanet", "m2", "gdn") with
        {
            NumMemoryTokens = 3,
            SlidingWindow = 300,
            GlobalAttnIdx = [0],
            HiddenSize = 32,
            NumAttentionHeads = 2,
            NumKeyValueHeads = 1,
            Mamba2HeadDim = 8,
        };
        using var model = RandomModel(config, seed: 12);
        var tokens = RandomTokens(2, HybridForCausalLM.PrefillChunk + 77, config.VocabSize, 5);
        var full = Scoring.Logits(model, tokens);
        AssertClose(Scoring.Logits(model, tokens, HybridForCausalLM.PrefillChunk + 70), full, 1e-4, "chunked prefill then decode");
        using var noGrad = no_grad();
        using var cache = model.NewCache(2, (int)tokens.shape[1]);
        var last = model.forward(new LMInput(tokens, cache, LastPositionOnly: true)).Logits;
        AssertClose(last, full.narrow(1, tokens.shape[1] - 1, 1), 1e-4, "last position");
    }
}
