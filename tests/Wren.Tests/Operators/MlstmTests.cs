using TorchSharp;
using Wren.Models;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// xLSTM's mLSTM ("mlstm"): every form against a per-token loop written here from the paper's unstabilised equations
/// (<c>C̃_t = f_t C̃_{t−1} + e^{ĩ_t} k_t v_tᵀ</c>, <c>ñ_t</c> likewise, <c>h_t = C̃_tᵀq_t / max(|ñ_tᵀq_t|, 1)</c>, which the
/// stabiliser m only rescales), the layer against the same loop from its own weights, then the model-level checks.
/// </summary>
public class MlstmTests
{
    /// <summary>Hidden 60, proj_factor 2 rounded to a multiple of 8 (inner 120), 4 heads of 30, q/k/v blocks of 4, conv 3.</summary>
    static HybridConfig Awkward(params string[] layers) => Config(layers) with
    {
        HiddenSize = 60,
        NumAttentionHeads = 4,
        FfnExpandRatio = 4.0,
        RoundProjUpToMultipleOf = 8,
        Conv1dKernelSize = 3,
    };

    /// <summary>q, k [B, T, H, D] (k scaled), v, ĩ and log f [B, T, H], and a state [B, H, D + 2, D] with m in [−1, 1].</summary>
    static (Tensor q, Tensor k, Tensor v, Tensor ig, Tensor logf, Tensor s0) Inputs(long B, long H, long T, long D, int seed)
    {
        var gen = new Generator((ulong)seed);
        var q = randn([B, T, H, D], generator: gen);
        var k = randn([B, T, H, D], generator: gen) * Math.Pow(D, -0.5);
        var v = randn([B, T, H, D], generator: gen);
        var ig = randn([B, T, H], generator: gen) * 2;
        var logf = nn.functional.logsigmoid(randn([B, T, H], generator: gen) * 2 + 2);
        var C = randn([B, H, D, D], generator: gen) * 0.3;
        var n = randn([B, H, 1, D], generator: gen) * 0.3;
        var m = (rand([B, H, 1, 1], generator: gen) * 2 - 1).expand(B, H, 1, D);
        return (q, k, v, ig, logf, cat([C, n, m], 2));
    }

