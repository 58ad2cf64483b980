using TorchSharp;
using Wren.Inference;
using Wren.Models;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// Hymba's hybrid-head layer: the released parameter names, the layer against modeling_hymba.py's <c>HymbaBlock</c> written
/// out here from its named weights (attention by an explicit masked softmax, RoPE by hand, the selective scan element by
/// element), prefill + decode = the full forward at batch 1 and in a left-padded batch, and the config checks.
/// </summary>
public class HymbaTests
{
    /// <summary>
    /// Hidden 48, 4 heads of 12 over 2 KV heads: in_proj rows q 48 | k 24 | v 48 (2 heads of d_inner / 4 = 24) | x 96 | z 96;
    /// d_state 5, dt_rank 3, inner RMSNorms on.
    /// </summary>
    static HybridConfig Small(params string[] layers) => Config(layers) with
    {
        HiddenSize = 48,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        MambaDState = 5,
        MambaInnerLayernorms = true,
        FfnExpandRatio = null,
        IntermediateSize = 40,
    };

    [Fact]
    public void Parameters_carry_the_released_names_and_shapes()
    {
        using var model = new HybridForCausalLM(Small("hymba") with { KqNorm = "none" });
        var shapes = model.named_parameters().Where(p => p.name.StartsWith("model.layers.0.mamba.", StringComparison.Ordinal))
            .ToDictionary(p => p.name["model.layers.0.mamba.".Length..], p => p.parameter.shape);
        var expected = new Dictionary<string, long[]>
        {
            ["in_proj.weight"] = [48 + 24 + 48 + 96 + 96, 48], ["conv1d.weight"] = [96, 1, 4], ["conv1d.bias"] = [96],
            ["x_proj.0.weight"] = [3 + 2 * 5, 96], ["dt_proj.0.weight"] = [96, 3], ["dt_proj.0.bias"] = [96], ["A_log.0"] = [96, 5],
            ["D.0"] = [96], ["dt_layernorm.weight"] = [3], ["B_layernorm.weight"] = [5], ["C_layernorm.weight"] = [5],
            ["pre_avg_layernorm1.weight"] = [96], ["pre_avg_layernorm2.weight"] = [96], ["out_proj.weight"] = [48, 96],
        };
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), shapes.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, shape) in expected) Assert.Equal(shape, shapes[name]);
    }

    static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    static Tensor Rms(Tensor x, Tensor weight, double eps = 1e-6) => weight * x / (x.square().mean([-1], keepdim: true) + eps).sqrt();

    /// <summary>Rotate-half RoPE at <paramref name="positions"/> [B, T] over x [B, T, heads, 12], inv_freq_i = base^(−2i/12).</summary>
    static Tensor Rope(Tensor x, Tensor positions, double ropeBase)
    {
        var inverse = pow(ropeBase, -arange(0, 12, 2, ScalarType.Float64) / 12.0);
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * inverse;               // [B, T, 6]
        var cos = cat([angles.cos(), angles.cos()], -1).unsqueeze(2);
        var sin = cat([angles.sin(), angles.sin()], -1).unsqueeze(2);
        return x * cos + RotateHalf(x) * sin;
    }

    /// <summary>
    /// modeling_hymba.py's <c>HymbaBlock</c> for the <see cref="Small"/> shape, written out from its named weights <paramref name="w"/>
    /// (float64): attention by an explicit masked softmax (key j visible to query t when <paramref name="visible"/>(t, j)), the
    /// selective scan element by element. A consumer passes its producer's keys and values as <paramref name="reused"/> and has
    /// no k/v rows in in_proj. Returns the block's output and the keys (after k_norm and RoPE) and values it attended over.
    /// </summary>
    static (Tensor Output, Tensor K, Tensor V) ReferenceBlock(Dictionary<string, Tensor> w, Tensor u, Tensor positions,
                                                             Func<long, long, bool> visible, bool kqNorm, double ropeBase,
                                                             (Tensor K, Tensor V)? reused = null)
    {
        long Bn = u.shape[0], T = u.shape[1], K = 4;
        var projected = u.matmul(w["in_proj.weight"].t());
        var q = projected.narrow(-1, 0, 48).reshape(Bn, T, 4, 12);
        if (kqNorm) q = Rms(q, w["self_attn.q_norm.weight"]);
        q = Rope(q, positions, ropeBase);
        Tensor k, v;
        long at = 48;
        if (reused is { } kv) (k, v) = kv;
        else
        {
            k = projected.narrow(-1, 48, 24).reshape(Bn, T, 2, 12);
            v = projected.narrow(-1, 72, 48).reshape(Bn, T, 2, 24);
            if (kqNorm) k = Rms(k, w["self_attn.k_norm.weight"]);
            k = Rope(k, positions, ropeBase);
            at = 120;
        }
        var x = projected.narrow(-1, at, 96);
        var z = projected.narrow(-1, at + 96, 96);
        var kh = k.repeat_interleave(2, dim: 2);                                               // query head h reads KV head h / 2
        var vh = v.repeat_interleave(2, dim: 2);
        var scores = einsum("bthd,bshd->bhts", q, kh) / Math.Sqrt(12);
        var hidden = zeros([T, T], ScalarType.Bool);
        for (long t = 0; t < T; t++)
            for (long j = 0; j < T; j++)
                if (!visible(t, j)) hidden[t, j] = true;
        scores = scores.masked_fill(hidden, double.NegativeInfinity);
        var attention = einsum("bhts,bshd->bthd", scores.softmax(-1), vh).reshape(Bn, T, 96);

        var conv = zeros_like(x);
        for (long t = 0; t < T; t++)
            for (long j = 0; j < K; j++)
                if (t - (K - 1) + j >= 0) conv.select(1, t).add_(x.select(1, t - (K - 1) + j) * w["conv1d.weight"].select(2, j).squeeze(1));
        x = nn.functional.silu(conv + w["conv1d.bias"]);
        var dbc = x.matmul(w["x_proj.0.weight"].t());
        var dt = Rms(dbc.narrow(-1, 0, 3), w["dt_layernorm.weight"]);
        var Bm = Rms(dbc.narrow(-1, 3, 5), w["B_layernorm.weight"]);
        var Cm = Rms(dbc.narrow(-1, 8, 5), w["C_layernorm.weight"]);
        var delta = nn.functional.softplus(dt.matmul(w["dt_proj.0.weight"].t()) + w["dt_proj.0.bias"]);
        var A = -w["A_log.0"].exp();
        var h = zeros(Bn, 96, 5, ScalarType.Float64);
        var ys = new Tensor[T];
        for (long t = 0; t < T; t++)                                                             // selective_scan_ref, per token
        {
            var step = delta.select(1, t).unsqueeze(-1);
            h = (step * A).exp() * h + step * x.select(1, t).unsqueeze(-1) * Bm.select(1, t).unsqueeze(1);
            ys[t] = (h * Cm.select(1, t).unsqueeze(1)).sum(-1) + w["D.0"] * x.select(1, t);
        }
        var mamba = stack(ys, 1) * nn.functional.silu(z);
        var mixed = (Rms(attention, w["pre_avg_layernorm1.weight"]) + Rms(mamba, w["pre_avg_layernorm2.weight"])) / 2;
        return (mixed.matmul(w["out_proj.weight"].t()), k, v);
    }

    /// <summary>The parameters under <paramref name="prefix"/> in float64, keyed by the rest of their name.</summary>
    static Dictionary<string, Tensor> Weights(HybridForCausalLM model, string prefix) =>
        model.named_parameters().Where(p => p.name.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(p => p.name[prefix.Length..], p => p.parameter.to(ScalarType.Float64));

    /// <summary>Moves every vector parameter (norm weights, biases, D, meta tokens stay) off its initial value.</summary>
    static void Perturb(HybridForCausalLM model, ulong seed)
    {
        var gen = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in model.named_parameters().Where(p => p.parameter.dim() == 1)) p.add_(randn(p.shape, generator: gen) * 0.3);
    }

    [Theory]
    [InlineData("rms")]
    [InlineData("none")]
    public void The_layer_follows_modeling_hymba_from_its_named_weights(string kqNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var config = Small("hymba") with { KqNorm = kqNorm };
        using var model = RandomModel(config, seed: 3);
        Perturb(model, 5);
        var w = Weights(model, "model.layers.0.mamba.");
        var mixer = ((HybridDecoderLayer)model.Backbone.Layers[0]).Mixer!;
        var u = randn([2, 9, 48], generator: new Generator(6));
        var positions = arange(9).unsqueeze(0).expand(2, -1) + 3;
        var actual = mixer.forward(new MixerInput(u, positions));
        var expected = ReferenceBlock(w, u.to(ScalarType.Float64), positions, (t, j) => j <= t, kqNorm == "rms", 10000).Output;
        AssertClose(actual, expected.to(ScalarType.Float32), 1e-4, $"layer vs modeling_hymba (kq_norm {kqNorm})");
    }

    /// <summary>
    /// The released layout (<c>model_type</c> "hymba") at a small size: 2 meta tokens, window 3 with layer 0 global, NTK RoPE,
    /// layer 1 sharing its KV with layer 2 and the global layer 0 with the windowed layer 3, a SwiGLU FFN in every layer, tied
    /// embeddings and a plain lm_head.
    /// </summary>
    static HybridConfig Released() => Small("hymba", "hymba", "hymba", "hymba") with
    {
        ModelType = "hymba",
        KqNorm = "none",
        NumMemoryTokens = 2,
        SlidingWindow = 3,
        GlobalAttnIdx = [0],
        KvReuseGroup = [[1, 2], [0, 3]],
        TieWordEmbeddings = true,
        RopeType = "ntk",
        MaxPositionEmbeddings = 64,
        OrigMaxPositionEmbeddings = 16,
    };

    [Fact]
    public void The_released_layout_follows_modeling_hymba_end_to_end()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var config = Released();
        using var model = RandomModel(config, seed: 7);
        Perturb(model, 8);
        var names = model.state_dict().Keys.ToHashSet();
        Assert.DoesNotContain("lm_head.weight", names);
        Assert.Contains("model.memory_tokens", names);
        Assert.Contains("model.layers.2.pre_moe_layernorm.weight", names);
        Assert.Contains("model.layers.2.moe.experts.0.gate_proj.weight", names);
        Assert.Equal([48 + 2 * 96, 48], model.state_dict()["model.layers.2.mamba.in_proj.weight"].shape);      // no k/v rows

        const int M = 2, W = 3;
        long T = 9, N = M + T;
        var tokens = RandomTokens(1, T, config.VocabSize, 9);
        var g = Weights(model, "model.");
        var h = cat([g["memory_tokens"], g["embed_tokens.weight"].index_select(0, tokens[0])], 0).unsqueeze(0);   // [1, M+T, H]
        var positions = arange(N).unsqueeze(0);
        // NTK base (modeling_hymba.py's LlamaRotaryEmbedding, factor 2): θ·(2·max / orig − 1)^(d / (d − 2)).
        double ropeBase = 10000 * Math.Pow(2.0 * 64 / 16 - 1, 12.0 / 10);
        var shared = new Dictionary<int, (Tensor K, Tensor V)>();
        for (int i = 0; i < 4; i++)
        {
            var w = Weights(model, $"model.layers.{i}.");
            var block = w.Where(p => p.Key.StartsWith("mamba.", StringComparison.Ordinal)).ToDictionary(p => p.Key[6..], p => p.Value);
            // The flex mask: causal ∧ (global ∨ i − j ≤ W ∨ j < M).
            Func<long, long, bool> visible = i == 0 ? (t, j) => j <= t : (t, j) => j <= t && (t - j <= W || j < M);
            int source = i switch { 2 => 1, 3 => 0, _ => i };
            var (output, k, v) = ReferenceBlock(block, Rms(h, w["input_layernorm.weight"]), positions, visible, false, ropeBase,
                                                source == i ? null : shared[source]);
            if (source == i) shared[i] = (k, v);
            h = h + output;
            var x = Rms(h, w["pre_moe_layernorm.weight"]);
            var ffn = nn.functional.silu(x.matmul(w["moe.experts.0.gate_proj.weight"].t()))
                      * x.matmul(w["moe.experts.0.up_proj.weight"].t());
            h = h + ffn.matmul(w["moe.experts.0.down_proj.weight"].t());
        }
        var expected = Rms(h, g["final_layernorm.weight"]).narrow(1, M, T).matmul(g["embed_tokens.weight"].t());   // plain, tied
        AssertClose(Scoring.Logits(model, tokens), expected.to(ScalarType.Float32), 1e-4, "released layout vs modeling_hymba");
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "hymba, meta tokens", "meta" },
        { "hymba, sliding window with a global layer", "window" },
        { "hymba, released layout: meta tokens in the window, shared KV", "released" },
    };

    static HybridConfig Model(string variant) => variant switch
    {
        "meta" => Small("hymba", "f", "hymba", "a") with { NumMemoryTokens = 3 },
        "window" => Small("hymba", "hymba", "hymba") with { SlidingWindow = 4, GlobalAttnIdx = [1] },
        _ => Released(),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Prefill_then_decode_equals_the_full_forward(string name, string variant)
    {
        using var scope = NewDisposeScope();
        var config = Model(variant);
        using var model = RandomModel(config, seed: 4);
        var tokens = RandomTokens(1, 13, config.VocabSize, 2);
        var full = Scoring.Logits(model, tokens);
        foreach (var prefill in new[] { 0, 1, 6, 13 })
            AssertClose(Scoring.Logits(model, tokens, prefill), full, 1e-4, $"{name}, prefill {prefill}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_left_padded_batch_equals_each_row_alone(string name, string variant)
    {
        using var scope = NewDisposeScope();
        var config = Model(variant);
        using var model = RandomModel(config, seed: 8);
        var rows = new[] { RandomTokens(1, 8, 97, 10), RandomTokens(1, 3, 97, 11), RandomTokens(1, 6, 97, 12) };
        var pads = rows.Select(r => 8 - r.shape[1]).ToArray();
        var batch = cat(rows.Select((r, i) => cat([zeros([1, pads[i]], ScalarType.Int64), r], 1)).ToArray(), 0);
        using var cache = model.NewCache(3, 8 + 4, (int)pads.Max());
        using var noGrad = no_grad();
        var prefill = model.forward(new LMInput(batch, cache, tensor(pads))).Logits;
        var next = RandomTokens(3, 4, 97, 13);
        var decoded = Enumerable.Range(0, 4).Select(t => model.forward(new LMInput(next.narrow(1, t, 1), cache)).Logits).ToArray();
        for (int b = 0; b < 3; b++)
        {
            var alone = Scoring.Logits(model, cat([rows[b], next.narrow(0, b, 1)], 1));
            long n = rows[b].shape[1];
            AssertClose(prefill.narrow(0, b, 1).narrow(1, pads[b], n), alone.narrow(1, 0, n), 1e-4, $"{name}: row {b} prompt");
            for (int t = 0; t < 4; t++)
                AssertClose(decoded[t].narrow(0, b, 1), alone.narrow(1, n + t, 1), 1e-4, $"{name}: row {b} decode {t}");
        }
    }

    [Fact]
    public void Cache_bytes_equal_what_the_states_allocate()
    {
        foreach (var variant in new[] { "meta", "window", "released" })
        {
            var config = Model(variant);
            using var model = RandomModel(config);
            foreach (var (batch, tokens) in new[] { (1, 1), (2, 20) })
            {
                using var cache = model.NewCache(batch, tokens);
                Assert.Equal(ModelFootprint.Of(config).CacheBytes(batch, tokens), cache.Bytes);
            }
        }
    }

    [Fact]
    public void The_fused_decode_equals_the_op_form_in_every_precision() =>
        MixerModelChecks.FusedDecodeEqualsTheOpFormInEveryPrecision(Released());

    [Fact]
    public void The_released_layout_trains_and_resumes_exactly() => MixerModelChecks.TrainsAndResumesExactly(Released());

    [Fact]
    public Task Hymba_is_searchable_priced_sized_and_budgeted() => MixerModelChecks.SearchablePricedSizedAndBudgeted("hymba", Config("a"));

    [Fact]
    public void Bad_hymba_configs_name_the_field()
    {
        string Error(HybridConfig c) => Assert.Throws<WrenException>(() => c.Validate()).Message;
        Assert.Contains("do not split into 2 heads", Error(Small("hymba") with { KqHeadDim = 16 }));
        Assert.Contains("mamba_proj_bias", Error(Small("hymba") with { MambaProjBias = true }));
        Assert.Contains("must be divisible by num_attention_heads",
                        Error(Small("hymba") with
                        {
                            HiddenSize = 50,
                            NumAttentionHeads = 3,
                            NumKeyValueHeads = 3,
                            KqHeadDim = 10,
                            VHeadDim = 10,
                        }));
        Assert.Contains("a consumer of layer 1's KV", Error(Released() with { GlobalAttnIdx = [0, 2] }));
        Assert.Contains("already in another group", Error(Released() with { KvReuseGroup = [[1, 2], [0, 2]] }));
        Assert.Contains("consumers must come later", Error(Released() with { KvReuseGroup = [[2, 1]] }));
    }
}
