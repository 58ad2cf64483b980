using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// <c>w ⊙ x / sqrt(mean(x²) + eps)</c> over the last dimension; the variance is computed in float32 as in HF. With
/// <c>groups</c> &gt; 1 each of that many equal slices of the last dimension is normalized on its own (mamba_ssm's
/// RMSNormGated with <c>group_size = size / groups</c>, which Mamba2 uses with <c>group_size = d_inner / ngroups</c>).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    public double Eps { get; }

    public RmsNorm(long size, double eps, Placement placement, int groups = 1) : base(nameof(RmsNorm))
    {
        if (groups < 1 || size % groups != 0) throw new WrenException($"RMSNorm of {size} channels cannot split into {groups} groups");
        weight = placement.Empty(size);
        Eps = eps;
        Groups = groups;
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public int Groups { get; }

    public override Tensor forward(Tensor x)
    {
        if (Groups == 1) return Apply(x, weight, Eps);
        using var scope = NewDisposeScope();
        long size = x.shape[^1];
        var grouped = x.reshape([.. x.shape[..^1], Groups, size / Groups]);
        return Apply(grouped, weight.reshape(Groups, size / Groups), Eps).reshape(x.shape).MoveToOuterDisposeScope();
    }

    /// <summary>Normalizes the last dimension of x; <paramref name="weight"/> [.., n] broadcasts over x's leading dimensions.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, double eps)
    {
        if (Kernels.DecodeSteps.Applies(x, weight)) return Kernels.DecodeSteps.RmsNorm(x, weight, (float)eps);
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * (x32.square().mean([-1], keepdim: true) + eps).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
