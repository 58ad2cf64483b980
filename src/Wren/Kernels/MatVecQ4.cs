using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// 4-bit weight matrices with one fp32 scale per block of <see cref="BlockSize"/> input values (the Q4_0 rule of
/// llama.cpp/GGML, with an fp32 instead of an fp16 scale): for each row r and block b, with m the value of largest |w|
/// (the first one on a tie), <c>d = m / −8</c>, <c>q = clamp(round(w·(1/d)) + 8, 0, 15)</c> (fp32 product, ties to even;
/// q = 8 when d = 0), so <c>w ≈ d·(q − 8)</c>. m itself is stored exactly (q = 0); every other weight is off by at most
/// |d|/2, except those with <c>w/d &gt; 7.5</c> (the opposite sign, within half a step of |m|), which clamp to 15 and are
/// off by at most |d|. Stored as U8 values [out, ⌈in/32⌉·16]: block b's 16 bytes at 16·b, byte j holding
/// <c>q_j | q_(j+16) &lt;&lt; 4</c> (the first 16 values in the low nibbles, as in Q4_0), and fp32 scales [out, ⌈in/32⌉].
/// Padding: a row whose width is not a multiple of 32 is quantized as if padded with zeros, which give q = 8 and stand
/// for exactly 0. That is 5 bits per weight (Q4_0: 4.5): the scales stay fp32 because .NET 10 exposes no F16C
/// conversion (<c>vcvtph2ps</c>) to widen an fp16 scale in registers, and the int8 machinery's scales are fp32.
/// The product runs on the int8 machinery (<see cref="MatVecInt8"/>): x is quantized per block of 32 by its rule, the
/// nibbles are unpacked to bytes in registers, and each block's <c>Σ q·x_q</c> is summed exactly in int32 by unsigned ×
/// signed byte products (<c>vpmaddubsw</c> or AVX-VNNI <c>vpdpbusd</c>, no sign trick: q ≥ 0), then scaled once by
/// <c>d_w·d_x</c>; the offset is one more dot per row, <c>8·Σ_b d_w,b·s_b</c> with <c>s_b = d_x,b·Σ_(k∈b) x_q,k</c>
/// computed once per input row (llama.cpp's Q8_1 sums).
/// </summary>
internal static unsafe class MatVecQ4
{
    /// <summary>Input values per scale.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block: 32 four-bit values.</summary>
    public const int BlockBytes = BlockSize / 2;

    /// <summary>Blocks per row: ⌈cols / 32⌉.</summary>
    public static long Blocks(long cols) => (cols + BlockSize - 1) / BlockSize;

    /// <summary>Stored bytes per row: 16 per block.</summary>
    public static long RowBytes(long cols) => Blocks(cols) * BlockBytes;

    /// <summary>Quantizes a [rows, cols] floating-point matrix (any dtype, CPU) → U8 values [rows, ⌈cols/32⌉·16] and fp32
    /// scales [rows, ⌈cols/32⌉].</summary>
    public static (Tensor Values, Tensor Scales) Quantize(Tensor weight)
    {
        var values = empty(weight.shape[0], RowBytes(weight.shape[1]), ScalarType.Byte);
        var scales = empty(weight.shape[0], Blocks(weight.shape[1]), ScalarType.Float32);
        QuantizeInto(weight, values, scales);
        return (values, scales);
    }

    /// <summary><see cref="Quantize"/> into existing <paramref name="values"/> and <paramref name="scales"/> (a model's own
    /// parameters: no second copy while loading).</summary>
    public static void QuantizeInto(Tensor weight, Tensor values, Tensor scales)
    {
        long rows = weight.shape[0], cols = weight.shape[1];
        KernelTensors.RequireInPlace(values, "q4 values", ScalarType.Byte, rows, RowBytes(cols));
        KernelTensors.RequireInPlace(scales, "q4 scales", ScalarType.Float32, rows, Blocks(cols));
        byte* q = KernelTensors.Bytes(values);
        float* d = KernelTensors.Floats(scales);
        FourBit.ForEachRow(weight, (w, r) => QuantizeRow(w, cols, q + r * RowBytes(cols), d + r * Blocks(cols)));
    }

    static void QuantizeRow(float* w, long cols, byte* q, float* d)
    {
        Span<int> codes = stackalloc int[BlockSize];
        for (long b = 0; b < Blocks(cols); b++)
        {
            long from = b * BlockSize, n = Math.Min(BlockSize, cols - from);
            float max = 0;
            for (long k = 0; k < n; k++) if (MathF.Abs(w[from + k]) > MathF.Abs(max)) max = w[from + k];
            d[b] = max / -8f;
            float id = d[b] != 0 ? 1f / d[b] : 0f;
            for (int k = 0; k < BlockSize; k++)
                codes[k] = k < n ? Math.Clamp((int)MathF.Round(w[from + k] * id) + 8, 0, 15) : 8;
            for (int j = 0; j < BlockBytes; j++) q[b * BlockBytes + j] = (byte)(codes[j] | codes[j + BlockBytes] << 4);
        }
    }

