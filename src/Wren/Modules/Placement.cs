using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// Dtype and device new parameters are created with, and how weight matrices are stored (<see cref="WeightPrecision"/>;
/// bf16 and int8 matrices are for inference and are created without gradients).
/// </summary>
public readonly record struct Placement(ScalarType Dtype, Device Device, WeightPrecision Weights = WeightPrecision.Float32)
{
    public static Placement Cpu32 => new(ScalarType.Float32, CPU);

    /// <summary>An uninitialized parameter: every parameter is either initialized or loaded right after construction.</summary>
    public TorchSharp.Modules.Parameter Empty(params long[] shape) => nn.Parameter(empty(shape, Dtype, Device));

    /// <summary>An uninitialized weight matrix [rows, cols] stored as <see cref="Weights"/> says.</summary>
    public TorchSharp.Modules.Parameter EmptyMatrix(long rows, long cols) => Weights == WeightPrecision.Float32
        ? Empty(rows, cols)
        : nn.Parameter(empty([rows, cols], Weights.MatrixType(Dtype), Device), requires_grad: false);

    /// <summary>The int8 block scales of a [rows, cols] matrix (fp32 [rows, ⌈cols/32⌉]), or null for other precisions.</summary>
    public TorchSharp.Modules.Parameter? EmptyScales(long rows, long cols) => Weights == WeightPrecision.Int8
        ? nn.Parameter(empty([rows, Kernels.MatVecInt8.Blocks(cols)], ScalarType.Float32, Device), requires_grad: false)
        : null;
}
