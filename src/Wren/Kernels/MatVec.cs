using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// fp32 matrix–vector product <c>y = W·x</c> for batch-1 decode, where the cost is reading W once.
/// Hand-written because libtorch's CPU sgemv reads weights at well under the memory bandwidth (measured
/// ~30 GB/s vs ~70 GB/s for this kernel on a 2-core AVX-512 machine; see docs/benchmarks.md). Rows are split
/// across the intra-op threads (<see cref="Workers"/>).
/// </summary>
internal static unsafe class MatVec
{
    /// <summary>Below this many weights one thread is faster than waking another.</summary>
    const long ParallelThreshold = 1 << 16;

    /// <summary>Below scalar code libtorch's sgemv is faster, so fp32 uses this kernel only with SIMD.</summary>
    public static bool IsAccelerated => KernelPaths.Best != KernelPath.Scalar;

    /// <summary>
    /// Up to this many input rows (a decode batch) share one pass over the weights; measured faster than libtorch's
    /// GEMM up to 64 rows on the reference machine (e.g. 16 rows: 161 vs 67 tokens/s for flash-300m).
    /// </summary>
    public const int MaxInputRows = 64;

    /// <summary>True when <see cref="Multiply"/> applies: float32 CPU tensors, contiguous weights, at most <see cref="MaxInputRows"/> input
    /// rows, SIMD available.</summary>
    public static bool Applies(Tensor weight, Tensor x) =>
        IsAccelerated && weight.dtype == ScalarType.Float32 && x.dtype == ScalarType.Float32
        && weight.device.type == DeviceType.CPU && x.device.type == DeviceType.CPU
        && weight.dim() == 2 && weight.is_contiguous() && x.shape[^1] == weight.shape[1]
        && x.numel() / weight.shape[1] <= MaxInputRows;

    /// <summary>
    /// True when the kernel of the weight's precision applies to <c>x·Wᵀ</c> (its <c>Applies</c>: fp32 with SIMD, bf16,
    /// int8 with its <paramref name="scale"/>, or 4-bit U8 values with theirs: q4 with 2-D scales, q4k with 3-D); then
    /// <see cref="Bind"/> and <see cref="MultiplyRows"/> take it.
    /// </summary>
    internal static bool KernelApplies(Tensor weight, Tensor? scale, Tensor x) => weight.dtype switch
    {
        ScalarType.Float32 => Applies(weight, x),
        ScalarType.BFloat16 => MatVecBf16.Applies(weight, x),
        ScalarType.Int8 => scale is not null && MatVecInt8.Applies(weight, x),
        ScalarType.Byte => scale is not null
                           && (scale.dim() == 3 ? MatVecQ4K.Applies(weight, scale, x) : MatVecQ4.Applies(weight, scale, x)),
        _ => false,
    };

    /// <summary>y [m, out] = x [m, in] · Wᵀ for m ≤ <see cref="MaxInputRows"/> (x of any shape ending in in).</summary>
    public static Tensor Multiply(Tensor weight, Tensor x) => MultiplyMany([weight], x)[0];

    /// <summary>
    /// <c>W_i·x</c> for several weights that read the same input (q/k/v, gate/up) in one fork/join: the rows of all
    /// matrices are split across threads as one run, so each thread streams long runs instead of several short ones.
    /// </summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<Tensor> weights, Tensor x) =>
        MultiplyRows(weights.Select((w, i) => BindFloat32(w, $"weight {i}")).ToArray(), x);

    /// <summary>
    /// Binds a stored weight to the kernel of its precision: fp32 or bf16 [out, in], int8 values [out, in] with their
    /// fp32 block <paramref name="scale"/> [out, ⌈in/32⌉], or 4-bit U8 values of a matrix <paramref name="cols"/> wide
    /// (q4: scales [out, ⌈in/32⌉], <see cref="MatVecQ4"/>; q4k: scales [out, ⌈in/256⌉, 2], <see cref="MatVecQ4K"/>; packed
    /// values do not carry their width). Throws (naming <paramref name="name"/>) unless it is a contiguous CPU matrix of that kind.
    /// </summary>
    internal static BoundMatrix Bind(Tensor weight, Tensor? scale, string name = "weight", long? cols = null) => weight.dtype switch
    {
        ScalarType.Float32 => BindFloat32(weight, name),
        ScalarType.BFloat16 => MatVecBf16.Bind(weight, name),
        ScalarType.Int8 => MatVecInt8.Bind(weight, scale ?? throw new ArgumentException($"{name}: an int8 weight needs its scales"), name),
        ScalarType.Byte when scale is null || cols is null =>
            throw new ArgumentException($"{name}: a 4-bit weight needs its scales and the matrix width"),
        ScalarType.Byte => scale.dim() == 3
            ? MatVecQ4K.Bind(weight, scale, cols.Value, name)
            : MatVecQ4.Bind(weight, scale, cols.Value, name),
        _ => throw new ArgumentException($"{name}: no matrix–vector kernel for {weight.dtype} weights"),
    };