    /// <summary>The fp32 matrix [rows, <paramref name="cols"/>] the values and scales stand for: <c>w = d·(q − 8)</c>.</summary>
    public static Tensor Dequantize(Tensor values, Tensor scales, long cols)
    {
        long rows = values.shape[0];
        KernelTensors.RequireInPlace(values, "q4 values", ScalarType.Byte, rows, RowBytes(cols));
        KernelTensors.RequireInPlace(scales, "q4 scales", ScalarType.Float32, rows, Blocks(cols));
        var output = empty(rows, cols, ScalarType.Float32);
        byte* q = KernelTensors.Bytes(values);
        float* d = KernelTensors.Floats(scales), o = KernelTensors.Floats(output);
        Parallel.For(0, rows, r => DequantizeRow(q + r * RowBytes(cols), d + r * Blocks(cols), cols, o + r * cols));
        return output;
    }

    /// <summary>One row: <c>o_k = d_(k/32)·(q_k − 8)</c> for k &lt; <paramref name="cols"/>.</summary>
    internal static void DequantizeRow(byte* q, float* d, long cols, float* o)
    {
        for (long k = 0; k < cols; k++)
        {
            long b = k / BlockSize, j = k % BlockSize;
            byte packed = q[b * BlockBytes + j % BlockBytes];
            o[k] = d[b] * ((j < BlockBytes ? packed & 15 : packed >> 4) - 8);
        }
    }

    /// <summary>True when <see cref="Bind"/> applies: U8 values [out, ⌈in/32⌉·16] and 2-D fp32 scales on the CPU, fp32 input
    /// [..., in] of at most 64 rows.</summary>
    public static bool Applies(Tensor values, Tensor scales, Tensor x) =>
        FourBit.Applies(values, scales, x, 2) && values.shape[1] == RowBytes(x.shape[^1]);

    /// <summary><c>W_i·x</c> → fp32 [m, out_i] for q4 weights that read the same x [m, in] (m ≤ 64).</summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<(Tensor Values, Tensor Scales)> weights, Tensor x) =>
        MatVec.MultiplyRows(weights.Select((w, i) => Bind(w.Values, w.Scales, x.shape[^1], $"weight {i}")).ToArray(), x);

