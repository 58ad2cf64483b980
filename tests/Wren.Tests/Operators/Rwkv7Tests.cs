using TorchSharp;
using Wren.Data;
using Wren.Inference;
using Wren.Models;
using Wren.Modules;
using Wren.Operators;
using Wren.Search;
using Wren.Tests.Data;
using Wren.Training;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// RWKV-7 (fla's RWKV7Attention) against a per-token loop written here from fla's equations: the DPLR recurrence in its
/// three forms, the whole mixer (token shift, lerps, LoRAs, value residual across layers, GroupNorm, bonus, gate), and at
/// model level prefill + decode, left padding, fla's parameter names and initialization, and training with exact resume.
/// </summary>
public class Rwkv7Tests
{
    /// <summary>Inputs of the DPLR rule as RWKV-7 makes them: w ∈ (−0.61, 0), a = −kk and b = kk ⊙ σ(·) with kk unit per
    /// head.</summary>
    static Tensor[] DplrInputs(long B, long T, long H, long K, long V, ulong seed)
    {
        var gen = new Generator(seed);
        var kk = nn.functional.normalize(randn([B, T, H, K], generator: gen), p: 2, dim: -1);
        return
        [
            randn([B, T, H, K], generator: gen),                              // r
            -0.6065 * rand([B, T, H, K], generator: gen),                     // w
            randn([B, T, H, K], generator: gen),                              // k
            randn([B, T, H, V], generator: gen),                              // v
            -kk,                                                              // a
            kk * rand([B, T, H, K], generator: gen),                          // b
            randn([B, H, K, V], generator: gen),                              // S_0
        ];
    }