    static BoundMatrix BindFloat32(Tensor weight, string name)
    {
        long rows = weight.shape[0], cols = weight.shape[^1];
        KernelTensors.RequireInPlace(weight, name, ScalarType.Float32, rows, cols);
        float* w = KernelTensors.Floats(weight);
        return new(rows, cols, (x, y, inputs, first, end) => Rows(w, x, y, cols, inputs, rows, first, end));
    }

    /// <summary>
    /// The tensor form of the fp32, bf16, int8 and 4-bit kernels: x [..., cols] fp32 with at most <see cref="MaxInputRows"/>
    /// rows → fp32 outputs [inputs, rows_i] for bound matrices of one width, the rows of all of them split across
    /// threads as one run (<see cref="ForRows"/>). With <paramref name="keepLeading"/> the outputs are
    /// [..., rows_i], x's leading dimensions kept (a projection's shape, with no view to make).
    /// </summary>
    internal static Tensor[] MultiplyRows(IReadOnlyList<BoundMatrix> matrices, Tensor x, bool keepLeading = false)
    {
        long cols = matrices[0].Cols;
        for (int i = 1; i < matrices.Count; i++)
            if (matrices[i].Cols != cols) throw new ArgumentException($"weight {i}: {matrices[i].Cols} columns, expected {cols}");
        KernelTensors.Require(x, "x", ScalarType.Float32, [.. x.shape[..^1], cols]);
        long inputs = Inputs(x.numel() / cols);
        long[] leading = keepLeading ? x.shape[..^1] : [inputs];
        var outputs = matrices.Select(m => empty([.. leading, m.Rows])).ToArray();
        using var xc = x.is_contiguous() ? null : x.contiguous();   // a contiguous x is read in place: no tensor op
        float* v = KernelTensors.Floats(xc ?? x);
        var op = outputs.Select(o => (IntPtr)KernelTensors.Floats(o)).ToArray();
        foreach (var m in matrices) m.Prepare?.Invoke(v, inputs);
        ForRows(matrices.Select(m => m.Rows).ToArray(), cols, (i, from, to) => matrices[i].Kernel(v, (float*)op[i], inputs, from, to));
        return outputs;
    }

    /// <summary>
    /// <c>y_k = x·W_kᵀ</c> into caller-owned buffers, for bound matrices of one shape [rows, cols] that read the same
    /// x [inputs, cols] (inputs ≤ <see cref="MaxInputRows"/>; y_k [inputs, rows], row-major, not overlapping x). The
    /// work is cut by output row: each chunk [first, end) computes those rows of every matrix and then runs
    /// <paramref name="epilogue"/>(first, end), which combines them while they are in cache (silu(g)·u, h += y, y·s),
    /// so the elementwise step costs neither a pass of its own nor another fork/join. One fork/join in all.
    /// </summary>
    internal static void MultiplyInto(BoundMatrix[] matrices, float* x, long inputs, IntPtr[] outputs, Action<long, long>? epilogue)
    {
        long rows = matrices[0].Rows, cols = matrices[0].Cols;
        for (int i = 1; i < matrices.Length; i++)
            if (matrices[i].Rows != rows || matrices[i].Cols != cols)
                throw new ArgumentException($"weight {i}: [{matrices[i].Rows}, {matrices[i].Cols}], expected [{rows}, {cols}]");
        Inputs(inputs);
        foreach (var m in matrices) m.Prepare?.Invoke(x, inputs);
        var (threads, chunks) = Split(rows, rows * cols * matrices.Length);
        Workers.For(rows, chunks, threads, (first, end) =>
        {
            for (int i = 0; i < matrices.Length; i++) matrices[i].Kernel(x, (float*)outputs[i], inputs, first, end);
            epilogue?.Invoke(first, end);
        });
    }

    /// <summary>Epilogue: <c>y += x</c> over <paramref name="n"/> floats (a residual add, exactly libtorch's fp32 add).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AddInto(float* y, float* x, long n)
    {
        int w = Vector<float>.Count;
        long i = 0;
        for (; i + w <= n; i += w) Vector.Store(Vector.Load(y + i) + Vector.Load(x + i), y + i);
        for (; i < n; i++) y[i] += x[i];
    }

