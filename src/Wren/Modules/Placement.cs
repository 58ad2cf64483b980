using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>Dtype and device new parameters are created with.</summary>
public readonly record struct Placement(ScalarType Dtype, Device Device)
{
    public static Placement Cpu32 => new(ScalarType.Float32, CPU);

    /// <summary>An uninitialized parameter: every parameter is either initialized or loaded right after construction.</summary>
    public TorchSharp.Modules.Parameter Empty(params long[] shape) => nn.Parameter(empty(shape, Dtype, Device));
}
