using TorchSharp;
using Wren.Inference;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Models;

/// <summary>
/// The fused layer form of a cached forward (<see cref="DecodeForm.FusesLayers"/>: one hidden buffer updated in place,
/// norm and residual in one pass, the FFN and the head as matrix–vector passes with epilogues) against the libtorch-op
/// form it replaces (<see cref="HybridForCausalLM.FusedDecode"/> off) and the cache-free parallel forward, in every
/// weight precision, at widths that are not multiples of the vector width or the int8 block.
/// </summary>
[Collection(Kernels.KernelPathCollection.Name)]
public class FusedDecodeTests
{
    /// <summary>Width 40 (a partial int8 block, no vector multiple), relu² "f" layers of 128, meta tokens, two RWKV-7 layers (the
    /// value residual crosses them).</summary>
    static HybridConfig FlashPattern => Config("deltanet", "f", "m2", "f", "a", "f", "rwkv7", "rwkv7") with
    {
        HiddenSize = 40,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        Mamba2HeadDim = 10,
        FfnExpandRatio = 4.0,
        MlpHiddenAct = "relu2",
        NumMemoryTokens = 2,
    };

    /// <summary>
    /// Width 200, a SwiGLU FFN of 330 after every mixer (the mixer's output is added in the pass that normalizes for the
    /// FFN), and a 1000-token tied head: large enough that the products split across threads, so every epilogue runs
    /// chunk by chunk, on chunks that are not multiples of the vector width.
    /// </summary>
    static HybridConfig EveryLayerFfn => Config("a", "m2", "gdn", "mamba1", "f") with
    {
        HiddenSize = 200,
        VocabSize = 1000,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        Mamba2HeadDim = 50,
        FfnExpandRatio = null,
        IntermediateSize = 330,
        TieWordEmbeddings = true,
    };

    public static TheoryData<string, WeightPrecision> Cases()
    {
        var data = new TheoryData<string, WeightPrecision>();
        foreach (var config in new[] { nameof(FlashPattern), nameof(EveryLayerFfn) })
            foreach (var precision in Enum.GetValues<WeightPrecision>()) data.Add(config, precision);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fused_decode_equals_the_libtorch_op_form_and_the_full_forward(string configName, WeightPrecision precision)
    {
        using var scope = NewDisposeScope();
        var config = configName == nameof(FlashPattern) ? FlashPattern : EveryLayerFfn;
        using var fp32 = RandomModel(config, seed: 5);
        using var packed = precision == WeightPrecision.Float32 ? null : WeightPacking.Pack(fp32, precision);
        var model = packed ?? fp32;
        var tokens = RandomTokens(3, 9, config.VocabSize, 7);
        Assert.True(model.FusedDecode);
        var fused = Scoring.Logits(model, tokens, prefill: 4);          // a 4-token fused prefill, then 5 fused steps
        model.FusedDecode = false;
        var reference = Scoring.Logits(model, tokens, prefill: 4);
        model.FusedDecode = true;
        // 4-bit products round each activation row to int8 (the int8 rule): there a 1e-6 fp32 difference between the two forms
        // (summation order) can flip one activation's rounding, which moves a product by d_x·|w| (WeightPrecisionTests), so
        // they are held to 1 % of the logit scale, which a wrong kernel or epilogue exceeds by far; the rest to round-off.
        double tolerance = precision is WeightPrecision.Q4 or WeightPrecision.Q4K ? 1e-2 : 1e-5;
        AssertClose(fused, reference, tolerance, $"{configName} {precision}: fused vs libtorch-op decode");
        // The parallel form dequantizes int8 and 4-bit weights and multiplies fp32 activations, which their kernels need not do
        // (they may quantize the activations too): for them the libtorch-op decode above is the round-off reference.
        if (!precision.IsQuantized())
            AssertClose(fused, Scoring.Logits(model, tokens), 1e-4, $"{configName} {precision}: fused decode vs cache-free forward");
    }

    [Fact]
    public void Fused_decode_holds_on_every_kernel_path()
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel(EveryLayerFfn, seed: 6);
        var tokens = RandomTokens(2, 5, EveryLayerFfn.VocabSize, 8);
        var full = Scoring.Logits(model, tokens);
        foreach (var path in KernelPaths.Available)
        {
            using var forced = KernelPaths.Force(path);
            AssertClose(Scoring.Logits(model, tokens, prefill: 1), full, 1e-4, $"{path}");
        }
    }

    [Fact]
    public void Fused_ffn_layers_create_no_tensors()
    {
        // The libtorch-op form allocates tensors in every FFN layer; the fused form only per step (ids, hidden, logits).
        long Created(int layers, bool fusedDecode)
        {
            using var scope = NewDisposeScope();
            using var model = RandomModel(Config(Enumerable.Repeat("f", layers).ToArray()), seed: 1);
            model.FusedDecode = fusedDecode;
            using var cache = model.NewCache(1, 4);
            using var noGrad = no_grad();
            var ids = RandomTokens(1, 1, model.Config.VocabSize, 2);
            model.forward(new LMInput(ids, cache, LastPositionOnly: true));   // warm: lm_head norms
            var statistics = DisposeScopeManager.Statistics.TensorStatistics;
            long before = statistics.CreatedInScopeCount + statistics.CreatedOutsideScopeCount;
            model.forward(new LMInput(ids, cache, LastPositionOnly: true));
            return statistics.CreatedInScopeCount + statistics.CreatedOutsideScopeCount - before;
        }
        Assert.Equal(Created(1, true), Created(4, true));
        Assert.True(Created(4, false) > Created(1, false), "the reference form should allocate per layer");
    }

    [Fact]
    public void The_fused_layer_form_is_chosen_in_one_place()
    {
        using var scope = NewDisposeScope();
        var one = zeros([1, 1], ScalarType.Int64);
        Assert.False(DecodeForm.FusesLayers(one, Placement.Cpu32, true));                           // autograd on
        using var noGrad = no_grad();
        Assert.Equal(MatVec.IsAccelerated, DecodeForm.FusesLayers(one, Placement.Cpu32, true));
        Assert.Equal(MatVec.IsAccelerated, DecodeForm.FusesLayers(zeros([4, 16], ScalarType.Int64), Placement.Cpu32, true));
        Assert.False(DecodeForm.FusesLayers(zeros([5, 13], ScalarType.Int64), Placement.Cpu32, true));  // 65 rows
        Assert.False(DecodeForm.FusesLayers(one, Placement.Cpu32, false));                          // switched off
        Assert.False(DecodeForm.FusesLayers(one, new Placement(ScalarType.BFloat16, CPU), true));   // bf16 activations
    }
}
