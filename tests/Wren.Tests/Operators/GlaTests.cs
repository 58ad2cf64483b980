using TorchSharp;
using Wren.Models;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// Gated linear attention ("gla"): every form against a per-token loop written here from fla's equations
/// (fla/ops/gla/naive.py), the layer against the same loop from its own weights, then the model-level checks.
/// </summary>
public class GlaTests
{
    /// <summary>Hidden 60, 4 heads, expand_k 0.6: keys 36 = 4 heads of 9, values 60 = 4 heads of 15 (no vector multiple).</summary>
    static HybridConfig Awkward(params string[] layers) => Config(layers) with
    {
        HiddenSize = 60,
        ExpandK = 0.6,
        NumAttentionHeads = 4,
        FfnExpandRatio = 4.0,
    };

    /// <summary>q, k [B, T, H, K], v [B, T, H, V], gk = logsigmoid(·)/16 [B, T, H, K] (<paramref name="gateScale"/> spreads the
    /// logits: 40 gives decays down to e^(−7) a step), S₀ [B, H, K, V].</summary>
    static (Tensor q, Tensor k, Tensor v, Tensor gk, Tensor s0) Inputs(long B, long H, long T, long K, long V, double gateScale, int seed)
    {
        var gen = new Generator((ulong)seed);
        var q = randn([B, T, H, K], generator: gen) * Math.Pow(K, -0.5);
        var k = randn([B, T, H, K], generator: gen);
        var v = randn([B, T, H, V], generator: gen);
        var gk = nn.functional.logsigmoid(randn([B, T, H, K], generator: gen) * gateScale) / 16;
        var s0 = randn([B, H, K, V], generator: gen) * 0.5;
        return (q, k, v, gk, s0);
    }

    /// <summary>
    /// The equations one scalar at a time in double: <c>S[i, j] ← exp(gk_i)·S[i, j] + k_i v_j;  o_j = Σ_i q_i S[i, j]</c>.
    /// </summary>
    internal static (double[] Output, double[] State) Loop(Tensor q, Tensor k, Tensor v, Tensor gk, Tensor s0)
    {
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        float[] Q = q.contiguous().data<float>().ToArray(), Kt = k.contiguous().data<float>().ToArray();
        float[] Vt = v.contiguous().data<float>().ToArray(), Gk = gk.contiguous().data<float>().ToArray();
        var S = s0.contiguous().data<float>().Select(x => (double)x).ToArray();
        var o = new double[B * T * H * V];
        for (long b = 0; b < B; b++)
            for (long t = 0; t < T; t++)
                for (long h = 0; h < H; h++)
                {
                    long key = ((b * T + t) * H + h) * K, value = ((b * T + t) * H + h) * V, state = (b * H + h) * K * V;
                    for (long i = 0; i < K; i++)
                        for (long j = 0; j < V; j++)
                        {
                            ref double s = ref S[state + i * V + j];
                            s = Math.Exp(Gk[key + i]) * s + Kt[key + i] * Vt[value + j];
                        }
                    for (long j = 0; j < V; j++)
                        for (long i = 0; i < K; i++) o[value + j] += Q[key + i] * S[state + i * V + j];
                }
        return (o, S);
    }

    static Tensor AsTensor(double[] values, long[] shape) => tensor(values, shape).to(ScalarType.Float32);

