using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Common;

/// <summary>
/// Tensor ops whose scalar argument must outlive the native call. An implicit <c>double → Scalar</c> conversion makes a
/// Scalar that nothing references once its handle is passed to libtorch, so the GC may finalize (free) it while the native
/// op still reads it — seen as libtorch's "Expected false to be true" from <c>Scalar::toFloat</c> in busy test runs. Here
/// the Scalar is held by a <c>using</c> until the op has returned.
/// </summary>
internal static class TensorScalars
{
    /// <summary><c>x.masked_fill(mask, value)</c> with <paramref name="value"/> kept alive for the call.</summary>
    public static Tensor MaskedFill(this Tensor x, Tensor mask, double value)
    {
        using var scalar = value.ToScalar();
        return x.masked_fill(mask, scalar);
    }

    /// <summary><c>x + value</c> with <paramref name="value"/> and the add's alpha (1) kept alive for the call (seen as
    /// libtorch's "Unknown scalar type" in RWKV-7's L2 norm on the serving engine's thread).</summary>
    public static Tensor Plus(this Tensor x, double value)
    {
        using var scalar = value.ToScalar();
        using var one = 1.ToScalar();
        return x.add(scalar, one);
    }
}
