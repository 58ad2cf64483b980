using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// Causal depthwise convolution followed by SiLU: <c>y_t[c] = silu(Σ_k w[c,0,k]·x_{t−K+1+k}[c] + b[c])</c>,
/// zero left padding, tap K−1 on the current token. Weight [C, 1, K] (HF conv1d layout).
/// The decode state holds the last K−1 raw inputs per channel, [B, C, K−1].
/// </summary>
public sealed class ShortConv : nn.Module<Tensor, Tensor>
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
    /// <param name="state">[B, C, K−1] inputs before this chunk (zeros at the start); updated in place. Null: zero history, not kept.</param>
    /// <param name="padding">Left padding of this chunk: padded tokens are skipped, as if absent.</param>
    /// <returns>[B, T, C]; rows at padded positions are finite but meaningless.</returns>
    public Tensor Forward(Tensor x, Tensor? state, LeftPadding? padding)
    {
        long B = x.shape[0], T = x.shape[1], C = x.shape[2];
        int K = Kernel;
        if (T == 1 && state is not null && padding is null && Kernels.DecodeSteps.Applies(x, state, weight))
            return Kernels.DecodeSteps.ConvStep(x, state, weight, bias);
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
}
