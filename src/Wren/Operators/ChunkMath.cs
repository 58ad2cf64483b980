using TorchSharp;
using Wren.Common;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>Pieces shared by the chunked forms of the recurrent operators.</summary>
internal static class ChunkMath
{
    /// <summary>
    /// Segment sums of log-decays a [..., Q] → [..., Q, Q] with <c>seg[i, j] = Σ_{j&lt;r≤i} a_r</c> for i ≥ j and
    /// −inf above the diagonal, built by a masked cumulative sum (no exp of a difference of large cumsums).
    /// </summary>
    public static Tensor SegmentSum(Tensor a)
    {
        using var scope = NewDisposeScope();
        long Q = a.shape[^1];
        var expanded = a.unsqueeze(-1).expand([.. a.shape, Q]);             // [..., r, s] = a_r
        var strictlyLower = ones(Q, Q, ScalarType.Bool, a.device).tril(-1);
        var seg = expanded.MaskedFill(strictlyLower.logical_not(), 0).cumsum(-2);
        var lower = ones(Q, Q, ScalarType.Bool, a.device).tril(0);
        return seg.MaskedFill(lower.logical_not(), double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>Zero-pads dimension <paramref name="dim"/> of x up to a multiple of <paramref name="multiple"/>.</summary>
    public static Tensor PadTo(Tensor x, int dim, long multiple)
    {
        long length = x.shape[dim];
        long padded = (length + multiple - 1) / multiple * multiple;
        if (padded == length) return x.alias();
        var shape = x.shape.ToArray();
        shape[dim] = padded - length;
        using var zerosBlock = zeros(shape, x.dtype, x.device);
        return cat([x, zerosBlock], dim);
    }

    /// <summary>Fla's L2 norm: <c>x / sqrt(Σx² + 1e-6)</c> over the last dimension (eps inside the sqrt).</summary>
    public static Tensor L2Norm(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (x * x.square().sum(-1, keepdim: true).Plus(1e-6).rsqrt()).MoveToOuterDisposeScope();
    }
}
