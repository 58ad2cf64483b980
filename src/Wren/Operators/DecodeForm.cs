using TorchSharp;
using Wren.Kernels;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>The three forms of a recurrent computation (fla's <c>chunk</c>, <c>naive</c> recurrent and <c>fused_recurrent</c>).</summary>
internal enum OperatorForm
{
    /// <summary>The parallel form: training, prefill, and any call without a decode state.</summary>
    Chunked,
    /// <summary>Token by token through libtorch ops: a decode step the fused CPU kernels cannot take (autograd, GPU, bf16).</summary>
    Recurrent,
    /// <summary>
    /// A hand-written single-token CPU kernel: a decode step at inference on float32 CPU tensors. For a whole mixer, the
    /// input projection, one pass over the projected vector (conv step, activations, norms, gates, recurrent update,
    /// output norm) and the output projection.
    /// </summary>
    Fused,
}

/// <summary>The one place that chooses between the chunked, recurrent and fused forms.</summary>
internal static class DecodeForm
{
    /// <summary>
    /// A decode step (one new token and a state to continue) takes the fused kernel when <see cref="FusedApplies"/> holds
    /// for the state and <paramref name="operands"/>, else the recurrent form; everything else takes the chunked form.
    /// </summary>
    public static OperatorForm Choose(long newTokens, Tensor? state, params Tensor?[] operands) =>
        newTokens != 1 || state is null ? OperatorForm.Chunked
        : FusedApplies([state, .. operands]) ? OperatorForm.Fused : OperatorForm.Recurrent;

    /// <summary>
    /// The form of a whole mixer's step: <see cref="Choose(long, Tensor?, Tensor?[])"/> for the new tokens of
    /// <paramref name="input"/> and its hidden states, except that a padded decode step takes the recurrent form (the
    /// fused mixer steps assume every row's token is real).
    /// </summary>
    public static OperatorForm Choose(MixerInput input, Tensor? state, params Tensor?[] operands)
    {
        var form = Choose(input.Hidden.shape[1], state, [input.Hidden, .. operands]);
        return form == OperatorForm.Fused && input.Padding is not null ? OperatorForm.Recurrent : form;
    }

    /// <summary>True when the fused CPU kernels apply: inference (no autograd) on CPU float32 tensors.</summary>
    public static bool FusedApplies(params Tensor?[] tensors) =>
        !is_grad_enabled() && tensors.All(t => t is null || (t.device.type == DeviceType.CPU && t.dtype == ScalarType.Float32));

    /// <summary>
    /// True when a forward through a cache takes the fused layer form: the embedding lookup, every layer's norms,
    /// residual adds and FFN, and the head (final norm, lm_head, inverse row norms) run as pointer passes over one
    /// hidden buffer, with the matrix–vector kernels' epilogues in place of libtorch ops (the mixers choose their own
    /// form with <see cref="Choose"/>). It needs inference (no autograd), at most <see cref="MatVec.MaxInputRows"/>
    /// token rows in <paramref name="ids"/> [B, T] on the CPU, float32 activations (weights in any
    /// <see cref="WeightPrecision"/>) and SIMD, and <paramref name="enabled"/> (the model's switch, off for A/B runs
    /// and reference tests).
    /// </summary>
    public static bool FusesLayers(Tensor ids, Placement placement, bool enabled) =>
        enabled && MatVec.IsAccelerated && !is_grad_enabled() && ids.device.type == DeviceType.CPU
        && placement.Dtype == ScalarType.Float32 && ids.numel() <= MatVec.MaxInputRows;
}

/// <summary>A mixer with a fused decode step (<see cref="OperatorForm.Fused"/>): its forward takes the form <see cref="FormOf"/>
/// names.</summary>
internal interface IFusedDecoder
{
    /// <summary>The form the mixer's forward takes for <paramref name="input"/>, as <see cref="DecodeForm"/> chooses it from the
    /// state and every small parameter the fused step reads.</summary>
    OperatorForm FormOf(MixerInput input);
}