    [Theory]
    [InlineData(37, 16, 7, 10, 3.0)]
    [InlineData(5, 16, 9, 3, 3.0)]
    [InlineData(70, 32, 12, 17, 3.0)]
    [InlineData(41, 16, 7, 10, 40.0)]
    public void Chunked_recurrent_and_fused_forms_equal_the_equations(int T, int chunk, int K, int V, double gateScale)
    {
        using var scope = NewDisposeScope();
        var (q, k, v, gk, s0) = Inputs(2, 3, T, K, V, gateScale, T + K);
        var (o, S) = Loop(q, k, v, gk, s0);
        var expected = AsTensor(o, v.shape);
        var expectedState = AsTensor(S, s0.shape);
        var (oC, sC) = GatedLinearAttention.Chunked(q, k, v, gk, s0, chunk);
        AssertClose(oC, expected, 1e-4, "chunked output");
        AssertClose(sC, expectedState, 1e-4, "chunked state");
        var (oR, sR) = GatedLinearAttention.Recurrent(q, k, v, gk, s0);
        AssertClose(oR, expected, 1e-4, "recurrent output");
        AssertClose(sR, expectedState, 1e-4, "recurrent state");
        using var noGrad = no_grad();
        var state = s0.clone();
        var steps = Enumerable.Range(0, T).Select(t =>
        {
            Tensor At(Tensor x) => x.narrow(1, t, 1);
            return GatedLinearAttention.FusedRecurrent(At(q), At(k), At(v), At(gk), state);
        }).ToArray();
        AssertClose(cat(steps, 1), oR, 1e-5, "fused steps vs recurrent");
        AssertClose(state, sR, 1e-5, "fused state vs recurrent");
    }