    /// <summary>
    /// q4 values and scales of a [rows, <paramref name="cols"/>] matrix (contiguous, CPU) bound to this kernel: before each
    /// product the input rows are quantized once by the int8 rule (<see cref="BoundMatrix.Prepare"/>).
    /// </summary>
    internal static BoundMatrix Bind(Tensor values, Tensor scales, long cols, string name)
    {
        long rows = values.shape[0], blocks = Blocks(cols);
        KernelTensors.RequireInPlace(values, name, ScalarType.Byte, rows, RowBytes(cols));
        KernelTensors.RequireInPlace(scales, $"{name} scales", ScalarType.Float32, rows, blocks);
        byte* q = KernelTensors.Bytes(values);
        float* s = KernelTensors.Floats(scales);
        var input = FourBit.Input.OfThisThread(blocks * BlockSize);
        return new(rows, cols,
            (_, y, inputs, first, end) => Rows(q, s, input, y, blocks, inputs, rows, first, end),
            (x, inputs) => input.Quantize(x, cols, inputs));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(byte* q, float* s, FourBit.Input input, float* y, long blocks, long inputs, long outputs, long first, long end)
    {
        var path = KernelPaths.Active;
        bool vnni = KernelPaths.Vnni && path == KernelPath.Avx2;
        for (long r = first; r < end; r++)
            for (long m = 0; m < inputs; m++)
                y[m * outputs + r] = Dot(q + r * blocks * BlockBytes, s + r * blocks, input.Values + m * input.Stride,
                                         input.Scales + m * input.Blocks, input.Sums + m * input.Blocks, blocks, path, vnni);
    }

    /// <summary>
    /// <c>Σ_b d_w,b·d_x,b·Σ_(k∈b) q_k·x_q,k − 8·Σ_b d_w,b·s_b</c> (= Σ_b d_w,b·d_x,b·Σ (q − 8)·x_q). The AVX-512 path
    /// takes
    /// four blocks per step and leaves the rest to the 256-bit loop (AVX-VNNI when <paramref name="vnni"/>); a last partial
    /// block needs no tail: its activations are padded with zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(byte* q, float* s, sbyte* xq, float* dx, float* xs, long blocks, KernelPath path, bool vnni)
    {
        long b = 0;
        float total = 0;
        if (path == KernelPath.Avx512)
        {
            var acc0 = Vector512<float>.Zero; var acc1 = acc0;
            var low = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            var high = Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
            for (; b + 4 <= blocks; b += 4)
            {
                var d = Avx512F.BroadcastVector128ToVector512(s + b) * Avx512F.BroadcastVector128ToVector512(dx + b);
                acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(FourBit.Pairs512(Unpack512(q + b * BlockBytes),
                                                xq + b * BlockSize)), Avx512F.PermuteVar16x32(d, low), acc0);
                acc1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(FourBit.Pairs512(Unpack512(q + (b + 2) * BlockBytes),
                                                xq + (b + 2) * BlockSize)), Avx512F.PermuteVar16x32(d, high), acc1);
            }
            var sum = acc0 + acc1;
            total = MatVecInt8.Sum(sum.GetLower() + sum.GetUpper());
        }
        if (path != KernelPath.Scalar && b < blocks)
        {
            total += vnni ? Dot256<MatVecInt8.VnniDot>(q, s, xq, dx, b, blocks) : Dot256<MatVecInt8.MaddDot>(q, s, xq, dx, b, blocks);
            b = blocks;
        }
        for (; b < blocks; b++)                                                     // the scalar path
        {
            int sum = 0;
            for (int k = 0; k < BlockSize; k++)
            {
                byte packed = q[b * BlockBytes + k % BlockBytes];
                sum += (k < BlockBytes ? packed & 15 : packed >> 4) * xq[b * BlockSize + k];
            }
            total += s[b] * dx[b] * sum;
        }
        return total - 8 * MatVec.Dot(s, xs, blocks);
    }

    /// <summary>Blocks [<paramref name="b"/>, <paramref name="blocks"/>), one per 256-bit vector, two accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot256<TDot>(byte* q, float* s, sbyte* xq, float* dx, long b, long blocks) where TDot : struct, MatVecInt8.IByteDot
    {
        var acc0 = Vector256<float>.Zero; var acc1 = acc0;
        for (; b + 2 <= blocks; b += 2)
        {
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Sum(Unpack256(q + b * BlockBytes),
                                                                         Vector256.Load(xq + b * BlockSize))),
                                   Vector256.Create(s[b] * dx[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Sum(Unpack256(q + (b + 1) * BlockBytes),
                                                                         Vector256.Load(xq + (b + 1) * BlockSize))),
                                   Vector256.Create(s[b + 1] * dx[b + 1]), acc1);
        }
        if (b < blocks)
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Sum(Unpack256(q + b * BlockBytes),
                                                                         Vector256.Load(xq + b * BlockSize))),
                                   Vector256.Create(s[b] * dx[b]), acc0);
        return MatVecInt8.Sum(acc0 + acc1);
    }

    /// <summary>One block's 16 bytes → its 32 codes in order (low nibbles, then high nibbles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> Unpack256(byte* p)
    {
        var packed = Vector128.Load(p);
        var mask = Vector128.Create((byte)15);
        return Vector256.Create(packed & mask, (packed.AsUInt16() >> 4).AsByte() & mask);
    }

    /// <summary>
    /// Two blocks' 32 bytes → their 64 codes in order: the low and high nibbles of both blocks as 128-bit lanes [b lo, b+1 lo,
    /// b hi, b+1 hi], permuted to [b lo, b hi, b+1 lo, b+1 hi].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<byte> Unpack512(byte* p)
    {
        var packed = Vector256.Load(p);
        var mask = Vector256.Create((byte)15);
        var lanes = Vector512.Create(packed & mask, (packed.AsUInt16() >> 4).AsByte() & mask).AsUInt64();
        return Avx512F.PermuteVar8x64(lanes, Vector512.Create(0UL, 1, 4, 5, 2, 3, 6, 7)).AsByte();
    }
}

/// <summary>What the 4-bit kernels (<see cref="MatVecQ4"/>, <see cref="MatVecQ4K"/>) share.</summary>
internal static unsafe class FourBit
{
    /// <summary>Rows quantized per pass, so the fp32 copy of a bf16 source stays a few MB whatever the matrix.</summary>
    const long QuantizeRows = 1024;

