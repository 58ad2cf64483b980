using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary><c>w ⊙ x / sqrt(mean(x²) + eps)</c> over the last dimension; the variance is computed in float32 as in HF.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    public double Eps { get; }

    public RmsNorm(long size, double eps, Placement placement) : base(nameof(RmsNorm))
    {
        weight = placement.Empty(size);
        Eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public override Tensor forward(Tensor x) => Apply(x, weight, Eps);

    public static Tensor Apply(Tensor x, Tensor weight, double eps)
    {
        if (Kernels.DecodeSteps.Applies(x, weight)) return Kernels.DecodeSteps.RmsNorm(x, weight, (float)eps);
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * (x32.square().mean([-1], keepdim: true) + eps).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
