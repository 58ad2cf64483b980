using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using Wren.Operators;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>
/// Causal depthwise convolution followed by SiLU: <c>y_t[c] = silu(Σ_k w[c,0,k]·x_{t−K+1+k}[c] + b[c])</c>,
/// zero left padding, tap K−1 on the current token. Weight [C, 1, K] (HF conv1d layout).
/// The decode state holds the last K−1 raw inputs per channel, [B, C, K−1].
/// </summary>
internal sealed class ShortConv : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;

    public ShortConv(long channels, int kernel, bool withBias, Placement placement) : base(nameof(ShortConv))
    {
        weight = placement.Empty(channels, 1, kernel);
        bias = withBias ? placement.Empty(channels) : null;
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter? Bias => bias;
    public long Channels => weight.shape[0];
    public int Kernel => (int)weight.shape[2];

    public Tensor NewState(long batch, Device device) => zeros([batch, Channels, Kernel - 1], weight.dtype, device);

    public override Tensor forward(Tensor x) => Forward(x, null, null);

    /// <param name="x">[B, T, C] inputs of this chunk.</param>
    /// <param name="state">[B, C, K−1] inputs before this chunk (zeros at the start); updated in place. Null: zero history, not
    /// kept.</param>
    /// <param name="padding">Left padding of this chunk: padded tokens are skipped, as if absent.</param>
    /// <returns>[B, T, C]; rows at padded positions are finite but meaningless.</returns>
    public Tensor Forward(Tensor x, Tensor? state, LeftPadding? padding)
    {
        long B = x.shape[0], T = x.shape[1], C = x.shape[2];
        int K = Kernel;
        if (DecodeForm.Choose(T, padding is null ? state : null, x, weight) == OperatorForm.Fused) return FusedStep(x, state!, weight,
            bias);
        using var scope = NewDisposeScope();
        var xt = x.transpose(1, 2);                                          // [B, C, T]
        if (padding is not null) xt = xt * padding.Mask.unsqueeze(1).to(xt.dtype);
        var history = state ?? zeros([B, C, K - 1], x.dtype, x.device);
        var seq = cat([history, xt], 2);                                    // [B, C, K−1+T]
        if (padding is not null)
            seq = seq.gather(2, padding.ConvGatherIndex(K - 1, T).unsqueeze(1).expand(B, C, K - 1 + T));
        Tensor y;
        if (T == 1)
            y = (seq * weight.squeeze(1)).sum(-1, keepdim: true);            // [B, C, 1]: cheaper than conv1d for one step
        else
            y = nn.functional.conv1d(seq, weight, null, groups: C);          // [B, C, T]
        if (bias is not null) y = y + bias.unsqueeze(-1);
        state?.copy_(seq.narrow(2, T, K - 1));
        return nn.functional.silu(y).transpose(1, 2).MoveToOuterDisposeScope(); // [B, T, C]
    }

    /// <summary>
    /// The decode step of channels [<paramref name="first"/>, <paramref name="end"/>) of one row, in place: each input
    /// <c>x[c]</c> becomes <c>silu(Σ_k w[c,0,k]·x_{t−K+1+k}[c] + b[c])</c> and enters the history. x points at the row's
    /// channel 0, <paramref name="history"/> at its [C, K−1] block, weight at [C, 1, K], bias at [C] or null. The fused
    /// mixer steps run it on their projected vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Step(float* x, float* history, float* weight, float* bias, long first, long end, int K)
    {
        for (long c = first; c < end; c++)
        {
            float* hist = history + c * (K - 1), w = weight + c * K;
            float input = x[c];
            float sum = w[K - 1] * input + (bias is null ? 0f : bias[c]);
            for (int k = 0; k < K - 1; k++) sum += w[k] * hist[k];
            for (int k = 0; k < K - 2; k++) hist[k] = hist[k + 1];
            if (K > 1) hist[K - 2] = input;
            x[c] = StepMath.Silu(sum);
        }
    }

    /// <summary>
    /// The fused CPU decode step, then SiLU: x [B, 1, C] (any strides), state [B, C, K−1] updated in place, weight
    /// [C, 1, K], bias [C] or null, all float32 on the CPU. Returns [B, 1, C]. Tests hold it to the libtorch path.
    /// </summary>
    internal static unsafe Tensor FusedStep(Tensor x, Tensor state, Tensor weight, Tensor? bias)
    {
        long B = x.shape[0], C = x.shape[^1];
        int K = (int)weight.shape[2];
        KernelTensors.Require(x, "x", ScalarType.Float32, B, 1, C);
        KernelTensors.RequireInPlace(state, "conv state", ScalarType.Float32, B, C, K - 1);
        KernelTensors.RequireInPlace(weight, "conv weight", ScalarType.Float32, C, 1, K);
        if (bias is not null) KernelTensors.RequireInPlace(bias, "conv bias", ScalarType.Float32, C);
        var y = empty(B, 1, C);
        y.copy_(x);
        float* py = KernelTensors.Floats(y), ps = KernelTensors.Floats(state), pw = KernelTensors.Floats(weight);
        float* pb = bias is null ? null : KernelTensors.Floats(bias);
        for (long b = 0; b < B; b++) Step(py + b * C, ps + b * C * (K - 1), pw, pb, 0, C, K);
        return y;
    }
}
