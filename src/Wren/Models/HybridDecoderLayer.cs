using System.Buffers;
using TorchSharp;
using Wren.Kernels;
using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// One pre-norm residual layer: <c>h += mixer(RMSNorm(h))</c>, then (for "f" layers, or every layer when
/// intermediate_size &gt; 0) <c>h += ffn(RMSNorm(h))</c>. Submodules are registered under their HF names
/// (input_layernorm, the mixer's module: self_attn | mamba | gla | gdn | attn | xlstm, pre_ffn_layernorm, ffn; in the released
/// Hymba layout pre_moe_layernorm and moe.experts.0).
/// </summary>
internal sealed class HybridDecoderLayer : nn.Module<MixerInput, Tensor>
{
    public string LayerType { get; }
    public Mixer? Mixer { get; }
    readonly RmsNorm? inputNorm, preFfnNorm;
    readonly Ffn? ffn;

    public HybridDecoderLayer(HybridConfig config, int index, Placement placement) : base(nameof(HybridDecoderLayer))
    {
        var spec = OperatorRegistry.Get(config.LayerTypes[index]);
        LayerType = spec.Name;
        if (spec.Create is not null)
        {
            inputNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, placement);
            register_module("input_layernorm", inputNorm);
            Mixer = spec.Create(config, index, placement);
            register_module(spec.ModuleName!, Mixer);
        }
        if (config.HasFfn(index))
        {
            preFfnNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, placement);
            ffn = new Ffn(config.HiddenSize, config.FfnSize, config.MlpHiddenAct, placement);
            if (config.HymbaLayout)
            {
                register_module("pre_moe_layernorm", preFfnNorm);
                register_module("moe", new SingleExpert(ffn));
            }
            else
            {
                register_module("pre_ffn_layernorm", preFfnNorm);
                register_module("ffn", ffn);
            }
        }
    }

    /// <summary>Hymba's <c>HymbaSparseMoeBlock</c> with num_experts 1, as released: no router, the FFN under <c>experts.0</c>
    /// (modeling_hymba.py). Only the names; the layer calls the FFN directly.</summary>
    sealed class SingleExpert : nn.Module
    {
        public SingleExpert(Ffn expert) : base(nameof(SingleExpert)) =>
            register_module("experts", new TorchSharp.Modules.ModuleList<Ffn>(expert));
    }

    public override Tensor forward(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var h = input.Hidden;
        if (Mixer is not null) h = h + Mixer.forward(input with { Hidden = inputNorm!.forward(h) });
        if (ffn is not null) h = h + ffn.forward(preFfnNorm!.forward(h));
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused form of <see cref="forward"/> (<see cref="DecodeForm.FusesLayers"/>), in place on <c>input.Hidden</c>
    /// h [B, T, H] (contiguous fp32, at most <see cref="MatVec.MaxInputRows"/> rows, a buffer the layer loop owns): the
    /// mixer reads RMSNorm(h) as a new tensor (the only one made here); its output is added into h in the pass that
    /// normalizes h for the FFN (or on its own when there is no FFN), and the FFN adds its down projection straight into
    /// h (<see cref="Ffn.DecodeInto"/>).
    /// </summary>
    internal unsafe void DecodeInPlace(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var h = input.Hidden;
        long width = h.shape[^1], rows = h.numel() / width;
        KernelTensors.RequireInPlace(h, "hidden", ScalarType.Float32, h.shape);
        float* hidden = KernelTensors.Floats(h), mixed = null;
        if (Mixer is not null)
        {
            var normed = empty(h.shape, ScalarType.Float32);
            inputNorm!.NormalizeInto(hidden, null, KernelTensors.Floats(normed), rows);
            var output = Mixer.forward(input with { Hidden = normed });
            if (!output.is_contiguous()) output = output.contiguous();
            KernelTensors.Require(output, "mixer output", ScalarType.Float32, h.shape);
            mixed = KernelTensors.Floats(output);
            if (ffn is null) MatVec.AddInto(hidden, mixed, rows * width);
        }
        if (ffn is null) return;
        var buffer = ArrayPool<float>.Shared.Rent(checked((int)(rows * width)));
        try
        {
            fixed (float* x = buffer)
            {
                preFfnNorm!.NormalizeInto(hidden, mixed, x, rows);
                ffn.DecodeInto(x, hidden, rows);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }
}
