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

    public static bool IsAccelerated => Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated;

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
    /// matrices are split evenly across threads, so each thread streams one long run instead of several short ones.
    /// </summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<Tensor> weights, Tensor x)
    {
        long cols = weights[0].shape[1], inputs = x.numel() / cols;
        for (int i = 0; i < weights.Count; i++) KernelTensors.RequireInPlace(weights[i], $"weight {i}", ScalarType.Float32,
                                                                             weights[i].shape[0], cols);
        KernelTensors.Require(x, "x", ScalarType.Float32, [.. x.shape[..^1], cols]);
        if (inputs > MaxInputRows) throw new ArgumentException($"x: {inputs} rows, more than the kernel's {MaxInputRows}");
        var outputs = weights.Select(w => empty(inputs, w.shape[0])).ToArray();
        using var xc = x.reshape(inputs, cols).contiguous();
        float* v = KernelTensors.Floats(xc);
        var starts = new long[weights.Count + 1];
        for (int i = 0; i < weights.Count; i++) starts[i + 1] = starts[i] + weights[i].shape[0];
        var wp = weights.Select(w => (IntPtr)KernelTensors.Floats(w)).ToArray();
        var op = outputs.Select(o => (IntPtr)KernelTensors.Floats(o)).ToArray();
        long total = starts[^1];
        int workers = total * cols < ParallelThreshold ? 1 : Math.Max(1, Math.Min(Workers.Count, (int)(total / 64)));
        Workers.Run(workers, part =>
        {
            long begin = total * part / workers, end = total * (part + 1) / workers;
            for (int i = 0; i < weights.Count; i++)
            {
                long from = Math.Max(begin, starts[i]), to = Math.Min(end, starts[i + 1]);
                if (from < to) Rows((float*)wp[i], v, (float*)op[i], cols, inputs, weights[i].shape[0], from - starts[i], to - starts[i]);
            }
        });
        return outputs;
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
    static float Dot(float* a, float* x, long cols)
    {
        long k = 0;
        float total = 0;
        if (Vector512.IsHardwareAccelerated)
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
        else
        {
            var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 32 <= cols; k += 32)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(x + k), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 8), Vector256.Load(x + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 16), Vector256.Load(x + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 24), Vector256.Load(x + k + 24), s3);
            }
            total = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < cols; k++) total += a[k] * x[k];
        return total;
    }
}
