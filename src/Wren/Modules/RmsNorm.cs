using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using Wren.Operators;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>
/// <c>w ⊙ x / sqrt(mean(x²) + eps)</c> over the last dimension; the variance is computed in float32 as in HF. With
/// <c>groups</c> &gt; 1 each of that many equal slices of the last dimension is normalized on its own (mamba_ssm's
/// RMSNormGated with <c>group_size = size / groups</c>, which Mamba2 uses with <c>group_size = d_inner / ngroups</c>).
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
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
        if (DecodeForm.FusedApplies(x, weight)) return Fused(x, weight, (float)eps);
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * (x32.square().mean([-1], keepdim: true) + eps).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused CPU form (inference, float32): one pass per row over x [..., n] with weight [n] (contiguous). A grouped
    /// weight [G, n] serves x [..., G, n], row r using weight row r mod G (mamba_ssm's per-group norm).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe Tensor Fused(Tensor x, Tensor weight, float eps)
    {
        long n = x.shape[^1], rows = x.numel() / Math.Max(n, 1), weightRows = weight.dim() == 1 ? 1 : x.shape[^2];
        KernelTensors.Require(x, "x", ScalarType.Float32, x.shape);
        KernelTensors.RequireInPlace(weight, "norm weight", ScalarType.Float32, weight.dim() == 1 ? [n] : [weightRows, n]);
        using var xc = x.contiguous();
        var y = empty(x.shape);
        float* px = KernelTensors.Floats(xc), weights = KernelTensors.Floats(weight), py = KernelTensors.Floats(y);
        for (long r = 0; r < rows; r++) NormalizeRow(px + r * n, weights + r % weightRows * n, py + r * n, n, eps);
        return y;
    }

    /// <summary>
    /// The fused decode form over caller-owned rows (ungrouped norm): <c>output[r] = norm(x[r])</c> for
    /// <paramref name="rows"/> rows of <see cref="Weight"/>'s size; with <paramref name="residual"/>, first
    /// <c>x[r] += residual[r]</c> while the row is in L1 (the pre-norm layer's <c>h = h + mixer(…)</c> fused with the next norm).
    /// </summary>
    internal unsafe void NormalizeInto(float* x, float* residual, float* output, long rows)
    {
        long n = weight.shape[0];
        if (Groups != 1) throw new InvalidOperationException("the fused decode form normalizes ungrouped rows only");
        KernelTensors.RequireInPlace(weight, "norm weight", ScalarType.Float32, n);
        float* w = KernelTensors.Floats(weight);
        for (long r = 0; r < rows; r++)
        {
            if (residual != null) MatVec.AddInto(x + r * n, residual + r * n, n);
            NormalizeRow(x + r * n, w, output + r * n, n, (float)Eps);
        }
    }

    /// <summary>One row of n floats: <c>output = weight ⊙ row / sqrt(mean(row²) + eps)</c> (output may be row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void NormalizeRow(float* row, float* weight, float* output, long n, float eps)
    {
        int w = Vector<float>.Count;
        var acc = Vector<float>.Zero;
        float squares = 0;
        long i = 0;
        for (; i + w <= n; i += w) { var v = Vector.Load(row + i); acc += v * v; }
        for (; i < n; i++) squares += row[i] * row[i];
        var scale = new Vector<float>(1f / MathF.Sqrt((Vector.Sum(acc) + squares) / n + eps));
        i = 0;
        for (; i + w <= n; i += w) Vector.Store(Vector.Load(weight + i) * (Vector.Load(row + i) * scale), output + i);
        for (; i < n; i++) output[i] = weight[i] * (row[i] * scale[0]);
    }
}