    /// <summary>True for U8 values [out, packed] and fp32 scales of <paramref name="scaleDims"/> dimensions on the CPU, and an fp32
    /// CPU input x [..., in] of at most <see cref="MatVec.MaxInputRows"/> rows (the caller checks the packed width).</summary>
    public static bool Applies(Tensor values, Tensor scales, Tensor x, int scaleDims) =>
        values.dtype == ScalarType.Byte && scales.dtype == ScalarType.Float32 && x.dtype == ScalarType.Float32
        && values.device.type == DeviceType.CPU && scales.device.type == DeviceType.CPU && x.device.type == DeviceType.CPU
        && values.dim() == 2 && scales.dim() == scaleDims && values.is_contiguous() && scales.is_contiguous()
        && x.numel() / x.shape[^1] <= MatVec.MaxInputRows;

    /// <summary>A row quantizer: fp32 row <paramref name="w"/> [cols] into row <paramref name="row"/> of the target.</summary>
    public delegate void RowQuantizer(float* w, long row);

    /// <summary>Runs <paramref name="quantize"/> on every row of a [rows, cols] floating-point matrix (any dtype, CPU), each row
    /// as contiguous fp32, rows in parallel.</summary>
    public static void ForEachRow(Tensor weight, RowQuantizer quantize)
    {
        long rows = weight.shape[0], cols = weight.shape[1];
        using var _ = no_grad();
        for (long start = 0; start < rows; start += QuantizeRows)
        {
            long count = Math.Min(QuantizeRows, rows - start);
            using var narrow = weight.narrow(0, start, count);
            using var w = narrow.to(ScalarType.Float32).contiguous();
            KernelTensors.Require(w, "weight", ScalarType.Float32, count, cols);
            float* p = KernelTensors.Floats(w);
            long first = start;
            Parallel.For(0, count, r => quantize(p + r * cols, first + r));
        }
    }

    /// <summary>
    /// Two blocks' unsigned codes (0–15) times their 64 int8 activations, summed per group of four into 16 int32 lanes
    /// (0–7: the first block): <c>vpmaddubsw</c> then <c>vpmaddwd</c> by ones; a pair sum ≤ 2·15·127 fits int16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Pairs512(Vector512<byte> codes, sbyte* xq) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(codes, Vector512.Load(xq)), Vector512<short>.One);

    /// <summary>
    /// The quantized input rows of the products this thread starts (pinned, read by pointer from the kernel threads): per row,
    /// <see cref="Stride"/> int8 values (the int8 rule, <see cref="MatVecInt8.QuantizeActivations(float*, long, sbyte*, float*)"/>,
    /// zero past the input), their block scales d_x and block sums <c>s_b = d_x,b·Σ_(k∈b) x_q,k</c> (<see cref="Blocks"/>
    /// each, zero past the input). One per calling thread and padded width, as the int8 kernel's.
    /// </summary>
    public sealed class Input(long stride)
    {
        [ThreadStatic] static Input? current;
        sbyte[] values = [];
        float[] scales = [], sums = [];

        /// <summary>Values per row: the input width padded to the kernel's block (32 or 256).</summary>
        public long Stride { get; } = stride;
        public long Blocks => Stride / MatVecInt8.BlockSize;
        public sbyte* Values { get; private set; }
        public float* Scales { get; private set; }
        public float* Sums { get; private set; }

        public static Input OfThisThread(long stride)
        {
            if (current is null || current.Stride != stride) current = new Input(stride);
            return current;
        }

        /// <summary>Quantizes the <paramref name="inputs"/> rows of x [inputs, cols] (cols ≤ <see cref="Stride"/>).</summary>
        public void Quantize(float* x, long cols, long inputs)
        {
            if (values.LongLength < inputs * Stride)
            {
                values = GC.AllocateArray<sbyte>((int)(inputs * Stride), pinned: true);
                scales = GC.AllocateArray<float>((int)(inputs * Blocks), pinned: true);
                sums = GC.AllocateArray<float>((int)(inputs * Blocks), pinned: true);
                Values = (sbyte*)Unsafe.AsPointer(ref values[0]);
                Scales = (float*)Unsafe.AsPointer(ref scales[0]);
                Sums = (float*)Unsafe.AsPointer(ref sums[0]);
            }
            long used = MatVecInt8.Blocks(cols);
            for (long m = 0; m < inputs; m++)
            {
                sbyte* q = Values + m * Stride;
                float* d = Scales + m * Blocks, s = Sums + m * Blocks;
                MatVecInt8.QuantizeActivations(x + m * cols, cols, q, d);
                new Span<sbyte>(q + used * MatVecInt8.BlockSize, (int)(Stride - used * MatVecInt8.BlockSize)).Clear();
                new Span<float>(d + used, (int)(Blocks - used)).Clear();
                for (long b = 0; b < Blocks; b++)
                {
                    int sum = 0;
                    for (long k = b * MatVecInt8.BlockSize; k < (b + 1) * MatVecInt8.BlockSize; k++) sum += q[k];
                    s[b] = d[b] * sum;
                }
            }
        }
    }
}
