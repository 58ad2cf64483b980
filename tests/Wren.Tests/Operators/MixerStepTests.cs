using TorchSharp;
using Wren.Models;
using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// Each mixer's fused decode step (projection, one pass over the projected vector, output projection) against the two
/// references it replaces: the recurrent form (the same step through libtorch ops, taken with autograd on) and the chunked
/// form (all the steps at once from the same state), over several steps with a carried state, at sizes that are no
/// multiple of the vector width.
/// </summary>
public class MixerStepTests
{
    /// <summary>
    /// Hidden 60: DeltaNet and RWKV-7 heads of 15 (4 heads; RWKV-7 LoRA ranks 5, 7, 6, 3); Mamba2 8 heads of 15, d_state 13,
    /// 2 groups (conv channels 172); Mamba-1 d_inner 120, d_state 13, dt_rank 4; attention heads of 10 (6 query, 2 KV
    /// heads); GLA keys of 9 (expand_k 0.6) and values of 15; mLSTM inner 120 (rounded to a multiple of 8), 4 heads of 30.
    /// </summary>
    internal static HybridConfig Awkward(params string[] layers) => Config(layers) with
    {
        HiddenSize = 60,
        NumAttentionHeads = layers[0] == "a" ? 6 : 4,
        NumKeyValueHeads = 2,
        Mamba2HeadDim = 15,
        MambaDState = 13,
        MambaNGroups = 2,
        ExpandK = 0.6,
        RoundProjUpToMultipleOf = 8,
        DecayLowRankDim = 5,
        GateLowRankDim = 7,
        ALowRankDim = 6,
        VLowRankDim = 3,
    };

    public static TheoryData<string, int, int, int> Small => new()
    {
        { "deltanet", 2, 3, 5 },
        { "gdn", 2, 3, 5 },
        { "m2", 2, 3, 5 },
        { "mamba1", 2, 3, 5 },
        { "mamba1", 1, 0, 4 },
        { "a", 2, 3, 5 },
        { "a", 1, 0, 4 },
        { "gdn", 1, 1, 4 },
        { "gla", 2, 3, 5 },
        { "gla", 1, 0, 4 },
        { "mlstm", 2, 3, 5 },
        { "mlstm", 1, 0, 4 },
        { "rwkv7", 2, 3, 5 },
        { "rwkv7", 1, 0, 4 },
    };

    [Theory]
    [MemberData(nameof(Small))]
    public void Fused_steps_equal_the_recurrent_and_chunked_forms(string layer, int batch, int prefill, int steps) =>
        StepsMatchReferences(Awkward(layer), batch, prefill, steps);

    /// <summary>Large enough (≥ 2^16 state elements a step) that the heads are split in chunks over the kernel threads.</summary>
    [Theory]
    [InlineData("deltanet")]
    [InlineData("gdn")]
    [InlineData("m2")]
    [InlineData("mamba1")]
    [InlineData("gla")]
    [InlineData("mlstm")]
    [InlineData("rwkv7")]
    public void Fused_steps_split_over_threads_equal_the_references(string layer) =>
        StepsMatchReferences(Config(layer) with
        {
            HiddenSize = 268,
            NumAttentionHeads = 4,
            Mamba2HeadDim = 67,
            MambaDState = 130,
            ExpandK = 1.0,
        }, batch: 4, prefill: 2, steps: 3);

    [Fact]
    public void Attention_over_a_long_cache_splits_over_threads_and_equals_the_references() =>
        StepsMatchReferences(Awkward("a"), batch: 3, prefill: 600, steps: 3);

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void Sliding_window_ring_steps_equal_the_references(int maxLeftPad)
    {
        // W = 4: a ring of 5 slots (7 with room for pads, then the step masks by position); 9 steps wrap it twice.
        var config = Awkward("a") with { SlidingWindow = 4, GlobalAttnIdx = [] };
        StepsMatchReferences(config, batch: 2, prefill: 3, steps: 9, maxLeftPad);
    }

    [Theory]
    [InlineData(WeightPrecision.BFloat16)]
    [InlineData(WeightPrecision.Int8)]
    public void Fused_steps_equal_the_references_with_packed_weights(WeightPrecision precision)
    {
        foreach (var layer in new[] { "gdn", "m2", "mamba1", "a", "gla", "mlstm", "rwkv7" })
            StepsMatchReferences(Awkward(layer), batch: 2, prefill: 2, steps: 3, precision: precision);
    }

