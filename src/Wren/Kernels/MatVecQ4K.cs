using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// 4-bit weight matrices in super-blocks of <see cref="SuperBlockSize"/> input values, each of 8 sub-blocks of 32 with a
/// 6-bit scale code sc_j and a 6-bit min code m_j, and per super-block an fp32 scale d and min scale dmin (the Q4_K scheme
/// of llama.cpp/GGML, with fp32 instead of fp16 d and dmin): <c>w ≈ d·sc_j·q − dmin·m_j</c>, q in 0…15. The codes are
/// chosen so that every weight is within half a step of its grid (<c>|w − ŵ| ≤ d·sc_j/2</c>, up to the rounding of d and
/// dmin to fp32): with <c>mn_j = −min(0, min w)</c> and <c>mx_j = max w</c> over sub-block j,
/// <c>dmin = max_j mn_j / 63</c>, <c>m_j = ⌈mn_j / dmin⌉</c> (so the grid starts at or below the sub-block's minimum),
/// <c>span_j = mx_j + dmin·m_j</c>, <c>d = max_j span_j / (15·63)</c>, <c>sc_j = ⌈span_j / (15·d)⌉</c> (so it ends at or
/// above its maximum), codes clamped to 0…63, and <c>q = clamp(round((w + dmin·m_j) / (d·sc_j)), 0, 15)</c> (0 when the
/// step is 0). This is simpler than llama.cpp's <c>make_qkx2_quants</c>, which searches scales for the least squared
/// error and may clip; rounding the codes up keeps the bound for every weight at the cost of a slightly coarser step.
/// Stored as U8 values [out, ⌈in/256⌉·140]: per super-block 140 bytes, bytes 0–5 the eight scale codes (code j in bits
/// 6j…6j+5 of the little-endian 48-bit number), bytes 6–11 the eight min codes likewise, bytes 12–139 the nibbles:
/// 32 bytes per pair of sub-blocks (2c, 2c+1), byte k holding value k of sub-block 2c in its low nibble and of sub-block
/// 2c+1 in its high one (Q4_K's order); and fp32 scales [out, ⌈in/256⌉, 2] holding (d, dmin). That is 4.625 bits per
/// weight (Q4_K: 4.5); fp32 d and dmin because .NET 10 exposes no F16C conversion to widen fp16 in registers, and they are
/// read once per 256 weights. Padding: a row whose width is not a multiple of 256 is quantized as if padded with zeros;
/// the padding's activations are zero, so it adds nothing to a product.
/// The product runs on the int8 machinery: x quantized per block of 32 by the int8 rule, nibbles unpacked to bytes in
/// registers, each sub-block's <c>Σ q·x_q</c> exact in int32 (unsigned × signed bytes), scaled once by
/// <c>d·sc_j·d_x,j</c>; the mins add <c>−dmin·Σ_j m_j·s_j</c> per super-block, <c>s_j = d_x,j·Σ_(k∈j) x_q,k</c>.
/// </summary>
internal static unsafe class MatVecQ4K
{
    /// <summary>Input values per super-block (8 sub-blocks of 32).</summary>
    public const int SuperBlockSize = 256;

    /// <summary>Stored bytes per super-block: 12 bytes of 6-bit codes and 128 of nibbles.</summary>
    public const int SuperBlockBytes = CodeBytes + SuperBlockSize / 2;

    const int CodeBytes = 12, SubBlocks = 8, SubBlockSize = 32;

    /// <summary>Super-blocks per row: ⌈cols / 256⌉.</summary>
    public static long SuperBlocks(long cols) => (cols + SuperBlockSize - 1) / SuperBlockSize;

    /// <summary>Stored bytes per row: 140 per super-block.</summary>
    public static long RowBytes(long cols) => SuperBlocks(cols) * SuperBlockBytes;