    /// <summary>Epilogue: <c>y ⊙= s</c> over <paramref name="n"/> floats (a per-row scale, exactly libtorch's fp32 product).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ScaleInto(float* y, float* s, long n)
    {
        int w = Vector<float>.Count;
        long i = 0;
        for (; i + w <= n; i += w) Vector.Store(Vector.Load(y + i) * Vector.Load(s + i), y + i);
        for (; i < n; i++) y[i] *= s[i];
    }

    static long Inputs(long inputs) =>
        inputs <= MaxInputRows ? inputs : throw new ArgumentException($"x: {inputs} rows, more than the kernel's {MaxInputRows}");

    /// <summary>
    /// Threads and chunks for <paramref name="rows"/> output rows reading <paramref name="weights"/> weights: one thread
    /// below <see cref="ParallelThreshold"/>, else chunks of at least 64 rows that the threads claim as they go
    /// (<see cref="Workers.For"/>): a few chunks per thread keep each stream long, and a thread that is not running costs
    /// at most the chunk it holds.
    /// </summary>
    static (int Threads, int Chunks) Split(long rows, long weights)
    {
        int threads = weights < ParallelThreshold ? 1 : Workers.Count;
        return (threads, (int)Math.Clamp(rows / 64, 1, 4 * threads));
    }