    [Fact]
    public void A_full_cache_fails_in_the_fused_step_as_in_the_others()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var model = RandomModel(Awkward("a"), seed: 3);
        var mixer = ((HybridDecoderLayer)model.Backbone.Layers[0]).Mixer!;
        using var state = mixer.NewState(new CacheShape(1, 2), CPU);
        var hidden = randn(1, 3, 60);
        MixerInput Step(long t) => new(hidden.narrow(1, t, 1), full([1, 1], t, ScalarType.Int64), null, state);
        mixer.forward(Step(0));
        mixer.forward(Step(1));
        Assert.Equal(OperatorForm.Fused, ((IFusedDecoder)mixer).FormOf(Step(2)));
        Assert.Contains("KV cache is full (2 positions)", Assert.Throws<WrenException>(() => mixer.forward(Step(2))).Message);
    }

    [Fact]
    public void A_padded_step_takes_the_recurrent_form()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var state = zeros(1, 2, 4, 4);
        var x = randn(1, 1, 8);
        var positions = zeros(1, 1, ScalarType.Int64);
        using var padding = new LeftPadding(tensor(new long[] { 0 }), 1);
        Assert.Equal(OperatorForm.Fused, DecodeForm.Choose(new MixerInput(x, positions), state));
        Assert.Equal(OperatorForm.Recurrent, DecodeForm.Choose(new MixerInput(x, positions, padding), state));
        Assert.Equal(OperatorForm.Recurrent, DecodeForm.Choose(new MixerInput(x, positions), state, randn(4).to(ScalarType.BFloat16)));
        Assert.Equal(OperatorForm.Chunked, DecodeForm.Choose(new MixerInput(randn(1, 3, 8), positions), state));
    }

    /// <summary>
    /// Prefills <paramref name="prefill"/> tokens (the parallel form) into three states of the mixer of layer
    /// <paramref name="layer"/>, then decodes <paramref name="steps"/> tokens: fused, one at a time through the recurrent
    /// form (autograd on; with packed weights, whose products the kernels compute either way, a step with an all-real padding
    /// mask, which also takes it), and all at once through the chunked form. Every input carries random first-layer values
    /// (<see cref="LayerCarry"/>; only later RWKV-7 layers read them). Outputs are compared at every step, states at the end.
    /// </summary>
    internal static void StepsMatchReferences(HybridConfig config, int batch, int prefill, int steps, int maxLeftPad = 0,
                                              WeightPrecision precision = WeightPrecision.Float32, int layer = 0)
    {
        using var scope = NewDisposeScope();
        using var fp32 = RandomModel(config, seed: 7);
        var gen = new Generator(11);
        using (no_grad())                                        // norm weights start at 1, D at 1: make every vector tell
            foreach (var (_, p) in fp32.named_parameters().Where(p => p.parameter.dim() == 1))
                p.add_(randn(p.shape, generator: gen) * 0.3);
        using var packed = precision == WeightPrecision.Float32 ? null : WeightPacking.Pack(fp32, precision);
        var mixer = ((HybridDecoderLayer)(packed ?? fp32).Backbone.Layers[layer]).Mixer!;
        var decoder = (IFusedDecoder)mixer;
        long T = prefill + steps;
        var hidden = randn([batch, T, config.HiddenSize], generator: gen);
        var positions = arange(T).unsqueeze(0).expand(batch, -1).contiguous();
        var shape = new CacheShape(batch, (int)T, maxLeftPad);
        using var fused = mixer.NewState(shape, CPU);
        using var stepped = mixer.NewState(shape, CPU);
        using var chunked = mixer.NewState(shape, CPU);
        IMixerState[] states = [fused, stepped, chunked];
        static Tensor[] Tensors(IMixerState s) => s is RecurrentState r ? [.. r.Conv, r.Recurrent] : [];
        using (no_grad())
            for (int i = 0; i < Tensors(fused).Length; i++)         // a carried state, not zeros
            {
                var start = randn(Tensors(fused)[i].shape, generator: gen);
                foreach (var s in states) Tensors(s)[i].copy_(start);
            }
        var firstValues = randn([batch, T, config.HiddenSize], generator: gen);
        var carries = new List<LayerCarry>();
        MixerInput Input(IMixerState state, long from, long length)
        {
            var carry = new LayerCarry { FirstValues = firstValues.narrow(1, from, length) };
            carries.Add(carry);
            return new(hidden.narrow(1, from, length), positions.narrow(1, from, length), null, state, carry);
        }
        Tensor all;
        using (no_grad())
        {
            if (prefill > 0)
                foreach (var s in states) mixer.forward(Input(s, 0, prefill));
            all = mixer.forward(Input(chunked, prefill, steps));   // the chunked form: every step at once
        }
        using var allReal = new LeftPadding(zeros(batch, ScalarType.Int64), 1);
        for (int t = 0; t < steps; t++)
        {
            Tensor expected, actual;
            var reference = Input(stepped, prefill + t, 1);
            if (precision == WeightPrecision.Float32)
                using (enable_grad())
                {
                    Assert.Equal(OperatorForm.Recurrent, decoder.FormOf(reference));
                    expected = mixer.forward(reference).detach();
                }
            else
                using (no_grad())
                {
                    reference = reference with { Padding = allReal };
                    Assert.Equal(OperatorForm.Recurrent, decoder.FormOf(reference));
                    expected = mixer.forward(reference);
                }
            using (no_grad())
            {
                var input = Input(fused, prefill + t, 1);
                Assert.Equal(OperatorForm.Fused, decoder.FormOf(input));
                actual = mixer.forward(input);
            }
            string what = $"{config.LayerTypes[layer]} {precision} step {t}";
            AssertClose(actual, expected, 2e-5, $"{what} vs recurrent");
            AssertClose(actual, all.narrow(1, t, 1), 1e-4, $"{what} vs chunked");
        }
        switch (fused, stepped)
        {
            case (RecurrentState a, RecurrentState b):
                for (int i = 0; i < a.Conv.Length; i++) AssertClose(a.Conv[i], b.Conv[i].detach(), 2e-5, $"conv state {i}");
                AssertClose(a.Recurrent, b.Recurrent.detach(), 2e-5, "recurrent state");
                break;
            case (AttentionState a, AttentionState b):
                Assert.Equal(b.Count, a.Count);
                AssertClose(a.Keys, b.Keys.detach(), 2e-5, "keys");
                AssertClose(a.Values, b.Values.detach(), 2e-5, "values");
                Assert.Equal(b.Positions.data<long>().ToArray(), a.Positions.data<long>().ToArray());
                break;
            default:
                throw new InvalidOperationException("unexpected state types");
        }
        foreach (var carry in carries) carry.Dispose();
    }
}
