using TorchSharp;
using Wren.Kernels;

namespace Wren.Modules;

/// <summary>
/// How the weight matrices of the projections, the embedding and the lm_head are stored for inference. Norms, meta
/// tokens, biases, convolutions and the recurrent states stay in the placement's dtype (fp32), and so do activations.
/// </summary>
public enum WeightPrecision
{
    /// <summary>Matrices in the placement's dtype (what training uses).</summary>
    Float32,
    /// <summary>bfloat16 matrices, widened to fp32 in the products (<see cref="Kernels.MatVecBf16"/>).</summary>
    BFloat16,
    /// <summary>int8 matrices with an fp32 scale per 32 input values (<see cref="Kernels.MatVecInt8"/>).</summary>
    Int8,
    /// <summary>4-bit matrices with an fp32 scale per 32 input values, Q4_0's rule (<see cref="Kernels.MatVecQ4"/>).</summary>
    Q4,
    /// <summary>4-bit matrices in super-blocks of 256 with 6-bit sub-block scales and mins, Q4_K's scheme
    /// (<see cref="Kernels.MatVecQ4K"/>).</summary>
    Q4K,
}

/// <summary>Names and storage of <see cref="WeightPrecision"/>.</summary>
public static class WeightPrecisions
{
    /// <summary>The CLI and config name: float32, bfloat16, int8, q4 or q4k.</summary>
    public static string Name(this WeightPrecision precision) => precision switch
    {
        WeightPrecision.BFloat16 => "bfloat16",
        WeightPrecision.Int8 => "int8",
        WeightPrecision.Q4 => "q4",
        WeightPrecision.Q4K => "q4k",
        _ => "float32",
    };

    /// <summary>Parses float32, bfloat16, int8, q4 or q4k.</summary>
    public static WeightPrecision Parse(string name) => name switch
    {
        "float32" => WeightPrecision.Float32,
        "bfloat16" => WeightPrecision.BFloat16,
        "int8" => WeightPrecision.Int8,
        "q4" => WeightPrecision.Q4,
        "q4k" => WeightPrecision.Q4K,
        _ => throw new WrenException($"unknown weight precision '{name}' (use float32, bfloat16, int8, q4 or q4k)"),
    };

    /// <summary>True for the precisions whose matrices carry block scales (int8, q4, q4k).</summary>
    public static bool IsQuantized(this WeightPrecision precision) => precision >= WeightPrecision.Int8;

    /// <summary>The dtype a matrix is stored in, given the placement's dtype for unpacked matrices.</summary>
    public static torch.ScalarType MatrixType(this WeightPrecision precision, torch.ScalarType dtype) => precision switch
    {
        WeightPrecision.BFloat16 => torch.ScalarType.BFloat16,
        WeightPrecision.Int8 => torch.ScalarType.Int8,
        WeightPrecision.Q4 or WeightPrecision.Q4K => torch.ScalarType.Byte,
        _ => dtype,
    };

    /// <summary>The stored shape of a [rows, cols] matrix: [rows, cols], or the packed 4-bit bytes [rows, ⌈cols/32⌉·16]
    /// (q4) or [rows, ⌈cols/256⌉·140] (q4k).</summary>
    public static long[] MatrixShape(this WeightPrecision precision, long rows, long cols) => precision switch
    {
        WeightPrecision.Q4 => [rows, MatVecQ4.RowBytes(cols)],
        WeightPrecision.Q4K => [rows, MatVecQ4K.RowBytes(cols)],
        _ => [rows, cols],
    };

    /// <summary>The fp32 scales of a [rows, cols] matrix: [rows, ⌈cols/32⌉] (int8, q4), [rows, ⌈cols/256⌉, 2] (q4k: d and
    /// dmin), or null for unquantized precisions.</summary>
    public static long[]? ScaleShape(this WeightPrecision precision, long rows, long cols) => precision switch
    {
        WeightPrecision.Int8 => [rows, MatVecInt8.Blocks(cols)],
        WeightPrecision.Q4 => [rows, MatVecQ4.Blocks(cols)],
        WeightPrecision.Q4K => [rows, MatVecQ4K.SuperBlocks(cols), 2],
        _ => null,
    };
}
