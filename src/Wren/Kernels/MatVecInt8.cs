using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// Weight-only int8 matrices, symmetric with one fp32 scale per block of <see cref="BlockSize"/> input values (the
/// Q8_0 rule of llama.cpp/GGML, with an fp32 instead of an fp16 scale): for each row r and block b,
/// <c>d = max|w| / 127</c>, <c>q = round(w / d)</c>, so <c>w ≈ d·q</c> with an error of at most d/2 per weight.
/// Values are int8 [out, in]; scales fp32 [out, ⌈in/32⌉] (a last partial block has its own scale). The product
/// <c>y = W·x</c> widens q to fp32 in registers, sums each block's products in fp32 and multiplies by its scale;
/// x and y stay fp32.
/// </summary>
internal static unsafe class MatVecInt8
{
    /// <summary>Input values per scale.</summary>
    public const int BlockSize = 32;

    /// <summary>Rows quantized per pass, so the temporaries stay a few MB whatever the matrix.</summary>
    const long QuantizeRows = 1024;

    /// <summary>Blocks per row: ⌈cols / 32⌉.</summary>
    public static long Blocks(long cols) => (cols + BlockSize - 1) / BlockSize;

    /// <summary>
    /// Quantizes a [rows, cols] floating-point matrix (any dtype, CPU) → int8 values [rows, cols] and fp32 scales
    /// [rows, ⌈cols/32⌉].
    /// </summary>
    public static (Tensor Values, Tensor Scales) Quantize(Tensor weight)
    {
        var values = empty(weight.shape[0], weight.shape[1], ScalarType.Int8);
        var scales = empty(weight.shape[0], Blocks(weight.shape[1]), ScalarType.Float32);
        QuantizeInto(weight, values, scales);
        return (values, scales);
    }

