using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// bf16-weight matrix–vector product <c>y = W·x</c> for decode: W [out, in] stored as bfloat16 (half the bytes of fp32),
/// x and y in fp32. Each weight is widened to fp32 in registers (a bf16 is the top 16 bits of an fp32, so widening is
/// a shift) and products accumulate in fp32, so the only error is the weight's own rounding to bf16.
/// </summary>
internal static unsafe class MatVecBf16
{
    /// <summary>True when <see cref="MultiplyMany"/> applies: contiguous bf16 [out, in] CPU weight, fp32 input of ≤ 64 rows.</summary>
    public static bool Applies(Tensor weight, Tensor x) =>
        weight.dtype == ScalarType.BFloat16 && x.dtype == ScalarType.Float32
        && weight.device.type == DeviceType.CPU && x.device.type == DeviceType.CPU
        && weight.dim() == 2 && weight.is_contiguous() && x.shape[^1] == weight.shape[1]
        && x.numel() / weight.shape[1] <= MatVec.MaxInputRows;

    /// <summary><c>W_i·x</c> → fp32 [m, out_i] for bf16 weights [out_i, in] that read the same x [m, in] (m ≤ 64).</summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<Tensor> weights, Tensor x) =>
        MatVec.MultiplyRows(weights.Select((w, i) => Bind(w, $"weight {i}")).ToArray(), x);

    /// <summary>A contiguous bf16 CPU weight [out, in] bound to this kernel (<see cref="MatVec.Bind"/>).</summary>
    internal static BoundMatrix Bind(Tensor weight, string name)
    {
        long rows = weight.shape[0], cols = weight.shape[^1];
        KernelTensors.RequireInPlace(weight, name, ScalarType.BFloat16, rows, cols);
        ushort* w = KernelTensors.BFloat16Bits(weight);
        return new(rows, cols, (x, y, inputs, first, end) => Rows(w, x, y, cols, inputs, rows, first, end));
    }

    /// <summary>One input: fused widen-and-multiply. Several: widen each row once into fp32, then the fp32 dot per input.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(ushort* w, float* x, float* y, long cols, long inputs, long outputs, long first, long end)
    {
        if (inputs == 1)
        {
            for (long r = first; r < end; r++) y[r] = Dot(w + r * cols, x, cols);
            return;
        }
        var buffer = ArrayPool<float>.Shared.Rent((int)cols);
        fixed (float* row = buffer)
            for (long r = first; r < end; r++)
            {
                Widen(w + r * cols, row, cols);
                for (long m = 0; m < inputs; m++) y[m * outputs + r] = MatVec.Dot(row, x + m * cols, cols);
            }
        ArrayPool<float>.Shared.Return(buffer);
    }

    static float Widen(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(ushort* a, float* x, long cols)
    {
        long k = 0;
        float total = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
        {
            var s0 = Vector512<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 64 <= cols; k += 64)
            {
                s0 = Avx512F.FusedMultiplyAdd(Load512(a + k), Avx512F.LoadVector512(x + k), s0);
                s1 = Avx512F.FusedMultiplyAdd(Load512(a + k + 16), Avx512F.LoadVector512(x + k + 16), s1);
                s2 = Avx512F.FusedMultiplyAdd(Load512(a + k + 32), Avx512F.LoadVector512(x + k + 32), s2);
                s3 = Avx512F.FusedMultiplyAdd(Load512(a + k + 48), Avx512F.LoadVector512(x + k + 48), s3);
            }
            for (; k + 16 <= cols; k += 16) s0 = Avx512F.FusedMultiplyAdd(Load512(a + k), Avx512F.LoadVector512(x + k), s0);
            total = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        else if (path == KernelPath.Avx2)
        {
            var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 32 <= cols; k += 32)
            {
                s0 = Fma.MultiplyAdd(Load256(a + k), Avx.LoadVector256(x + k), s0);
                s1 = Fma.MultiplyAdd(Load256(a + k + 8), Avx.LoadVector256(x + k + 8), s1);
                s2 = Fma.MultiplyAdd(Load256(a + k + 16), Avx.LoadVector256(x + k + 16), s2);
                s3 = Fma.MultiplyAdd(Load256(a + k + 24), Avx.LoadVector256(x + k + 24), s3);
            }
            for (; k + 8 <= cols; k += 8) s0 = Fma.MultiplyAdd(Load256(a + k), Avx.LoadVector256(x + k), s0);
            total = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < cols; k++) total += Widen(a[k]) * x[k];
        return total;
    }

    /// <summary>Widens <paramref name="cols"/> bf16 values to fp32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Widen(ushort* a, float* row, long cols)
    {
        long k = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
            for (; k + 16 <= cols; k += 16) Avx512F.Store(row + k, Load512(a + k));
        else if (path == KernelPath.Avx2)
            for (; k + 8 <= cols; k += 8) Avx.Store(row + k, Load256(a + k));
        for (; k < cols; k++) row[k] = Widen(a[k]);
    }

    /// <summary>16 bf16 → 16 fp32: zero-extend to 32 bits, shift into the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Load512(ushort* p) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Avx.LoadVector256(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Load256(ushort* p) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();
}