    [Fact]
    public void State_split_equals_one_pass()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, gk, s0) = Inputs(2, 2, 50, 8, 11, 3.0, 3);
        var (oFull, sFull) = GatedLinearAttention.Chunked(q, k, v, gk, s0);
        const long t1 = 21;
        Tensor Head(Tensor x) => x.narrow(1, 0, t1);
        Tensor Tail(Tensor x) => x.narrow(1, t1, 50 - t1);
        var (o1, s1) = GatedLinearAttention.Chunked(Head(q), Head(k), Head(v), Head(gk), s0);
        var (o2, s2) = GatedLinearAttention.Chunked(Tail(q), Tail(k), Tail(v), Tail(gk), s1);
        AssertClose(cat([o1, o2], 1), oFull, 1e-4, "output");
        AssertClose(s2, sFull, 1e-4, "state");
    }

    [Fact]
    public void Gradients_through_the_chunked_form_equal_those_through_the_recurrent_form()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, gk, s0) = Inputs(2, 2, 23, 6, 5, 3.0, 9);
        var weights = randn(v.shape, generator: new Generator(4));
        AssertGradientsAgree([q, k, v, gk, s0], x => GatedLinearAttention.Recurrent(x[0], x[1], x[2], x[3], x[4]),
                             x => GatedLinearAttention.Chunked(x[0], x[1], x[2], x[3], x[4], 8), weights);
    }

    [Fact]
    public void Parameters_carry_fla_names_and_shapes_and_its_initialization()
    {
        var config = Awkward("gla", "f");
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed: 1);
        var layer = model.named_parameters().Where(p => p.name.StartsWith("model.layers.0.attn.", StringComparison.Ordinal))
            .ToDictionary(p => p.name["model.layers.0.attn.".Length..], p => p.parameter);
        var expected = new Dictionary<string, long[]>
        {
            ["q_proj.weight"] = [36, 60], ["k_proj.weight"] = [36, 60], ["v_proj.weight"] = [60, 60], ["g_proj.weight"] = [60, 60],
            ["gk_proj.0.weight"] = [16, 60], ["gk_proj.1.weight"] = [36, 16], ["gk_proj.1.bias"] = [36],
            ["g_norm_swish_gate.weight"] = [15], ["o_proj.weight"] = [60, 60],
        };
        Assert.Equal(expected.Keys.Order(), layer.Keys.Order());
        foreach (var (name, shape) in expected) Assert.Equal(shape, layer[name].shape);
        Assert.True(layer["gk_proj.1.bias"].eq(0).all().item<bool>());
        Assert.True(layer["g_norm_swish_gate.weight"].eq(1).all().item<bool>());
        double std = layer["q_proj.weight"].std().item<float>();
        Assert.InRange(std, 0.018, 0.022);                          // fla's _init_weights: N(0, 0.02)
        Assert.Equal(4L * 4 * 9 * 15, GatedLinearAttention.Spec.StateBytes(config, 0, 100, 4));
    }

    [Fact]
    public void The_layer_equals_the_equations_from_its_own_weights()
    {
        using var scope = NewDisposeScope();
        var config = Awkward("gla") with { RmsNormEps = 1e-5 };
        using var model = RandomModel(config, seed: 4);
        using var noGrad = no_grad();
        var w = model.named_parameters().ToDictionary(p => p.name.Replace("model.layers.0.attn.", ""), p => p.parameter);
        foreach (var name in new[] { "gk_proj.1.bias", "g_norm_swish_gate.weight" })   // make every vector tell
            w[name].add_(randn(w[name].shape, generator: new Generator(3)) * 0.5);
        var x = randn([2, 19, 60], generator: new Generator(5));
        var mixer = ((HybridDecoderLayer)model.Backbone.Layers[0]).Mixer!;
        var actual = mixer.forward(new Wren.Operators.MixerInput(x, zeros([2, 19], ScalarType.Int64)));

        Tensor Heads(Tensor t, long d) => t.reshape(2, 19, 4, d);
        var q = Heads(x.matmul(w["q_proj.weight"].t()), 9) / 3.0;                              // K^(−1/2), K = 9
        var k = Heads(x.matmul(w["k_proj.weight"].t()), 9);
        var v = Heads(x.matmul(w["v_proj.weight"].t()), 15);
        var low = x.matmul(w["gk_proj.0.weight"].t()).matmul(w["gk_proj.1.weight"].t()) + w["gk_proj.1.bias"];
        var gk = Heads(nn.functional.logsigmoid(low) / 16, 9);
        var (o, _) = Loop(q, k, v, gk, zeros(2, 4, 9, 15));
        var heads = AsTensor(o, [2, 19, 4, 15]);
        var normed = heads * (heads.square().mean([-1], keepdim: true) + 1e-5).rsqrt() * w["g_norm_swish_gate.weight"];
        var gate = x.matmul(w["g_proj.weight"].t());
        var expected = (normed.reshape(2, 19, 60) * gate * sigmoid(gate)).matmul(w["o_proj.weight"].t());
        AssertClose(actual, expected, 1e-4, "layer");
    }

    [Fact]
    public void Bad_sizes_are_one_line_errors_naming_the_key()
    {
        string Error(HybridConfig c) => Assert.Throws<WrenException>(() => c.Validate()).Message;
        Assert.Contains("int(hidden_size·expand_k) = 30 must be a positive multiple of num_attention_heads (4)",
                        Error(Awkward("gla") with { ExpandK = 0.5 }));
        Assert.Contains("int(hidden_size·expand_v) = 30 must be a positive multiple of num_attention_heads (4)",
                        Error(Awkward("gla") with { ExpandV = 0.5 }));
        Assert.Contains("expand_k (0) and expand_v (1) must be positive", Error(Awkward("gla") with { ExpandK = 0 }));
        Assert.DoesNotContain('\n', Error(Awkward("gla") with { ExpandK = 0.5 }));
    }

    [Fact]
    public void Prefill_then_decode_equals_the_full_forward() =>
        MixerModelChecks.PrefillThenDecodeEqualsFullForward(Awkward("gla", "f", "gla") with { NumMemoryTokens = 3 });

    [Fact]
    public void Left_padded_rows_equal_each_row_alone() =>
        MixerModelChecks.LeftPaddedRowsEqualEachRowAlone(Awkward("gla", "f", "gla") with { NumMemoryTokens = 2 });

    [Fact]
    public void Fused_decode_equals_the_op_form_in_fp32_bf16_and_int8() =>
        MixerModelChecks.FusedDecodeEqualsTheOpFormInEveryPrecision(Awkward("gla", "f", "gla") with { NumMemoryTokens = 2 });

    [Fact]
    public void A_model_with_gla_layers_trains_and_resumes_exactly() =>
        MixerModelChecks.TrainsAndResumesExactly(Config("gla", "f", "m2", "f"));

    [Fact]
    public Task Gla_is_searchable_priced_sized_and_budgeted() => MixerModelChecks.SearchablePricedSizedAndBudgeted("gla", Config("a"));
}
