using TorchSharp;
using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// One pre-norm residual layer: <c>h += mixer(RMSNorm(h))</c>, then (for "f" layers, or every layer when
/// intermediate_size &gt; 0) <c>h += ffn(RMSNorm(h))</c>. Submodules are registered under their HF names
/// (input_layernorm, self_attn | mamba | gla | gdn, pre_ffn_layernorm, ffn).
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
            register_module("pre_ffn_layernorm", preFfnNorm);
            ffn = new Ffn(config.HiddenSize, config.FfnSize, config.MlpHiddenAct, placement);
            register_module("ffn", ffn);
        }
    }

    public override Tensor forward(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var h = input.Hidden;
        if (Mixer is not null) h = h + Mixer.forward(input with { Hidden = inputNorm!.forward(h) });
        if (ffn is not null) h = h + ffn.forward(preFfnNorm!.forward(h));
        return h.MoveToOuterDisposeScope();
    }
}
