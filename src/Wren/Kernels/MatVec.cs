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

    /// <summary>y [m, out] = x [m, in] · Wᵀ for m ≤ <see cref="MaxInputRows"/> (x of any shape ending in in).</summary>
    public static Tensor Multiply(Tensor weight, Tensor x) => MultiplyMany([weight], x)[0];

    /// <summary>
    /// <c>W_i·x</c> for several weights that read the same input (q/k/v, gate/up) in one fork/join: the rows of all
    /// matrices are split across threads as one run, so each thread streams long runs instead of several short ones.
    /// </summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<Tensor> weights, Tensor x)
    {
        for (int i = 0; i < weights.Count; i++)
            KernelTensors.RequireInPlace(weights[i], $"weight {i}", ScalarType.Float32, weights[i].shape[0], weights[0].shape[1]);
        var wp = weights.Select(w => (IntPtr)KernelTensors.Floats(w)).ToArray();
        return MultiplyRows(weights.Select(w => w.shape[0]).ToArray(), weights[0].shape[1], x,
            (i, v, y, cols, inputs, rows, from, to) => Rows((float*)wp[i], v, y, cols, inputs, rows, from, to));
    }

    /// <summary>Computes rows [first, end) of the output <c>y [inputs, rows]</c> of one matrix from <c>x [inputs, cols]</c>.</summary>
    internal delegate void RowRange(int matrix, float* x, float* y, long cols, long inputs, long rows, long first, long end);

    /// <summary>
    /// The fork/join of the fp32, bf16 and int8 kernels (each checks its own weights first): x [..., cols] fp32 with at
    /// most <see cref="MaxInputRows"/> rows → fp32 outputs [inputs, rows_i], rows split by <see cref="ForRows"/>.
    /// </summary>
    internal static Tensor[] MultiplyRows(long[] rows, long cols, Tensor x, RowRange rowRange)
    {
        KernelTensors.Require(x, "x", ScalarType.Float32, [.. x.shape[..^1], cols]);
        long inputs = x.numel() / cols;
        if (inputs > MaxInputRows) throw new ArgumentException($"x: {inputs} rows, more than the kernel's {MaxInputRows}");
        var outputs = rows.Select(r => empty(inputs, r)).ToArray();
        using var xc = x.reshape(inputs, cols).contiguous();
        float* v = KernelTensors.Floats(xc);
        var op = outputs.Select(o => (IntPtr)KernelTensors.Floats(o)).ToArray();
        ForRows(rows, cols, (i, from, to) => rowRange(i, v, (float*)op[i], cols, inputs, rows[i], from, to));
        return outputs;
    }

    /// <summary>
    /// Runs <paramref name="body"/>(matrix, first row, end row) over the rows of several [rows_i, cols] matrices taken
    /// as one run, in chunks of at least 64 rows that the threads claim as they go (<see cref="Workers.For"/>): a few
    /// chunks per thread keep each stream long, and a thread that is not running costs at most the chunk it holds.
    /// </summary>
    static void ForRows(long[] rows, long cols, Action<int, long, long> body)
    {
        var starts = new long[rows.Length + 1];
        for (int i = 0; i < rows.Length; i++) starts[i + 1] = starts[i] + rows[i];
        long total = starts[^1];
        int threads = total * cols < ParallelThreshold ? 1 : Workers.Count;
        int chunks = (int)Math.Clamp(total / 64, 1, 4 * threads);
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
        // Each weight row comes from memory once; the other input rows reuse it from L1.
        for (long r = first; r < end; r++)
            for (long m = 0; m < inputs; m++) y[m * outputs + r] = Dot(w + r * cols, x + m * cols, cols);
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