    /// <summary>
    /// The specification, head by head and token by token as 2-D products:
    /// <c>S ← diag(e^w) S + b (aᵀS) + k vᵀ;  o = Sᵀ r</c> (the low-rank term reads the state before the decay).
    /// </summary>
    static (Tensor Output, Tensor State) Loop(Tensor[] x)
    {
        var (r, w, k, v, a, b, s0) = (x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
        long B = r.shape[0], T = r.shape[1], H = r.shape[2];
        var o = zeros([B, T, H, v.shape[3]]);
        var final = s0.clone();
        for (long n = 0; n < B; n++)
            for (long h = 0; h < H; h++)
            {
                var S = s0[n, h];
                for (long t = 0; t < T; t++)
                {
                    var read = a[n, t, h].unsqueeze(0).mm(S);                                    // [1, V]
                    S = diag(w[n, t, h].exp()).mm(S) + b[n, t, h].unsqueeze(1).mm(read) + outer(k[n, t, h], v[n, t, h]);
                    o[n, t, h] = S.t().mv(r[n, t, h]);
                }
                final[n, h] = S;
            }
        return (o, final);
    }

    [Theory]
    [InlineData(21, 7, 5, 8)]      // three chunks, the last partial; head widths below one vector
    [InlineData(70, 13, 11, 32)]   // the default chunk, 70 = 2·32 + 6
    [InlineData(1, 9, 9, 32)]
    public void Chunked_and_recurrent_forms_equal_the_per_token_loop(int T, int K, int V, int chunk)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = DplrInputs(2, T, 3, K, V, (ulong)T);
        var (oRef, sRef) = Loop(x);
        var (o, s) = Dplr.Chunked(x[0], x[1], x[2], x[3], x[4], x[5], x[6], chunk);
        AssertClose(o, oRef, 1e-4, "chunked output");
        AssertClose(s, sRef, 1e-4, "chunked state");
        var (oRec, sRec) = Dplr.Recurrent(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
        AssertClose(oRec, oRef, 1e-5, "recurrent output");
        AssertClose(sRec, sRef, 1e-5, "recurrent state");
    }

    [Theory]
    [InlineData(16, 16)]
    [InlineData(5, 3)]
    [InlineData(64, 64)]
    public void Fused_step_equals_the_recurrent_form(int K, int V)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = DplrInputs(2, 1, 3, K, V, 4);
        var (oRef, sRef) = Dplr.Recurrent(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
        var state = x[6].clone();
        AssertClose(Dplr.FusedRecurrent(x[0], x[1], x[2], x[3], x[4], x[5], state), oRef, 1e-5, "output");
        AssertClose(state, sRef, 1e-5, "state");
        Assert.Contains("b: expected shape [2, 1, 3, " + K + "]", Assert.Throws<ArgumentException>(() =>
            Dplr.FusedRecurrent(x[0], x[1], x[2], x[3], x[4], x[5].squeeze(1), state)).Message);
    }

    [Fact]
    public void Chunked_gradients_equal_the_recurrent_gradients()
    {
        using var scope = NewDisposeScope();
        var x = DplrInputs(1, 19, 2, 6, 5, 9);
        var weights = randn(1, 19, 2, 5, generator: new Generator(2));
        AssertGradientsAgree(x, t => Dplr.Recurrent(t[0], t[1], t[2], t[3], t[4], t[5], t[6]),
                             t => Dplr.Chunked(t[0], t[1], t[2], t[3], t[4], t[5], t[6], chunk: 8), weights);
    }

    /// <summary>
    /// fla's RWKV7Attention for one layer, token by token from the equations, with the layer's own parameters (by fla name):
    /// returns the output [B, T, H] and the layer's values v [B, T, H] (the first layer's are v_first for the rest).
    /// </summary>
    static (Tensor Output, Tensor Values) ReferenceLayer(Dictionary<string, Tensor> p, Tensor x, Tensor? vFirst, int heads)
    {
        long B = x.shape[0], T = x.shape[1], H = x.shape[2], d = H / heads;
        Tensor Lora(string name, Tensor input, Func<Tensor, Tensor> middle) =>
            p[$"{name}.lora.2.weight"].mv(middle(p[$"{name}.lora.0.weight"].mv(input)))
            + (p.TryGetValue($"{name}.lora.2.bias", out var bias) ? bias : zeros(H));
        var output = zeros([B, T, H]);
        var values = zeros([B, T, H]);
        for (long n = 0; n < B; n++)
        {
            var S = zeros([heads, d, d]);
            for (long t = 0; t < T; t++)
            {
                var xt = x[n, t];
                var previous = t == 0 ? zeros(H) : x[n, t - 1];
                Tensor Mix(string name) => xt + (previous - xt) * p[name].flatten();
                var r = p["r_proj.weight"].mv(Mix("x_r"));
                var w = -Math.Exp(-0.5) * Lora("w_lora", Mix("x_w"), h => h.tanh()).sigmoid();
                var k = p["k_proj.weight"].mv(Mix("x_k"));
                var v = p["v_proj.weight"].mv(Mix("x_v"));
                if (vFirst is not null) v = v + (vFirst[n, t] - v) * Lora("v_lora", Mix("x_v"), h => h).sigmoid();
                values[n, t] = v;
                var a = Lora("a_lora", Mix("x_a"), h => h).sigmoid();
                var g = Lora("g_lora", Mix("x_g"), h => h.sigmoid());
                var kNew = k * (1 + (a - 1) * p["k_a"]);
                var o = zeros(H);
                for (long h = 0; h < heads; h++)
                {
                    long c = h * d;
                    var kk = (k * p["k_k"]).narrow(0, c, d);
                    kk = kk / (kk.square().sum() + 1e-6).sqrt();
                    var (rh, kh, vh, ah) = (r.narrow(0, c, d), kNew.narrow(0, c, d), v.narrow(0, c, d), a.narrow(0, c, d));
                    S[h] = diag(w.narrow(0, c, d).exp()).mm(S[h]) + (kk * ah).unsqueeze(1).mm((-kk).unsqueeze(0).mm(S[h])) + outer(kh, vh);
                    var oh = S[h].t().mv(rh);
                    oh = (oh - oh.mean()) / (oh.var(unbiased: false) + d * 1e-5).sqrt() * p["g_norm.weight"].narrow(0, c, d)
                         + p["g_norm.bias"].narrow(0, c, d);
                    o.narrow(0, c, d).copy_(oh + (rh * kh * p["r_k"][h]).sum() * vh);
                }
                output[n, t] = p["o_proj.weight"].mv(o * g);
            }
        }
        return (output, values);
    }

    static Dictionary<string, Tensor> LayerParameters(HybridForCausalLM model, int layer) =>
        model.named_parameters().Where(p => p.name.StartsWith($"model.layers.{layer}.attn.", StringComparison.Ordinal))
            .ToDictionary(p => p.name[$"model.layers.{layer}.attn.".Length..], p => (Tensor)p.parameter);

    [Theory]
    [InlineData(9)]
    [InlineData(37)]   // over a chunk boundary (32)
    public void Two_layers_equal_the_reference_loop_with_the_value_residual(int T)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var config = MixerStepTests.Awkward("rwkv7", "rwkv7");
        using var model = RandomModel(config, seed: 3);
        var gen = new Generator(5);
        var x0 = randn([2, T, 60], generator: gen);
        var x1 = randn([2, T, 60], generator: gen);
        var positions = arange(T).unsqueeze(0).expand(2, -1);
        var (expected0, first) = ReferenceLayer(LayerParameters(model, 0), x0, null, 4);
        var (expected1, _) = ReferenceLayer(LayerParameters(model, 1), x1, first, 4);
        using var carry = new LayerCarry();
        var layers = model.Backbone.Layers;
        var y0 = layers[0].Mixer!.forward(new MixerInput(x0, positions, Carry: carry));
        AssertClose(carry.FirstValues!, first, 1e-5, "v_first");
        var y1 = layers[1].Mixer!.forward(new MixerInput(x1, positions, Carry: carry));
        AssertClose(y0, expected0, 1e-4, "first layer");
        AssertClose(y1, expected1, 1e-4, "second layer");
        Assert.Contains("the first rwkv7 layer's values (MixerInput.Carry) are missing",
                        Assert.Throws<InvalidOperationException>(() => layers[1].Mixer!.forward(new MixerInput(x1, positions))).Message);
    }