    /// <summary>Quantizes a [rows, cols] floating-point matrix (any dtype, CPU) → U8 values [rows, ⌈cols/256⌉·140] and fp32
    /// scales [rows, ⌈cols/256⌉, 2].</summary>
    public static (Tensor Values, Tensor Scales) Quantize(Tensor weight)
    {
        var values = empty(weight.shape[0], RowBytes(weight.shape[1]), ScalarType.Byte);
        var scales = empty(weight.shape[0], SuperBlocks(weight.shape[1]), 2, ScalarType.Float32);
        QuantizeInto(weight, values, scales);
        return (values, scales);
    }

    /// <summary><see cref="Quantize"/> into existing <paramref name="values"/> and <paramref name="scales"/>.</summary>
    public static void QuantizeInto(Tensor weight, Tensor values, Tensor scales)
    {
        long rows = weight.shape[0], cols = weight.shape[1];
        KernelTensors.RequireInPlace(values, "q4k values", ScalarType.Byte, rows, RowBytes(cols));
        KernelTensors.RequireInPlace(scales, "q4k scales", ScalarType.Float32, rows, SuperBlocks(cols), 2);
        byte* q = KernelTensors.Bytes(values);
        float* d = KernelTensors.Floats(scales);
        FourBit.ForEachRow(weight, (w, r) => QuantizeRow(w, cols, q + r * RowBytes(cols), d + r * SuperBlocks(cols) * 2));
    }

    static void QuantizeRow(float* w, long cols, byte* q, float* dm)
    {
        Span<double> mn = stackalloc double[SubBlocks], span = stackalloc double[SubBlocks];
        Span<int> sc = stackalloc int[SubBlocks], m = stackalloc int[SubBlocks];
        for (long t = 0; t < SuperBlocks(cols); t++)
        {
            long start = t * SuperBlockSize;
            float Value(long k) => start + k < cols ? w[start + k] : 0f;
            double mnMax = 0, spanMax = 0;
            for (int j = 0; j < SubBlocks; j++)
            {
                double low = 0;
                for (int k = 0; k < SubBlockSize; k++) low = Math.Min(low, Value(j * SubBlockSize + k));
                mn[j] = -low;
                mnMax = Math.Max(mnMax, mn[j]);
            }
            double dmin = mnMax / 63;
            for (int j = 0; j < SubBlocks; j++)
            {
                m[j] = dmin > 0 ? (int)Math.Min(63, Math.Ceiling(mn[j] / dmin)) : 0;
                double high = double.NegativeInfinity;
                for (int k = 0; k < SubBlockSize; k++) high = Math.Max(high, Value(j * SubBlockSize + k));
                span[j] = Math.Max(0, high + dmin * m[j]);
                spanMax = Math.Max(spanMax, span[j]);
            }
            double d = spanMax / (15 * 63);
            for (int j = 0; j < SubBlocks; j++) sc[j] = d > 0 ? (int)Math.Min(63, Math.Ceiling(span[j] / (15 * d))) : 0;
            float df = (float)d, dminf = (float)dmin;
            dm[2 * t] = df;
            dm[2 * t + 1] = dminf;
            byte* block = q + t * SuperBlockBytes;
            ulong scaleBits = 0, minBits = 0;
            for (int j = 0; j < SubBlocks; j++)
            {
                scaleBits |= (ulong)sc[j] << (6 * j);
                minBits |= (ulong)m[j] << (6 * j);
            }
            for (int i = 0; i < 6; i++)
            {
                block[i] = (byte)(scaleBits >> (8 * i));
                block[6 + i] = (byte)(minBits >> (8 * i));
            }
            for (int j = 0; j < SubBlocks; j++)
            {
                float step = df * sc[j], lower = dminf * m[j];
                for (int k = 0; k < SubBlockSize; k++)
                {
                    int code = step > 0 ? Math.Clamp((int)MathF.Round((Value(j * SubBlockSize + k) + lower) / step), 0, 15) : 0;
                    byte* target = block + CodeBytes + j / 2 * SubBlockSize + k;
                    *target = j % 2 == 0 ? (byte)code : (byte)(*target | code << 4);
                }
            }
        }
    }

