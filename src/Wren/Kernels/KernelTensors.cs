using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// What the unsafe CPU kernels need before touching a pointer: the tensor's device, dtype, exact shape and, when its
/// memory is read in place, contiguity (as llama.cpp asserts each input dimension before building). Errors name the tensor.
/// </summary>
internal static unsafe class KernelTensors
{
    /// <summary>Throws unless <paramref name="t"/> is a CPU tensor of <paramref name="dtype"/> with exactly <paramref
    /// name="shape"/>.</summary>
    public static void Require(Tensor t, string name, ScalarType dtype, params long[] shape)
    {
        if (t.device.type != DeviceType.CPU || t.dtype != dtype)
            throw new ArgumentException($"{name}: the CPU kernel needs a CPU {dtype} tensor, got {t.device.type} {t.dtype}");
        if (!t.shape.SequenceEqual(shape))
            throw new ArgumentException($"{name}: expected shape [{string.Join(", ", shape)}], got [{string.Join(", ", t.shape)}]");
    }

    /// <summary><see cref="Require"/>, and contiguous: the kernel reads or writes its memory in place.</summary>
    public static void RequireInPlace(Tensor t, string name, ScalarType dtype, params long[] shape)
    {
        Require(t, name, dtype, shape);
        if (!t.is_contiguous()) throw new ArgumentException($"{name}: the CPU kernel reads it in place and needs it contiguous (strides " +
                                                            $"{string.Join(", ", t.stride())})");
    }

    public static float* Floats(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    /// <summary>The raw bits of a bfloat16 tensor (the top 16 bits of each fp32).</summary>
    public static ushort* BFloat16Bits(Tensor t) => (ushort*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    public static byte* Bytes(Tensor t) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    public static sbyte* SBytes(Tensor t) => (sbyte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    public static long* Longs(Tensor t) => (long*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));
}
