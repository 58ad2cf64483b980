using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// Weight-only int8 matrices, symmetric with one fp32 scale per block of <see cref="BlockSize"/> input values (the
/// Q8_0 rule of llama.cpp/GGML, with an fp32 instead of an fp16 scale): for each row r and block b,
/// <c>d = max|w| / 127</c>, <c>q = round(w / d)</c>, so <c>w ≈ d·q</c> with an error of at most d/2 per weight.
/// Values are int8 [out, in]; scales fp32 [out, ⌈in/32⌉] (a last partial block has its own scale).
/// The product <c>y = W·x</c> works like llama.cpp's Q8_0×Q8_0 dot (<c>ggml_vec_dot_q8_0_q8_0</c>): each row of x is
/// quantized once per call with the same block rule (<see cref="QuantizeActivations"/>), each block's 32 byte
/// products are summed exactly in int32, and the sum is converted to fp32 and multiplied by <c>d_w·d_x</c>. Reading
/// a byte per weight then costs a few integer instructions per 64 weights instead of a widening to fp32 per 16; the
/// activation rounding adds at most <c>(d_x/2)·Σ_b|w|</c> per block (docs/precision.md). x and y stay fp32.
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
    /// same x [m, in] (m ≤ 64), which is quantized once for all of them.
    /// </summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<(Tensor Values, Tensor Scales)> weights, Tensor x) =>
        MatVec.MultiplyRows(weights.Select((w, i) => Bind(w.Values, w.Scales, $"weight {i}")).ToArray(), x);

    /// <summary>
    /// int8 values [out, in] and fp32 scales [out, ⌈in/32⌉] (contiguous, CPU) bound to this kernel (<see cref="MatVec.Bind"/>):
    /// before each product the fp32 input rows are quantized once (<see cref="BoundMatrix.Prepare"/>, on the calling thread),
    /// and every chunk of rows then multiplies bytes with bytes.
    /// </summary>
    internal static BoundMatrix Bind(Tensor values, Tensor scales, string name)
    {
        long rows = values.shape[0], cols = values.shape[^1], blocks = Blocks(cols), stride = blocks * BlockSize;
        KernelTensors.RequireInPlace(values, name, ScalarType.Int8, rows, cols);
        KernelTensors.RequireInPlace(scales, $"{name} scales", ScalarType.Float32, rows, blocks);
        sbyte* q = KernelTensors.SBytes(values);
        float* s = KernelTensors.Floats(scales);
        var input = QuantizedInput.OfThisThread(stride, blocks);
        return new(rows, cols,
            (_, y, inputs, first, end) => Rows(q, s, input.Values, input.Scales, y, cols, inputs, rows, first, end),
            (x, inputs) =>
            {
                input.Reserve(inputs);
                for (long m = 0; m < inputs; m++)
                    QuantizeActivations(x + m * cols, cols, input.Values + m * stride, input.Scales + m * blocks);
            });
    }

    /// <summary>
    /// The quantized input rows of the products this thread starts (pinned, so the kernel threads read them by pointer): one
    /// per calling thread, since the fork/join is not reentrant and every matrix of one product reads the same x.
    /// </summary>
    sealed class QuantizedInput(long stride, long blocks)
    {
        [ThreadStatic] static QuantizedInput? current;
        readonly long stride = stride;
        sbyte[] values = [];
        float[] scales = [];

        public sbyte* Values { get; private set; }
        public float* Scales { get; private set; }

        public static QuantizedInput OfThisThread(long stride, long blocks)
        {
            if (current is null || current.stride != stride) current = new QuantizedInput(stride, blocks);
            return current;
        }

        public void Reserve(long inputs)
        {
            if (values.LongLength >= inputs * stride) return;
            values = GC.AllocateArray<sbyte>((int)(inputs * stride), pinned: true);
            scales = GC.AllocateArray<float>((int)(inputs * blocks), pinned: true);
            Values = (sbyte*)Unsafe.AsPointer(ref values[0]);
            Scales = (float*)Unsafe.AsPointer(ref scales[0]);
        }
    }

    /// <summary>
    /// Quantizes one activation row x [cols] per block of 32 with llama.cpp's <c>quantize_row_q8_0</c> rule:
    /// <c>d = max|x| / 127</c>, <c>q = round(x · (1/d))</c> (fp32 product, rounded to nearest even; q = 0 when d = 0) →
    /// q [⌈cols/32⌉·32] (a last partial block padded with zeros) and d [⌈cols/32⌉]. Every path gives the same bits.
    /// </summary>
    internal static void QuantizeActivations(ReadOnlySpan<float> x, Span<sbyte> q, Span<float> d)
    {
        long blocks = Blocks(x.Length);
        if (q.Length < blocks * BlockSize || d.Length < blocks)
            throw new ArgumentException($"{x.Length} activations need {blocks * BlockSize} values and {blocks} scales");
        fixed (float* xp = x) fixed (sbyte* qp = q) fixed (float* dp = d) QuantizeActivations(xp, x.Length, qp, dp);
    }

    /// <summary>The pointer form of <see cref="QuantizeActivations(ReadOnlySpan{float}, Span{sbyte}, Span{float})"/> (q: ⌈cols/32⌉·32
    /// values, d: ⌈cols/32⌉ scales); also the activation rule of the 4-bit kernels (<see cref="MatVecQ4"/>,
    /// <see cref="MatVecQ4K"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeActivations(float* x, long cols, sbyte* q, float* d)
    {
        long full = cols / BlockSize, b = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
            for (; b < full; b++)
            {
                long k = b * BlockSize;
                var v0 = Vector512.Load(x + k); var v1 = Vector512.Load(x + k + 16);
                var m = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1));
                d[b] = Max(Vector256.Max(m.GetLower(), m.GetUpper())) / 127f;
                var id = Vector512.Create(Reciprocal(d[b]));
                Avx512F.ConvertToVector128SByte(Avx512F.ConvertToVector512Int32(v0 * id)).Store(q + k);
                Avx512F.ConvertToVector128SByte(Avx512F.ConvertToVector512Int32(v1 * id)).Store(q + k + 16);
            }
        else if (path == KernelPath.Avx2)
            for (; b < full; b++)
            {
                long k = b * BlockSize;
                var v0 = Vector256.Load(x + k); var v1 = Vector256.Load(x + k + 8);
                var v2 = Vector256.Load(x + k + 16); var v3 = Vector256.Load(x + k + 24);
                var m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)),
                                      Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
                d[b] = Max(m) / 127f;
                var id = Vector256.Create(Reciprocal(d[b]));
                // cvtps2dq rounds to nearest even; packing interleaves 128-bit lanes, the permute restores the order
                var s01 = Avx2.PackSignedSaturate(Avx.ConvertToVector256Int32(v0 * id), Avx.ConvertToVector256Int32(v1 * id));
                var s23 = Avx2.PackSignedSaturate(Avx.ConvertToVector256Int32(v2 * id), Avx.ConvertToVector256Int32(v3 * id));
                var packed = Avx2.PackSignedSaturate(s01, s23).AsInt32();
                Avx2.PermuteVar8x32(packed, Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte().Store(q + k);
            }
        for (; b * BlockSize < cols; b++)                                   // scalar path, and a last partial block
        {
            long from = b * BlockSize, to = Math.Min(cols, from + BlockSize);
            float amax = 0;
            for (long k = from; k < to; k++) amax = MathF.Max(amax, MathF.Abs(x[k]));
            d[b] = amax / 127f;
            float id = Reciprocal(d[b]);
            for (long k = from; k < from + BlockSize; k++) q[k] = k < to ? (sbyte)MathF.Round(x[k] * id) : (sbyte)0;
        }
    }

    static float Reciprocal(float d) => d != 0 ? 1f / d : 0f;

    /// <summary>The largest of 8 non-negative lanes; NaN if any is NaN (Max, unlike MaxNative, propagates it to d and y).</summary>
    static float Max(Vector256<float> m)
    {
        var m4 = Vector128.Max(m.GetLower(), m.GetUpper());
        return MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
    }

    /// <summary>
    /// Rows [first, end) of y [inputs, outputs]: each weight row is read from memory once and reused from L1 by every input.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(sbyte* q, float* s, sbyte* xq, float* dx, float* y, long cols, long inputs, long outputs, long first, long end)
    {
        long blocks = Blocks(cols), stride = blocks * BlockSize;
        var path = KernelPaths.Active;
        bool vnni = KernelPaths.Vnni && path == KernelPath.Avx2;
        for (long r = first; r < end; r++)
            for (long m = 0; m < inputs; m++)
                y[m * outputs + r] = Dot(q + r * cols, s + r * blocks, xq + m * stride, dx + m * blocks, cols, path, vnni);
    }

    /// <summary>
    /// Σ_b d_w,b·d_x,b · Σ_{k∈b} q_k·x_k: exact int32 block sums, converted and scaled in fp32. The AVX-512 path takes four
    /// blocks per step (two accumulators hide the FMA latency) and leaves a last full block to the 256-bit loop, which
    /// uses AVX-VNNI when <paramref name="vnni"/>. Rows of 1024 inputs are 1 KB, so the per-row work (the path, the final
    /// horizontal sum) is kept short.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(sbyte* q, float* s, sbyte* xq, float* dx, long cols, KernelPath path, bool vnni)
    {
        long full = cols / BlockSize, b = 0;
        float total = 0;
        if (path == KernelPath.Avx512)
        {
            var acc0 = Vector512<float>.Zero; var acc1 = acc0;
            var low = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            var high = Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
            for (; b + 4 <= full; b += 4)
            {
                long k = b * BlockSize;
                // d_w·d_x of the 4 blocks in lanes 0–3 (of every 128-bit lane)
                var d = Avx512F.BroadcastVector128ToVector512(s + b) * Avx512F.BroadcastVector128ToVector512(dx + b);
                acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Pairs512(q + k, xq + k)),
                                                Avx512F.PermuteVar16x32(d, low), acc0);
                acc1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Pairs512(q + k + 64, xq + k + 64)),
                                                Avx512F.PermuteVar16x32(d, high), acc1);
            }
            if (b + 2 <= full)
            {
                var d = Vector512.Create(Vector256.Create(s[b] * dx[b]), Vector256.Create(s[b + 1] * dx[b + 1]));
                acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Pairs512(q + b * BlockSize, xq + b * BlockSize)), d, acc0);
                b += 2;
            }
            var sum = acc0 + acc1;
            total = Sum(sum.GetLower() + sum.GetUpper());
        }
        if (path != KernelPath.Scalar && b < full)
        {
            total += vnni
                ? Dot256<VnniDot>(q, s, xq, dx, b, full)
                : Dot256<MaddDot>(q, s, xq, dx, b, full);
            b = full;
        }
        for (; b * BlockSize < cols; b++)                                   // scalar path, and a last partial block
        {
            int sum = 0;
            for (long k = b * BlockSize; k < Math.Min(cols, (b + 1) * BlockSize); k++) sum += q[k] * xq[k];
            total += s[b] * dx[b] * sum;
        }
        return total;
    }

    /// <summary>Full blocks [<paramref name="b"/>, <paramref name="full"/>), one per 256-bit vector, two accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot256<TDot>(sbyte* q, float* s, sbyte* xq, float* dx, long b, long full) where TDot : struct, IByteDot
    {
        var acc0 = Vector256<float>.Zero; var acc1 = acc0;
        for (; b + 2 <= full; b += 2)
        {
            long k = b * BlockSize;
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Block256<TDot>(q + k, xq + k)), Vector256.Create(s[b] * dx[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Block256<TDot>(q + k + 32, xq + k + 32)),
                                   Vector256.Create(s[b + 1] * dx[b + 1]), acc1);
        }
        if (b < full)
        {
            long k = b * BlockSize;
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Block256<TDot>(q + k, xq + k)), Vector256.Create(s[b] * dx[b]), acc0);
        }
        return Sum(acc0 + acc1);
    }

    /// <summary>The sum of 8 lanes in three steps (<c>Vector256.Sum</c> emits a longer sequence).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Sum(Vector256<float> v) => Vector128.Sum(v.GetLower() + v.GetUpper());

    /// <summary>
    /// Two blocks' byte products, summed per group of four into 16 int32 lanes (0–7: the first block). The unsigned × signed
    /// multiply takes |w| and x with w's sign (llama.cpp's mul_sum_i8_pairs); |w| ≤ 127, so a pair sum ≤ 2·127² fits int16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> Pairs512(sbyte* q, sbyte* xq)
    {
        var w = Vector512.Load(q); var x = Vector512.Load(xq);
        var signed = Vector512.ConditionalSelect(Vector512.LessThan(w, Vector512<sbyte>.Zero), -x, x);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(w), signed), Vector512<short>.One);
    }

    /// <summary>One block's 32 byte products, summed per group of four into 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Block256<TDot>(sbyte* q, sbyte* xq) where TDot : struct, IByteDot
    {
        var w = Vector256.Load(q);
        return TDot.Sum(Avx2.Abs(w), Avx2.Sign(Vector256.Load(xq), w));
    }

    /// <summary>Σ of four u8·s8 products per int32 lane, by one of two instruction sequences with the same result.</summary>
    internal interface IByteDot
    {
        static abstract Vector256<int> Sum(Vector256<byte> unsigned, Vector256<sbyte> signed);
    }

    /// <summary>AVX-VNNI <c>vpdpbusd</c>.</summary>
    internal struct VnniDot : IByteDot
    {
        public static Vector256<int> Sum(Vector256<byte> unsigned, Vector256<sbyte> signed) =>
            AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, unsigned, signed);
    }

    /// <summary>AVX2 <c>vpmaddubsw</c> (pairs into int16) then <c>vpmaddwd</c> by ones (pairs of pairs into int32).</summary>
    internal struct MaddDot : IByteDot
    {
        public static Vector256<int> Sum(Vector256<byte> unsigned, Vector256<sbyte> signed) =>
            Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256<short>.One);
    }
}