    /// <summary>
    /// <see cref="Quantize"/> into existing int8 <paramref name="values"/> [rows, cols] and fp32
    /// <paramref name="scales"/> [rows, ⌈cols/32⌉] (a model's own parameters: no second copy while loading).
    /// </summary>
    public static void QuantizeInto(Tensor weight, Tensor values, Tensor scales)
    {
        long rows = weight.shape[0], cols = weight.shape[1], blocks = Blocks(cols), padded = blocks * BlockSize;
        using var _ = no_grad();
        for (long start = 0; start < rows; start += QuantizeRows)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(QuantizeRows, rows - start);
            var w = weight.narrow(0, start, count).to(ScalarType.Float32);
            if (padded != cols) w = nn.functional.pad(w, [0, padded - cols]);
            var grouped = w.reshape(count, blocks, BlockSize);
            var d = grouped.abs().amax([-1]) / 127f;                                            // [count, blocks]
            var q = (grouped / d.clamp_min(float.Epsilon).unsqueeze(-1)).round_().clamp_(-127, 127);
            scales.narrow(0, start, count).copy_(d);
            values.narrow(0, start, count).copy_(q.reshape(count, padded).narrow(1, 0, cols));
        }
    }

    /// <summary>
    /// The fp32 matrix [rows, cols] that the <paramref name="values"/> and <paramref name="scales"/> stand for: w = d·q.
    /// </summary>
    public static Tensor Dequantize(Tensor values, Tensor scales)
    {
        long rows = values.shape[0], cols = values.shape[1], blocks = scales.shape[1];
        using var scope = NewDisposeScope();
        var expanded = scales.unsqueeze(-1).expand(rows, blocks, BlockSize).reshape(rows, blocks * BlockSize).narrow(1, 0, cols);
        return (values.to(ScalarType.Float32) * expanded).MoveToOuterDisposeScope();
    }

    /// <summary>True when <see cref="MultiplyMany"/> applies: int8 values [out, in] on the CPU, fp32 input of at most 64 rows.</summary>
    public static bool Applies(Tensor values, Tensor x) =>
        values.dtype == ScalarType.Int8 && x.dtype == ScalarType.Float32
        && values.device.type == DeviceType.CPU && x.device.type == DeviceType.CPU
        && values.dim() == 2 && values.is_contiguous() && x.shape[^1] == values.shape[1]
        && x.numel() / values.shape[1] <= MatVec.MaxInputRows;

    /// <summary>
    /// <c>W_i·x</c> → fp32 [m, out_i] for int8 weights (values [out_i, in], scales [out_i, ⌈in/32⌉]) that read the
    /// same x [m, in].
    /// </summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<(Tensor Values, Tensor Scales)> weights, Tensor x) =>
        MatVec.MultiplyRows(weights.Select((w, i) => Bind(w.Values, w.Scales, $"weight {i}")).ToArray(), x);

    /// <summary>int8 values [out, in] and fp32 scales [out, ⌈in/32⌉] (contiguous, CPU) bound to this kernel
    /// (<see cref="MatVec.Bind"/>).</summary>
    internal static BoundMatrix Bind(Tensor values, Tensor scales, string name)
    {
        long rows = values.shape[0], cols = values.shape[^1];
        KernelTensors.RequireInPlace(values, name, ScalarType.Int8, rows, cols);
        KernelTensors.RequireInPlace(scales, $"{name} scales", ScalarType.Float32, rows, Blocks(cols));
        sbyte* q = KernelTensors.SBytes(values);
        float* s = KernelTensors.Floats(scales);
        return new(rows, cols, (x, y, inputs, first, end) => Rows(q, s, x, y, cols, inputs, rows, first, end));
    }

    /// <summary>One input: fused widen-and-multiply. Several: dequantize each row once into fp32, then the fp32 dot per input.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(sbyte* q, float* s, float* x, float* y, long cols, long inputs, long outputs, long first, long end)
    {
        long blocks = Blocks(cols);
        if (inputs == 1)
        {
            for (long r = first; r < end; r++) y[r] = Dot(q + r * cols, s + r * blocks, x, cols);
            return;
        }
        var buffer = ArrayPool<float>.Shared.Rent((int)cols);
        fixed (float* row = buffer)
            for (long r = first; r < end; r++)
            {
                Widen(q + r * cols, s + r * blocks, row, cols);
                for (long m = 0; m < inputs; m++) y[m * outputs + r] = MatVec.Dot(row, x + m * cols, cols);
            }
        ArrayPool<float>.Shared.Return(buffer);
    }

    /// <summary>Σ_b d_b · Σ_{k∈b} q_k x_k; two accumulators over alternate blocks hide the FMA latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(sbyte* q, float* s, float* x, long cols)
    {
        long full = cols / BlockSize, b = 0;
        float total = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
        {
            var acc0 = Vector512<float>.Zero; var acc1 = acc0;
            for (; b + 2 <= full; b += 2)
            {
                long k = b * BlockSize;
                acc0 = Avx512F.FusedMultiplyAdd(Block512(q + k, x + k), Vector512.Create(s[b]), acc0);
                acc1 = Avx512F.FusedMultiplyAdd(Block512(q + k + 32, x + k + 32), Vector512.Create(s[b + 1]), acc1);
            }
            for (; b < full; b++)
            {
                long k = b * BlockSize;
                acc0 = Avx512F.FusedMultiplyAdd(Block512(q + k, x + k), Vector512.Create(s[b]), acc0);
            }
            total = Vector512.Sum(acc0 + acc1);
        }
        else if (path == KernelPath.Avx2)
        {
            var acc0 = Vector256<float>.Zero; var acc1 = acc0;
            for (; b < full; b++)
            {
                long k = b * BlockSize;
                if ((b & 1) == 0) acc0 = Fma.MultiplyAdd(Block256(q + k, x + k), Vector256.Create(s[b]), acc0);
                else acc1 = Fma.MultiplyAdd(Block256(q + k, x + k), Vector256.Create(s[b]), acc1);
            }
            total = Vector256.Sum(acc0 + acc1);
        }
        for (; b * BlockSize < cols; b++)                                   // scalar path, and a last partial block
        {
            float block = 0;
            for (long k = b * BlockSize; k < Math.Min(cols, (b + 1) * BlockSize); k++) block += q[k] * x[k];
            total += s[b] * block;
        }
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Widen(sbyte* q, float* s, float* row, long cols)
    {
        long full = cols / BlockSize, b = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
            for (; b < full; b++)
            {
                long k = b * BlockSize;
                var d = Vector512.Create(s[b]);
                Avx512F.Store(row + k, Avx512F.Multiply(Load512(q + k), d));
                Avx512F.Store(row + k + 16, Avx512F.Multiply(Load512(q + k + 16), d));
            }
        else if (path == KernelPath.Avx2)
            for (; b < full; b++)
            {
                long k = b * BlockSize;
                var d = Vector256.Create(s[b]);
                for (int j = 0; j < BlockSize; j += 8) Avx.Store(row + k + j, Avx.Multiply(Load256(q + k + j), d));
            }
        for (long k = b * BlockSize; k < cols; k++) row[k] = s[k / BlockSize] * q[k];
    }

    /// <summary>The 32 products q_k·x_k of one block, summed pairwise into 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Block512(sbyte* q, float* x) =>
        Avx512F.FusedMultiplyAdd(Load512(q + 16), Avx512F.LoadVector512(x + 16), Avx512F.Multiply(Load512(q), Avx512F.LoadVector512(x)));

    /// <summary>The 32 products q_k·x_k of one block, summed into 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Block256(sbyte* q, float* x) => Avx.Add(
        Fma.MultiplyAdd(Load256(q + 8), Avx.LoadVector256(x + 8), Avx.Multiply(Load256(q), Avx.LoadVector256(x))),
        Fma.MultiplyAdd(Load256(q + 24), Avx.LoadVector256(x + 24), Avx.Multiply(Load256(q + 16), Avx.LoadVector256(x + 16))));

    /// <summary>16 int8 → 16 fp32 (sign-extend, convert).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Load512(sbyte* p) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Sse2.LoadVector128(p)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Load256(sbyte* p) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));
}