    /// <summary>Scale code j (0–7) and min code j of the super-block at <paramref name="block"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (ulong Scales, ulong Mins) Codes(byte* block) =>
        (Unsafe.ReadUnaligned<ulong>(block) & 0xFFFF_FFFF_FFFF, Unsafe.ReadUnaligned<ulong>(block + 6) & 0xFFFF_FFFF_FFFF);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Code(ulong bits, int j) => (int)(bits >> (6 * j)) & 63;

    /// <summary>The fp32 matrix [rows, <paramref name="cols"/>] the values and scales stand for:
    /// <c>w = d·sc_j·q − dmin·m_j</c>.</summary>
    public static Tensor Dequantize(Tensor values, Tensor scales, long cols)
    {
        long rows = values.shape[0];
        KernelTensors.RequireInPlace(values, "q4k values", ScalarType.Byte, rows, RowBytes(cols));
        KernelTensors.RequireInPlace(scales, "q4k scales", ScalarType.Float32, rows, SuperBlocks(cols), 2);
        var output = empty(rows, cols, ScalarType.Float32);
        byte* q = KernelTensors.Bytes(values);
        float* d = KernelTensors.Floats(scales), o = KernelTensors.Floats(output);
        Parallel.For(0, rows, r => DequantizeRow(q + r * RowBytes(cols), d + r * SuperBlocks(cols) * 2, cols, o + r * cols));
        return output;
    }

    /// <summary>One row: <c>o_k = d·sc_j·q_k − dmin·m_j</c> (fp32, in that order) for k &lt; <paramref name="cols"/>.</summary>
    internal static void DequantizeRow(byte* q, float* dm, long cols, float* o)
    {
        for (long t = 0; t < SuperBlocks(cols); t++)
        {
            byte* block = q + t * SuperBlockBytes;
            var (scales, mins) = Codes(block);
            for (long i = 0; i < SuperBlockSize && t * SuperBlockSize + i < cols; i++)
            {
                int j = (int)(i / SubBlockSize);
                byte packed = block[CodeBytes + j / 2 * SubBlockSize + i % SubBlockSize];
                int code = j % 2 == 0 ? packed & 15 : packed >> 4;
                o[t * SuperBlockSize + i] = dm[2 * t] * Code(scales, j) * code - dm[2 * t + 1] * Code(mins, j);
            }
        }
    }

    /// <summary>True when <see cref="Bind"/> applies: U8 values [out, ⌈in/256⌉·140] and 3-D fp32 scales on the CPU, fp32 input
    /// [..., in] of at most 64 rows.</summary>
    public static bool Applies(Tensor values, Tensor scales, Tensor x) =>
        FourBit.Applies(values, scales, x, 3) && values.shape[1] == RowBytes(x.shape[^1]);

    /// <summary><c>W_i·x</c> → fp32 [m, out_i] for q4k weights that read the same x [m, in] (m ≤ 64).</summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<(Tensor Values, Tensor Scales)> weights, Tensor x) =>
        MatVec.MultiplyRows(weights.Select((w, i) => Bind(w.Values, w.Scales, x.shape[^1], $"weight {i}")).ToArray(), x);

