using TorchSharp;

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
}

/// <summary>Names and storage of <see cref="WeightPrecision"/>.</summary>
public static class WeightPrecisions
{
    /// <summary>The CLI and config name: float32, bfloat16 or int8.</summary>
    public static string Name(this WeightPrecision precision) => precision switch
    {
        WeightPrecision.BFloat16 => "bfloat16",
        WeightPrecision.Int8 => "int8",
        _ => "float32",
    };

    /// <summary>Parses float32, bfloat16 or int8.</summary>
    public static WeightPrecision Parse(string name) => name switch
    {
        "float32" => WeightPrecision.Float32,
        "bfloat16" => WeightPrecision.BFloat16,
        "int8" => WeightPrecision.Int8,
        _ => throw new WrenException($"unknown weight precision '{name}' (use float32, bfloat16 or int8)"),
    };

    /// <summary>The dtype a matrix is stored in, given the placement's dtype for unpacked matrices.</summary>
    public static torch.ScalarType MatrixType(this WeightPrecision precision, torch.ScalarType dtype) => precision switch
    {
        WeightPrecision.BFloat16 => torch.ScalarType.BFloat16,
        WeightPrecision.Int8 => torch.ScalarType.Int8,
        _ => dtype,
    };
}
