using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// Bias-free projection <c>y = x·Wᵀ</c>, weight [out, in] as in PyTorch. Written here rather than using
/// nn.Linear so that construction allocates without initializing (checkpoints overwrite it) and so that
/// a single row (batch-1 decode) goes through a matrix–vector product (<see cref="Kernels.MatVec"/> for
/// fp32 on CPU), which reads weights several times faster than a one-row GEMM in libtorch.
/// </summary>
public sealed class Linear : nn.Module<Tensor, Tensor>
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

    /// <summary>Several projections of the same input; one fused matrix–vector pass at batch-1 inference.</summary>
    public static Tensor[] ProjectMany(Tensor x, params Linear[] layers)
    {
        bool singleRow = x.numel() == x.shape[^1];
        if (singleRow && !is_grad_enabled() && layers.All(l => Kernels.MatVec.Applies(l.weight, x)))
        {
            var shape = x.shape.ToArray();
            return Kernels.MatVec.MultiplyMany(layers.Select(l => (Tensor)l.weight).ToArray(), x)
                .Select(y => { shape[^1] = y.shape[0]; using (y) return y.view(shape); }).ToArray();
        }
        return layers.Select(l => l.forward(x)).ToArray();
    }

    /// <summary><c>x·Wᵀ</c> for any weight (also the tied lm_head), through mv for a single row at inference.</summary>
    public static Tensor Project(Tensor x, Tensor weight)
    {
        bool singleRow = x.numel() == x.shape[^1];
        if (singleRow && !(is_grad_enabled() && (weight.requires_grad || x.requires_grad)))
        {
            var shape = x.shape.ToArray();
            shape[^1] = weight.shape[0];
            using var row = x.reshape(x.shape[^1]);
            using var y = Kernels.MatVec.Applies(weight, row) ? Kernels.MatVec.Multiply(weight, row) : weight.mv(row);
            return y.view(shape);
        }
        return nn.functional.linear(x, weight, null);
    }
}
