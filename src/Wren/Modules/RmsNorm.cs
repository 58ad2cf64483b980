using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using Wren.Operators;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary><c>w ⊙ x / sqrt(mean(x²) + eps)</c> over the last dimension; the variance is computed in float32 as in HF.</summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
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
        if (DecodeForm.FusedApplies(x, weight)) return Fused(x, weight, (float)eps);
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * (x32.square().mean([-1], keepdim: true) + eps).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>The fused CPU form (inference, float32): one pass per row over x [..., n] with weight [n] (contiguous).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe Tensor Fused(Tensor x, Tensor weight, float eps)
    {
        long n = x.shape[^1], rows = x.numel() / Math.Max(n, 1);
        KernelTensors.Require(x, "x", ScalarType.Float32, x.shape);
        KernelTensors.RequireInPlace(weight, "norm weight", ScalarType.Float32, n);
        using var xc = x.contiguous();
        var y = empty(x.shape);
        float* px = KernelTensors.Floats(xc), pw = KernelTensors.Floats(weight), py = KernelTensors.Floats(y);
        int w = Vector<float>.Count;
        for (long r = 0; r < rows; r++)
        {
            float* row = px + r * n, output = py + r * n;
            var acc = Vector<float>.Zero;
            float squares = 0;
            long i = 0;
            for (; i + w <= n; i += w) { var v = Vector.Load(row + i); acc += v * v; }
            for (; i < n; i++) squares += row[i] * row[i];
            var scale = new Vector<float>(1f / MathF.Sqrt((Vector.Sum(acc) + squares) / n + eps));
            i = 0;
            for (; i + w <= n; i += w) Vector.Store(Vector.Load(pw + i) * (Vector.Load(row + i) * scale), output + i);
            for (; i < n; i++) output[i] = pw[i] * (row[i] * scale[0]);
        }
        return y;
    }
}