    /// <summary>Runs <paramref name="body"/>(matrix, first row, end row) over the rows of several [rows_i, cols] matrices
    /// taken as one run, split by <see cref="Split"/>.</summary>
    static void ForRows(long[] rows, long cols, Action<int, long, long> body)
    {
        var starts = new long[rows.Length + 1];
        for (int i = 0; i < rows.Length; i++) starts[i + 1] = starts[i] + rows[i];
        long total = starts[^1];
        var (threads, chunks) = Split(total, total * cols);
        Workers.For(total, chunks, threads, (begin, end) =>
        {
            for (int i = 0; i < rows.Length; i++)
            {
                long from = Math.Max(begin, starts[i]), to = Math.Min(end, starts[i + 1]);
                if (from < to) body(i, from - starts[i], to - starts[i]);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot SIMD loop: skip tier-0 code
    static void Rows(float* w, float* x, float* y, long cols, long inputs, long outputs, long first, long end)
    {
        // Each weight row comes from memory once; the other input rows reuse it from L1. With several inputs on AVX-512, two
        // weight rows meet two inputs per pass (Dot2x2: one load per FMA instead of two), each pair summed as Dot sums it.
        long r = first;
        if (inputs >= 2 && KernelPaths.Active == KernelPath.Avx512)
            for (; r + 2 <= end; r += 2)
            {
                long m = 0;
                for (; m + 2 <= inputs; m += 2) Dot2x2(w + r * cols, x + m * cols, cols, y + m * outputs + r, outputs);
                for (; m < inputs; m++)
                {
                    y[m * outputs + r] = Dot(w + r * cols, x + m * cols, cols);
                    y[m * outputs + r + 1] = Dot(w + (r + 1) * cols, x + m * cols, cols);
                }
            }
        for (; r < end; r++)
            for (long m = 0; m < inputs; m++) y[m * outputs + r] = Dot(w + r * cols, x + m * cols, cols);
    }

    /// <summary>
    /// <see cref="Dot"/> of weight rows a and a + cols with inputs x and x + cols, into y[0], y[1] (rows) and y[stride],
    /// y[stride + 1] (the second input): the same four accumulators per pair, the same tail and the same final sums as
    /// <see cref="Dot"/> on AVX-512, so every result is bit-identical to the one-input product (a request decodes the same
    /// alone or in a batch), with 16 accumulators in registers and one load per FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot2x2(float* a, float* x, long cols, float* y, long stride)
    {
        float* b = a + cols, z = x + cols;
        var p0 = Vector512<float>.Zero; var p1 = p0; var p2 = p0; var p3 = p0;      // a·x
        var q0 = p0; var q1 = p0; var q2 = p0; var q3 = p0;                          // a·z
        var r0 = p0; var r1 = p0; var r2 = p0; var r3 = p0;                          // b·x
        var s0 = p0; var s1 = p0; var s2 = p0; var s3 = p0;                          // b·z
        long k = 0;
        for (; k + 64 <= cols; k += 64)
        {
            var wa = Vector512.Load(a + k); var wb = Vector512.Load(b + k); var xa = Vector512.Load(x + k); var xb = Vector512.Load(z + k);
            p0 = Vector512.FusedMultiplyAdd(wa, xa, p0); q0 = Vector512.FusedMultiplyAdd(wa, xb, q0);
            r0 = Vector512.FusedMultiplyAdd(wb, xa, r0); s0 = Vector512.FusedMultiplyAdd(wb, xb, s0);
            wa = Vector512.Load(a + k + 16); wb = Vector512.Load(b + k + 16);
            xa = Vector512.Load(x + k + 16); xb = Vector512.Load(z + k + 16);
            p1 = Vector512.FusedMultiplyAdd(wa, xa, p1); q1 = Vector512.FusedMultiplyAdd(wa, xb, q1);
            r1 = Vector512.FusedMultiplyAdd(wb, xa, r1); s1 = Vector512.FusedMultiplyAdd(wb, xb, s1);
            wa = Vector512.Load(a + k + 32); wb = Vector512.Load(b + k + 32);
            xa = Vector512.Load(x + k + 32); xb = Vector512.Load(z + k + 32);
            p2 = Vector512.FusedMultiplyAdd(wa, xa, p2); q2 = Vector512.FusedMultiplyAdd(wa, xb, q2);
            r2 = Vector512.FusedMultiplyAdd(wb, xa, r2); s2 = Vector512.FusedMultiplyAdd(wb, xb, s2);
            wa = Vector512.Load(a + k + 48); wb = Vector512.Load(b + k + 48);
            xa = Vector512.Load(x + k + 48); xb = Vector512.Load(z + k + 48);
            p3 = Vector512.FusedMultiplyAdd(wa, xa, p3); q3 = Vector512.FusedMultiplyAdd(wa, xb, q3);
            r3 = Vector512.FusedMultiplyAdd(wb, xa, r3); s3 = Vector512.FusedMultiplyAdd(wb, xb, s3);
        }
        for (; k + 16 <= cols; k += 16)
        {
            var wa = Vector512.Load(a + k); var wb = Vector512.Load(b + k); var xa = Vector512.Load(x + k); var xb = Vector512.Load(z + k);
            p0 = Vector512.FusedMultiplyAdd(wa, xa, p0); q0 = Vector512.FusedMultiplyAdd(wa, xb, q0);
            r0 = Vector512.FusedMultiplyAdd(wb, xa, r0); s0 = Vector512.FusedMultiplyAdd(wb, xb, s0);
        }
        float ax = Vector512.Sum((p0 + p1) + (p2 + p3)), az = Vector512.Sum((q0 + q1) + (q2 + q3));
        float bx = Vector512.Sum((r0 + r1) + (r2 + r3)), bz = Vector512.Sum((s0 + s1) + (s2 + s3));
        for (; k < cols; k++)
        {
            ax += a[k] * x[k];
            az += a[k] * z[k];
            bx += b[k] * x[k];
            bz += b[k] * z[k];
        }
        y[0] = ax;
        y[1] = bx;
        y[stride] = az;
        y[stride + 1] = bz;
    }

    /// <summary>
    /// One row at a time, so each thread reads a single sequential stream (interleaving rows split it into
    /// several page-sized streams and halved throughput); four accumulators hide the FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(float* a, float* x, long cols)
    {
        long k = 0;
        float total = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
        {
            var s0 = Vector512<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 64 <= cols; k += 64)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(x + k), s0);
                s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 16), Vector512.Load(x + k + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 32), Vector512.Load(x + k + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 48), Vector512.Load(x + k + 48), s3);
            }
            for (; k + 16 <= cols; k += 16) s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(x + k), s0);
            total = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        else if (path == KernelPath.Avx2)
        {
            var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 32 <= cols; k += 32)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(x + k), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 8), Vector256.Load(x + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 16), Vector256.Load(x + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 24), Vector256.Load(x + k + 24), s3);
            }
            for (; k + 8 <= cols; k += 8) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(x + k), s0);
            total = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < cols; k++) total += a[k] * x[k];
        return total;
    }
}

/// <summary>Rows [first, end) of <c>y [inputs, rows] = x [inputs, cols]·Wᵀ</c> for the one matrix the delegate is bound to.</summary>
internal unsafe delegate void RowKernel(float* x, float* y, long inputs, long first, long end);

/// <summary>
/// A stored weight matrix [Rows, Cols] (fp32, bf16, or int8 with its scales) bound to the row kernel of its precision
/// by <see cref="MatVec.Bind"/>. It holds raw pointers into the weight: bind it for one product, while the weight lives.
/// </summary>
/// <param name="Prepare">Run once per product on the calling thread before the rows are split (the int8 kernel quantizes x
/// [inputs, cols] here), or null.</param>
internal readonly record struct BoundMatrix(long Rows, long Cols, RowKernel Kernel, InputKernel? Prepare = null);

/// <summary>Work on the input x [inputs, cols] of one product, before its rows are split across threads.</summary>
internal unsafe delegate void InputKernel(float* x, long inputs);