    [Fact]
    public void A_later_layer_steps_fused_equal_to_the_recurrent_and_chunked_forms()
    {
        MixerStepTests.StepsMatchReferences(MixerStepTests.Awkward("rwkv7", "rwkv7"), batch: 2, prefill: 3, steps: 4, layer: 1);
        foreach (var precision in new[] { WeightPrecision.BFloat16, WeightPrecision.Int8 })
            MixerStepTests.StepsMatchReferences(MixerStepTests.Awkward("rwkv7", "rwkv7"), batch: 2, prefill: 2, steps: 3,
                                                precision: precision, layer: 1);
    }

    /// <summary>Three rwkv7 layers (6 heads of 10) around attention and an FFN, so v_first crosses layers of other types, with meta
    /// tokens.</summary>
    static HybridConfig Stack => MixerStepTests.Awkward("rwkv7", "a", "rwkv7", "f", "rwkv7") with
    {
        NumAttentionHeads = 6,
        NumMemoryTokens = 3,
        FfnExpandRatio = 2.2,
    };

    [Fact]
    public void Prefill_then_decode_equals_the_full_forward()
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel(Stack, seed: 4);
        var tokens = RandomTokens(2, 41, Stack.VocabSize, 1);
        var full = Scoring.Logits(model, tokens);
        foreach (var prefill in new[] { 0, 1, 34 })
            AssertClose(Scoring.Logits(model, tokens, prefill), full, 1e-4, $"prefill {prefill}");
        model.FusedDecode = false;
        AssertClose(Scoring.Logits(model, tokens, 5), full, 1e-4, "libtorch-op layers");
    }

    [Fact]
    public void Left_padded_rows_equal_each_row_alone()
        => MixerModelChecks.LeftPaddedRowsEqualEachRowAlone(Stack);

    [Theory]
    [InlineData(3)]   // the chunked form
    [InlineData(1)]   // a padded decode step: the recurrent form
    public void Pads_leave_the_state_and_the_token_shift_unchanged(int T)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var config = MixerStepTests.Awkward("rwkv7", "rwkv7");
        using var model = RandomModel(config, seed: 2);
        var mixer = model.Backbone.Layers[1].Mixer!;
        var gen = new Generator(3);
        var x = randn([2, T, 60], generator: gen);
        var first = randn([2, T, 60], generator: gen);
        using var padded = mixer.NewState(new CacheShape(2, 8), CPU);
        using var alone = mixer.NewState(new CacheShape(1, 8), CPU);
        var state = (RecurrentState)padded;
        state.Conv[0].copy_(randn(state.Conv[0].shape, generator: gen));
        state.Recurrent.copy_(randn(state.Recurrent.shape, generator: gen));
        var soloState = (RecurrentState)alone;
        soloState.Conv[0].copy_(state.Conv[0].narrow(0, 1, 1));
        soloState.Recurrent.copy_(state.Recurrent.narrow(0, 1, 1));
        var before = (state.Conv[0].clone(), state.Recurrent.clone());
        using var padding = new LeftPadding(tensor(new long[] { T, 1 }), T);   // row 0 all pads, row 1 one pad
        using var carry = new LayerCarry { FirstValues = first };
        var y = mixer.forward(new MixerInput(x, zeros([2, T], ScalarType.Int64), padding, padded, carry));
        Assert.True(state.Conv[0][0].equal(before.Item1[0]).all().item<bool>(), "row 0 token shift");
        Assert.True(state.Recurrent[0].equal(before.Item2[0]).all().item<bool>(), "row 0 state");
        if (T == 1)
        {
            Assert.True(state.Conv[0][1].equal(before.Item1[1]).all().item<bool>(), "row 1 token shift");
            Assert.True(state.Recurrent[1].equal(before.Item2[1]).all().item<bool>(), "row 1 state");
            return;
        }
        using var soloCarry = new LayerCarry { FirstValues = first.narrow(0, 1, 1).narrow(1, 1, T - 1) };
        var solo = mixer.forward(new MixerInput(x.narrow(0, 1, 1).narrow(1, 1, T - 1), zeros([1, T - 1], ScalarType.Int64), null, alone,
                                                soloCarry));
        AssertClose(y.narrow(0, 1, 1).narrow(1, 1, T - 1), solo, 1e-5, "row 1 output");
        AssertClose(state.Conv[0].narrow(0, 1, 1), soloState.Conv[0], 1e-6, "row 1 token shift");
        AssertClose(state.Recurrent.narrow(0, 1, 1), soloState.Recurrent, 1e-5, "row 1 state");
    }

    [Fact]
    public void Parameters_carry_fla_names_and_the_first_layer_has_no_v_lora()
    {
        var config = MixerStepTests.Awkward("rwkv7", "rwkv7", "rwkv7");
        using var model = new HybridForCausalLM(config);
        string[] Names(int layer) => model.named_parameters().Select(p => p.name)
            .Where(n => n.StartsWith($"model.layers.{layer}.attn.", StringComparison.Ordinal))
            .Select(n => n[$"model.layers.{layer}.attn.".Length..]).Order(StringComparer.Ordinal).ToArray();
        string[] fla =
        [
            "a_lora.lora.0.weight", "a_lora.lora.2.bias", "a_lora.lora.2.weight", "g_lora.lora.0.weight", "g_lora.lora.2.weight",
            "g_norm.bias", "g_norm.weight", "k_a", "k_k", "k_proj.weight", "o_proj.weight", "r_k", "r_proj.weight", "v_proj.weight",
            "w_lora.lora.0.weight", "w_lora.lora.2.bias", "w_lora.lora.2.weight", "x_a", "x_g", "x_k", "x_r", "x_v", "x_w",
        ];
        Assert.Equal(fla, Names(0));
        Assert.Equal(fla.Concat(["v_lora.lora.0.weight", "v_lora.lora.2.bias", "v_lora.lora.2.weight"]).Order(StringComparer.Ordinal),
                     Names(2));
        var shapes = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal([1L, 1, 60], shapes["model.layers.2.attn.x_r"]);
        Assert.Equal([4L, 15], shapes["model.layers.2.attn.r_k"]);
        Assert.Equal([5L, 60], shapes["model.layers.2.attn.w_lora.lora.0.weight"]);   // decay_low_rank_dim
        Assert.Equal([60L, 3], shapes["model.layers.2.attn.v_lora.lora.2.weight"]);   // v_low_rank_dim
        Assert.Equal([7L, 60], shapes["model.layers.2.attn.g_lora.lora.0.weight"]);   // gate_low_rank_dim
        // fla's default ranks at hidden 1024, head 64: decay and a max(32, round(2.5·32/32)·32) = 64 (Python rounds 2.5 to
        // the even 2), gate round(5)·32 = 160, v round(1.7)·32 = 64.
        var wide = Config("rwkv7", "rwkv7") with { HiddenSize = 1024, NumAttentionHeads = 16 };
        using var meta = new HybridForCausalLM(wide, new Placement(ScalarType.Float32, new Device("meta")));
        var wideShapes = meta.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal(64, wideShapes["model.layers.1.attn.w_lora.lora.0.weight"][0]);
        Assert.Equal(64, wideShapes["model.layers.1.attn.a_lora.lora.0.weight"][0]);
        Assert.Equal(160, wideShapes["model.layers.1.attn.g_lora.lora.0.weight"][0]);
        Assert.Equal(64, wideShapes["model.layers.1.attn.v_lora.lora.0.weight"][0]);
    }

    [Fact]
    public void Initialization_follows_fla()
    {
        using var scope = NewDisposeScope();
        var config = Config("rwkv7", "rwkv7") with { HiddenSize = 8, NumAttentionHeads = 2 };
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed: 1);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        float At(string name, long i) => p[name].flatten()[i].item<float>();
        // Layer 1 of 2: ratio_1_to_almost0 = 1/2, ratio_0_to_1 = 1; channel 4 of 8: ddd = 1/2, linear = 4/7 − 1/2, zigzag of
        // (4 mod 4 − 1.5)/1.5 = −1, squared with its sign: −1.
        Assert.Equal(1 - Math.Pow(0.5, 0.2 * 0.5), At("model.layers.1.attn.x_r", 4), 5);
        Assert.Equal(1 - Math.Pow(0.5, 0.9 * 0.5), At("model.layers.1.attn.x_w", 4), 5);
        Assert.Equal(0.71 - (4.0 / 7 - 0.5) * 0.1, At("model.layers.1.attn.k_k", 4), 5);
        Assert.Equal(-6 + 6 * Math.Pow(4.0 / 7, 2) + 0.5 - 2.5, At("model.layers.1.attn.w_lora.lora.2.bias", 4), 5);
        Assert.Equal(-0.19 - 0.3 + (4.0 / 7 - 0.5) * 0.4, At("model.layers.1.attn.a_lora.lora.2.bias", 4), 5);
        Assert.Equal(0.73 - (4.0 / 7 - 0.5) * 0.4, At("model.layers.1.attn.v_lora.lora.2.bias", 4), 5);
        Assert.Equal(1.02, At("model.layers.0.attn.k_a", 3), 5);
        Assert.Equal(-0.04, At("model.layers.0.attn.r_k", 3), 5);
        Assert.Equal(Math.Pow(0.5, 0.7), At("model.layers.0.attn.g_norm.weight", 0), 5);
        Assert.Equal(1.0, At("model.layers.1.attn.g_norm.weight", 0), 5);
        foreach (var zero in new[] { "o_proj.weight", "g_norm.bias", "w_lora.lora.0.weight", "g_lora.lora.0.weight" })
            Assert.False(p[$"model.layers.1.attn.{zero}"].any().item<bool>(), zero);
        var r = p["model.layers.0.attn.r_proj.weight"];
        AssertClose(r.mm(r.t()), eye(8), 1e-5, "r_proj orthogonal");
        var k = p["model.layers.0.attn.k_proj.weight"];
        AssertClose(k.mm(k.t()), eye(8) * 0.01, 1e-5, "k_proj orthogonal, gain 0.1");
        var up = p["model.layers.0.attn.w_lora.lora.2.weight"];                  // [8, 32]: wide, gain 0.1·√(32/8)
        AssertClose(up.mm(up.t()), eye(8) * 0.04, 1e-5, "LoRA up-projection");
    }

    [Fact]
    public void A_model_with_the_layer_trains_and_resumes_exactly()
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        var config = Config("rwkv7", "f", "rwkv7", "a") with { VocabSize = 320, NumMemoryTokens = 2 };
        var options = new TrainingOptions
        {
            Steps = 5, BatchSize = 2, SeqLen = 40, LearningRate = 3e-3, WarmupSteps = 1,
            EvalEvery = 1000, EvalWindows = 2, CheckpointEvery = 2, LogEvery = 1, Seed = 5,
        };
        string straight = TempDir();
        using (var trainer = Trainer.Open(straight, data, new NewRun(config, options)))
            trainer.Run();
        string interrupted = TempDir();
        using (var trainer = Trainer.Open(interrupted, data, new NewRun(config, options)))
        {
            using var stop = new CancellationTokenSource();
            Assert.Throws<OperationCanceledException>(() => trainer.Run(new Stopper(stop, 3), stop.Token));
        }
        using (var trainer = Trainer.Open(interrupted, data, null, resume: true))
        {
            Assert.Equal(2, trainer.State.Step);
            trainer.Run();
        }
        List<(long, double?, double?)> Losses(string run) => MetricsLog.Read(Path.Combine(run, MetricsLog.FileName))
            .Where(e => e.Loss is not null).Select(e => (e.Step, e.Loss, e.GradNorm)).ToList();
        var expected = Losses(straight);
        Assert.Equal(5, expected.Count);
        Assert.True(expected[^1].Item2 < expected[0].Item2, $"loss {expected[0].Item2} → {expected[^1].Item2}");
        Assert.Equal(expected, Losses(interrupted));
    }

    sealed class Stopper(CancellationTokenSource stop, long step) : IProgress<TrainingStatus>
    {
        public void Report(TrainingStatus value)
        {
            if (value.Step == step) stop.Cancel();
        }
    }

    [Fact]
    public void A_search_space_names_it_and_the_footprint_prices_it()
    {
        var space = SearchSpace.Load("quick") with { Mixers = ["rwkv7", "a"], Seeds = [] };
        space.Validate();
        Assert.Contains("rwkv7", SearchSpace.KnownMixers);
        Assert.Contains("rwkv7", space.LatencyKeys());
        var architecture = Architecture.Parse("rwkv7+a 1:1 ffn1 x1 | rwkv7 0:1 ffn0 x2 | a 0:1 ffn0 x1", space);
        var config = space.Config(architecture, 128) with { DecayLowRankDim = 5, GateLowRankDim = 7, ALowRankDim = 6, VLowRankDim = 3 };
        Assert.Equal(["rwkv7", "f", "a", "f", "rwkv7", "rwkv7", "a"], config.LayerTypes);
        Assert.Equal("rwkv7", OperatorRegistry.Of(config, 0).LatencyKey(config, 0));
        // Per rwkv7 layer at H = 128: its input norm (H), six lerps, k_k, k_a, r_k (9H), r/k/v/o (4H²), w and a LoRAs
        // (2·r·H + H each), the gate LoRA (2·7·H, no bias), GroupNorm (2H); the two later layers add the v LoRA (2·3·H + H).
        long H = 128, first = H + 9 * H + 4 * H * H + (2 * 5 * H + H) + (2 * 6 * H + H) + 2 * 7 * H + 2 * H;
        long later = first + 2 * 3 * H + H;
        var footprint = ModelFootprint.Of(config);
        Assert.Contains(footprint.PerLayerType, row => row.LayerType == "rwkv7" && row.Layers == 3 && row.Parameters == first + 2 * later);
        using var model = new HybridForCausalLM(config);
        foreach (var (batch, tokens) in new[] { (1, 1), (3, 20) })
        {
            using var cache = model.NewCache(batch, tokens);
            Assert.Equal(footprint.CacheBytes(batch, tokens), cache.Bytes);
        }
        // Each rwkv7 layer holds one token of shift (H floats) and S [heads, d, d] whatever the context.
        long perLayer = 4 * H + 4L * config.NumAttentionHeads * config.LinearHeadDim * config.LinearHeadDim;
        Assert.Equal(perLayer, Rwkv7.Spec.StateBytes(config, 0, 1 << 20, 4));
    }

    [Fact]
    public void Bad_ranks_and_head_widths_fail_naming_the_key()
    {
        Assert.Contains("gate_low_rank_dim must be positive",
                        Assert.Throws<WrenException>(() => (Config("rwkv7") with { GateLowRankDim = 0 }).Validate()).Message);
        Assert.Contains("must be divisible by num_attention_heads (5) for RWKV-7 heads",
                        Assert.Throws<WrenException>(() => (Config("rwkv7") with { NumAttentionHeads = 5 }).Validate()).Message);
        var parsed = HybridConfig.Parse(Config("rwkv7").ToJson().Replace("\"vocab_size\"", "\"decay_low_rank_dim\": 12, \"vocab_size\""));
        Assert.Equal(12, parsed.DecayLowRankDim);
        Assert.DoesNotContain("gate_low_rank_dim", parsed.ToJson());
    }
}