    /// <summary>q4k values and scales of a [rows, <paramref name="cols"/>] matrix (contiguous, CPU) bound to this kernel; the input
    /// rows are quantized once per product, padded with zeros to a multiple of 256.</summary>
    internal static BoundMatrix Bind(Tensor values, Tensor scales, long cols, string name)
    {
        long rows = values.shape[0], supers = SuperBlocks(cols);
        KernelTensors.RequireInPlace(values, name, ScalarType.Byte, rows, RowBytes(cols));
        KernelTensors.RequireInPlace(scales, $"{name} scales", ScalarType.Float32, rows, supers, 2);
        byte* q = KernelTensors.Bytes(values);
        float* s = KernelTensors.Floats(scales);
        var input = FourBit.Input.OfThisThread(supers * SuperBlockSize);
        return new(rows, cols,
            (_, y, inputs, first, end) => Rows(q, s, input, y, supers, inputs, rows, first, end),
            (x, inputs) => input.Quantize(x, cols, inputs));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(byte* q, float* s, FourBit.Input input, float* y, long supers, long inputs, long outputs, long first, long end)
    {
        var path = KernelPaths.Active;
        bool vnni = KernelPaths.Vnni && path == KernelPath.Avx2;
        for (long r = first; r < end; r++)
            for (long m = 0; m < inputs; m++)
            {
                byte* row = q + r * supers * SuperBlockBytes;
                float* dm = s + r * supers * 2;
                sbyte* xq = input.Values + m * input.Stride;
                float* dx = input.Scales + m * input.Blocks, xs = input.Sums + m * input.Blocks;
                y[m * outputs + r] = vnni
                    ? Dot<MatVecInt8.VnniDot>(row, dm, xq, dx, xs, supers, path)
                    : Dot<MatVecInt8.MaddDot>(row, dm, xq, dx, xs, supers, path);
            }
    }

    /// <summary>
    /// <c>Σ_t [Σ_j d·sc_j·d_x,j·Σ_(k∈j) q_k·x_q,k − dmin·Σ_j m_j·s_j]</c> over super-blocks t: the 6-bit codes are unpacked
    /// and
    /// each sub-block's factor <c>d·sc_j·d_x,j</c> formed once per super-block; the AVX-512 path takes a pair of sub-blocks
    /// (one 32-byte nibble load) per 512-bit product, the AVX2 path one sub-block per 256-bit product.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot<TDot>(byte* q, float* dm, sbyte* xq, float* dx, float* xs, long supers, KernelPath path)
        where TDot : struct, MatVecInt8.IByteDot
    {
        float* f = stackalloc float[SubBlocks];
        float total = 0;
        var acc512 = Vector512<float>.Zero;
        var acc0 = Vector256<float>.Zero; var acc1 = acc0;
        var mask = Vector256.Create((byte)15);
        for (long t = 0; t < supers; t++)
        {
            byte* block = q + t * SuperBlockBytes, nibbles = block + CodeBytes;
            sbyte* x = xq + t * SuperBlockSize;
            var (scales, mins) = Codes(block);
            float d = dm[2 * t], minSum = 0;
            for (int j = 0; j < SubBlocks; j++)
            {
                f[j] = d * Code(scales, j) * dx[t * SubBlocks + j];
                minSum += Code(mins, j) * xs[t * SubBlocks + j];
            }
            total -= dm[2 * t + 1] * minSum;
            if (path == KernelPath.Avx512)
                for (int c = 0; c < SubBlocks / 2; c++)
                {
                    var packed = Vector256.Load(nibbles + c * SubBlockSize);
                    var codes = Vector512.Create(packed & mask, (packed.AsUInt16() >> 4).AsByte() & mask);
                    acc512 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(FourBit.Pairs512(codes, x + c * 2 * SubBlockSize)),
                                                      Vector512.Create(Vector256.Create(f[2 * c]), Vector256.Create(f[2 * c + 1])), acc512);
                }
            else if (path == KernelPath.Avx2)
                for (int c = 0; c < SubBlocks / 2; c++)
                {
                    var packed = Vector256.Load(nibbles + c * SubBlockSize);
                    var low = TDot.Sum(packed & mask, Vector256.Load(x + c * 2 * SubBlockSize));
                    var high = TDot.Sum((packed.AsUInt16() >> 4).AsByte() & mask, Vector256.Load(x + (c * 2 + 1) * SubBlockSize));
                    acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(low), Vector256.Create(f[2 * c]), acc0);
                    acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(high), Vector256.Create(f[2 * c + 1]), acc1);
                }
            else
                for (int j = 0; j < SubBlocks; j++)
                {
                    int sum = 0;
                    for (int k = 0; k < SubBlockSize; k++)
                    {
                        byte packed = nibbles[j / 2 * SubBlockSize + k];
                        sum += (j % 2 == 0 ? packed & 15 : packed >> 4) * x[j * SubBlockSize + k];
                    }
                    total += f[j] * sum;
                }
        }
        var sum256 = acc512.GetLower() + acc512.GetUpper() + acc0 + acc1;
        return total + MatVecInt8.Sum(sum256);
    }
}