    /// <summary>The unstabilised equations one scalar at a time in double, from the state's C̃ = e^m C and ñ = e^m n.</summary>
    static double[] Loop(Tensor q, Tensor k, Tensor v, Tensor ig, Tensor logf, Tensor s0)
    {
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], D = q.shape[3];
        float[] Q = q.contiguous().data<float>().ToArray(), K = k.contiguous().data<float>().ToArray();
        float[] V = v.contiguous().data<float>().ToArray(), I = ig.contiguous().data<float>().ToArray();
        float[] F = logf.contiguous().data<float>().ToArray(), S = s0.contiguous().data<float>().ToArray();
        var o = new double[B * T * H * D];
        for (long b = 0; b < B; b++)
            for (long h = 0; h < H; h++)
            {
                long state = (b * H + h) * (D + 2) * D;
                double scale = Math.Exp(S[state + (D + 1) * D]);
                var C = new double[D * D];
                var n = new double[D];
                for (long i = 0; i < D * D; i++) C[i] = scale * S[state + i];
                for (long i = 0; i < D; i++) n[i] = scale * S[state + D * D + i];
                for (long t = 0; t < T; t++)
                {
                    long gate = (b * T + t) * H + h, x = gate * D;
                    double f = Math.Exp(F[gate]), input = Math.Exp(I[gate]), qn = 0;
                    for (long i = 0; i < D; i++)
                    {
                        n[i] = f * n[i] + input * K[x + i];
                        qn += Q[x + i] * n[i];
                        for (long j = 0; j < D; j++) C[i * D + j] = f * C[i * D + j] + input * K[x + i] * V[x + j];
                    }
                    for (long j = 0; j < D; j++)
                    {
                        double sum = 0;
                        for (long i = 0; i < D; i++) sum += Q[x + i] * C[i * D + j];
                        o[x + j] = sum / Math.Max(Math.Abs(qn), 1);
                    }
                }
            }
        return o;
    }

    [Theory]
    [InlineData(37, 16, 7)]
    [InlineData(5, 16, 9)]
    [InlineData(70, 32, 12)]
    public void Chunked_recurrent_and_fused_forms_equal_the_equations(int T, int chunk, int D)
    {
        using var scope = NewDisposeScope();
        var (q, k, v, ig, logf, s0) = Inputs(2, 3, T, D, T + D);
        var expected = tensor(Loop(q, k, v, ig, logf, s0), q.shape).to(ScalarType.Float32);
        var (oC, sC) = Mlstm.Chunked(q, k, v, ig, logf, s0, chunk);
        AssertClose(oC, expected, 1e-4, "chunked output");
        var (oR, sR) = Mlstm.Recurrent(q, k, v, ig, logf, s0);
        AssertClose(oR, expected, 1e-4, "recurrent output");
        AssertClose(sC, sR, 1e-4, "chunked state vs recurrent (same stabiliser)");
        using var noGrad = no_grad();
        var state = s0.clone();
        var steps = Enumerable.Range(0, T).Select(t =>
        {
            Tensor At(Tensor x) => x.narrow(1, t, 1);
            return Mlstm.FusedRecurrent(At(q), At(k), At(v), At(ig), At(logf), state);
        }).ToArray();
        AssertClose(cat(steps, 1), oR, 1e-5, "fused steps vs recurrent");
        AssertClose(state, sR, 1e-5, "fused state vs recurrent");
    }

    [Fact]
    public void State_split_equals_one_pass()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, ig, logf, s0) = Inputs(2, 2, 50, 8, 3);
        var (oFull, sFull) = Mlstm.Chunked(q, k, v, ig, logf, s0, 16);
        const long t1 = 21;
        Tensor Head(Tensor x) => x.narrow(1, 0, t1);
        Tensor Tail(Tensor x) => x.narrow(1, t1, 50 - t1);
        var (o1, s1) = Mlstm.Chunked(Head(q), Head(k), Head(v), Head(ig), Head(logf), s0, 16);
        var (o2, s2) = Mlstm.Chunked(Tail(q), Tail(k), Tail(v), Tail(ig), Tail(logf), s1, 16);
        AssertClose(cat([o1, o2], 1), oFull, 1e-4, "output");
        AssertClose(s2, sFull, 1e-4, "state");
    }

    [Fact]
    public void Gradients_through_the_chunked_form_equal_those_through_the_recurrent_form()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, ig, logf, s0) = Inputs(2, 2, 23, 6, 9);
        var weights = randn(q.shape, generator: new Generator(4));
        AssertGradientsAgree([q, k, v, ig, logf, s0], x => Mlstm.Recurrent(x[0], x[1], x[2], x[3], x[4], x[5]),
                             x => Mlstm.Chunked(x[0], x[1], x[2], x[3], x[4], x[5], 8), weights);
    }

    [Fact]
    public void Parameters_carry_xlstm_names_and_shapes_and_its_initialization()
    {
        var config = Awkward("mlstm", "f");
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed: 1);
        const string prefix = "model.layers.0.xlstm.";
        var layer = model.named_parameters().Where(p => p.name.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(p => p.name[prefix.Length..], p => p.parameter);
        var expected = new Dictionary<string, long[]>
        {
            ["proj_up.weight"] = [240, 60], ["q_proj.weight"] = [30, 4, 4], ["k_proj.weight"] = [30, 4, 4], ["v_proj.weight"] = [30, 4, 4],
            ["conv1d.conv.weight"] = [120, 1, 3], ["conv1d.conv.bias"] = [120],
            ["mlstm_cell.igate.weight"] = [4, 360], ["mlstm_cell.igate.bias"] = [4],
            ["mlstm_cell.fgate.weight"] = [4, 360], ["mlstm_cell.fgate.bias"] = [4],
            ["mlstm_cell.outnorm.weight"] = [120], ["learnable_skip"] = [120], ["proj_down.weight"] = [60, 120],
        };
        Assert.Equal(expected.Keys.Order(), layer.Keys.Order());
        foreach (var (name, shape) in expected) Assert.Equal(shape, layer[name].shape);
        Assert.Equal([3f, 4f, 5f, 6f], layer["mlstm_cell.fgate.bias"].data<float>().ToArray());   // linspace(3, 6)
        foreach (var zero in new[] { "mlstm_cell.igate.weight", "mlstm_cell.fgate.weight", "mlstm_cell.outnorm.weight" })
            Assert.True(layer[zero].eq(0).all().item<bool>(), zero);
        Assert.True(layer["learnable_skip"].eq(1).all().item<bool>());
        Assert.InRange(layer["proj_up.weight"].std().item<float>(), 0.9 * Math.Sqrt(2.0 / 300), 1.1 * Math.Sqrt(2.0 / 300));
        Assert.InRange(layer["proj_down.weight"].std().item<float>(), 0.9 / Math.Sqrt(60), 1.1 / Math.Sqrt(60));   // 2 / 2 layers / √60
        Assert.Equal(120L * 2 * 4 + 4L * 4 * 32 * 30, Mlstm.Spec.StateBytes(config, 0, 100, 4));
    }

    [Fact]
    public void The_layer_equals_the_equations_from_its_own_weights()
    {
        using var scope = NewDisposeScope();
        var config = Awkward("mlstm");
        using var model = RandomModel(config, seed: 4);
        using var noGrad = no_grad();
        var w = model.named_parameters().ToDictionary(p => p.name.Replace("model.layers.0.xlstm.", ""), p => p.parameter);
        var gen = new Generator(3);
        foreach (var name in new[] { "mlstm_cell.igate.weight", "mlstm_cell.fgate.weight" })   // zero at init: make them tell
            w[name].copy_(randn(w[name].shape, generator: gen) * 0.05);
        foreach (var name in new[] { "mlstm_cell.outnorm.weight", "learnable_skip", "conv1d.conv.bias" })
            w[name].add_(randn(w[name].shape, generator: gen) * 0.5);
        var x = randn([2, 19, 60], generator: new Generator(5));
        var mixer = ((HybridDecoderLayer)model.Backbone.Layers[0]).Mixer!;
        var actual = mixer.forward(new MixerInput(x, zeros([2, 19], ScalarType.Int64)));

        var up = x.matmul(w["proj_up.weight"].t());
        var xm = up.narrow(-1, 0, 120);
        var z = up.narrow(-1, 120, 120);
        var padded = nn.functional.pad(xm.transpose(1, 2), [2, 0]);                              // causal: K − 1 zeros in front
        var xc = nn.functional.silu(nn.functional.conv1d(padded, w["conv1d.conv.weight"], w["conv1d.conv.bias"], groups: 120))
            .transpose(1, 2);
        Tensor Blocks(Tensor t, string name) =>                                        // y[h·4 + o] = Σ_i W[h, o, i] x[h·4 + i]
            einsum("bthi,hoi->btho", t.reshape(2, 19, 30, 4), w[name]).reshape(2, 19, 120);
        var q = Blocks(xc, "q_proj.weight");
        var k = Blocks(xc, "k_proj.weight");
        var v = Blocks(xm, "v_proj.weight");
        var qkv = cat([q, k, v], -1);
        var ig = qkv.matmul(w["mlstm_cell.igate.weight"].t()) + w["mlstm_cell.igate.bias"];
        var logf = nn.functional.logsigmoid(qkv.matmul(w["mlstm_cell.fgate.weight"].t()) + w["mlstm_cell.fgate.bias"]);
        Tensor Heads(Tensor t) => t.reshape(2, 19, 4, 30);
        var h = tensor(Loop(Heads(q), Heads(k) / Math.Sqrt(30), Heads(v), ig, logf, zeros(2, 4, 32, 30)), [2, 19, 4, 30])
            .to(ScalarType.Float32);
        var centred = h - h.mean([-1], keepdim: true);
        var normed = centred * (centred.square().mean([-1], keepdim: true) + 1e-5).rsqrt()
                     * (w["mlstm_cell.outnorm.weight"].reshape(4, 30) + 1);
        var gated = (normed.reshape(2, 19, 120) + w["learnable_skip"] * xc) * nn.functional.silu(z);
        AssertClose(actual, gated.matmul(w["proj_down.weight"].t()), 1e-4, "layer");
    }

    [Fact]
    public void Bad_sizes_are_one_line_errors_naming_the_key()
    {
        string Error(HybridConfig c) => Assert.Throws<WrenException>(() => c.Validate()).Message;
        Assert.Contains("qkv_proj_blocksize (7) must divide the mLSTM inner width (120)",
                        Error(Awkward("mlstm") with { QkvProjBlocksize = 7 }));
        Assert.Contains("the mLSTM inner width (120) must be divisible by num_attention_heads (7)",
                        Error(Awkward("mlstm") with { NumAttentionHeads = 7 }));
        Assert.Contains("proj_factor (0) must be positive", Error(Awkward("mlstm") with { ProjFactor = 0 }));
        Assert.Contains("conv1d_kernel_size (0) must be positive", Error(Awkward("mlstm") with { Conv1dKernelSize = 0 }));
        Assert.Contains("round_proj_up_to_multiple_of (0) must be positive",
                        Error(Awkward("mlstm") with { RoundProjUpToMultipleOf = 0 }));
    }

    [Fact]
    public void Prefill_then_decode_equals_the_full_forward() =>
        MixerModelChecks.PrefillThenDecodeEqualsFullForward(Awkward("mlstm", "f", "mlstm") with { NumMemoryTokens = 3 });

    [Fact]
    public void Left_padded_rows_equal_each_row_alone() =>
        MixerModelChecks.LeftPaddedRowsEqualEachRowAlone(Awkward("mlstm", "f", "mlstm") with { NumMemoryTokens = 2 });

    [Fact]
    public void Fused_decode_equals_the_op_form_in_fp32_bf16_and_int8() =>
        MixerModelChecks.FusedDecodeEqualsTheOpFormInEveryPrecision(Awkward("mlstm", "f", "mlstm") with { NumMemoryTokens = 2 });

    [Fact]
    public void A_model_with_mlstm_layers_trains_and_resumes_exactly() =>
        MixerModelChecks.TrainsAndResumesExactly(Config("mlstm", "f", "m2", "f"));

    [Fact]
    public Task Mlstm_is_searchable_priced_sized_and_budgeted() =>
        MixerModelChecks.SearchablePricedSizedAndBudgeted("mlstm", Config("a"));
}
