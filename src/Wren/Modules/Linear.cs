using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>
/// Bias-free projection <c>y = x·Wᵀ</c>, weight [out, in] as in PyTorch. Written here rather than using
/// nn.Linear so that construction allocates without initializing (checkpoints overwrite it) and so that
/// a few rows (small-batch decode) go through a matrix–vector kernel (<see cref="Kernels.MatVec"/> for
/// fp32 on CPU), which reads weights several times faster than a skinny GEMM in libtorch.
/// </summary>
internal sealed class Linear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    public Linear(long inFeatures, long outFeatures, Placement placement) : base(nameof(Linear))
    {
        weight = placement.Empty(outFeatures, inFeatures);
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public long InFeatures => weight.shape[1];
    public long OutFeatures => weight.shape[0];

    public override Tensor forward(Tensor x) => Project(x, weight);

    /// <summary>Several projections of the same input; one fused matrix–vector pass at small-batch inference.</summary>
    public static Tensor[] ProjectMany(Tensor x, params Linear[] layers)
    {
        if (!is_grad_enabled() && layers.All(l => Kernels.MatVec.Applies(l.weight, x)))
        {
            var shape = x.shape.ToArray();
            return Kernels.MatVec.MultiplyMany(layers.Select(l => (Tensor)l.weight).ToArray(), x)
                .Select(y => { shape[^1] = y.shape[1]; using (y) return y.view(shape); }).ToArray();
        }
        return layers.Select(l => l.forward(x)).ToArray();
    }

    /// <summary><c>x·Wᵀ</c> for any weight (also the tied lm_head); a few rows at inference go through the matrix–vector kernel.</summary>
    public static Tensor Project(Tensor x, Tensor weight)
    {
        if (is_grad_enabled() && (weight.requires_grad || x.requires_grad)) return nn.functional.linear(x, weight, null);
        var shape = x.shape.ToArray();
        shape[^1] = weight.shape[0];
        if (Kernels.MatVec.Applies(weight, x))
        {
            using var y = Kernels.MatVec.Multiply(weight, x);
            return y.view(shape);
        }
        if (x.numel() == x.shape[^1])
        {
            using var row = x.reshape(x.shape[^1]);
            using var y = weight.mv(row);   // other dtypes and devices: still faster than a one-row GEMM
            return y.view(shape);
        }
        return nn.functional.linear(x, weight, null);
    }
}
