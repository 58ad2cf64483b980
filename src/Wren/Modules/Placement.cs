using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// Dtype and device new parameters are created with, and how weight matrices are stored (<see cref="WeightPrecision"/>;
/// bf16, int8 and 4-bit matrices are for inference and are created without gradients).
/// </summary>
public readonly record struct Placement(ScalarType Dtype, Device Device, WeightPrecision Weights = WeightPrecision.Float32)
{
    public static Placement Cpu32 => new(ScalarType.Float32, CPU);

    /// <summary>An uninitialized parameter: every parameter is either initialized or loaded right after construction.</summary>
    public TorchSharp.Modules.Parameter Empty(params long[] shape) => nn.Parameter(empty(shape, Dtype, Device));

    /// <summary>An uninitialized weight matrix [rows, cols] stored as <see cref="Weights"/> says (4-bit: packed bytes,
    /// <see cref="WeightPrecisions.MatrixShape"/>).</summary>
    public TorchSharp.Modules.Parameter EmptyMatrix(long rows, long cols) => Weights == WeightPrecision.Float32
        ? Empty(rows, cols)
        : nn.Parameter(empty(Weights.MatrixShape(rows, cols), Weights.MatrixType(Dtype), Device), requires_grad: false);

    /// <summary>The fp32 block scales of a [rows, cols] matrix (<see cref="WeightPrecisions.ScaleShape"/>), or null for
    /// unquantized precisions.</summary>
    public TorchSharp.Modules.Parameter? EmptyScales(long rows, long cols) => Weights.ScaleShape(rows, cols) is { } shape
        ? nn.Parameter(empty(shape, ScalarType.Float32, Device), requires_grad: false)
        : null;
}
