using System.Numerics;
using System.Runtime.CompilerServices;
using Wren.Kernels;

namespace Wren.Operators;

/// <summary>
/// Pointer-level pieces of the fused decode steps (one token, CPU, float32), each matching the libtorch op it replaces
/// in the recurrent form: the activations, fla's L2 norm, RMSNorm of one row, and the split of per-head work over the
/// kernel threads.
/// </summary>
internal static unsafe class StepMath
{
    /// <summary>Below this many state elements per step one thread beats waking another (as in the matrix–vector kernels).</summary>
    const long ParallelThreshold = 1 << 16;

    /// <summary>Chunks per thread: a thread that is descheduled by another process holds up at most this fraction of its share.</summary>
    const int ChunksPerThread = 4;

    /// <summary>
    /// Runs <paramref name="body"/>(begin, end) over [0, <paramref name="units"/>) (heads, or KV heads) in chunks of whole
    /// units claimed by the kernel threads from an atomic counter (<see cref="Workers.For"/>), on one thread when the
    /// step touches fewer than 2^16 state elements (<paramref name="workPerUnit"/> each).
    /// </summary>
    public static void ForUnits(long units, long workPerUnit, Action<long, long> body)
    {
        int threads = units * workPerUnit >= ParallelThreshold ? Workers.Count : 1;
        Workers.For(units, (int)Math.Min(units, (long)ChunksPerThread * threads), threads, body);
    }

    /// <summary>torch's silu: <c>x·σ(x)</c>.</summary>
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    /// <summary>torch's sigmoid: <c>1 / (1 + e^(−x))</c>.</summary>
    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>torch's logsigmoid: <c>log σ(x) = min(x, 0) − log(1 + e^(−|x|))</c> (in double: no log1p in MathF).</summary>
    public static float LogSigmoid(float x) => MathF.Min(x, 0f) - (float)Math.Log(1.0 + Math.Exp(-Math.Abs(x)));

    /// <summary>torch's softplus with β = 1 and threshold 20: x above 20, else <c>log(1 + eˣ)</c> (in double: no log1p in
    /// MathF).</summary>
    public static float Softplus(float x) => x > 20f ? x : (float)Math.Log(1.0 + Math.Exp(x));

    /// <summary>Σ x² over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumOfSquares(float* x, long n)
    {
        int w = Vector<float>.Count;
        var acc = Vector<float>.Zero;
        float tail = 0;
        long i = 0;
        for (; i + w <= n; i += w) { var v = Vector.Load(x + i); acc += v * v; }
        for (; i < n; i++) tail += x[i] * x[i];
        return Vector.Sum(acc) + tail;
    }

    /// <summary>In place, fla's L2 norm then a scale: <c>x ← (x / sqrt(Σx² + 1e-6))·scale</c> (as <see cref="ChunkMath.L2Norm"/>).
    /// </summary>
    public static void L2Normalize(float* x, long n, float scale)
    {
        float r = 1f / MathF.Sqrt(SumOfSquares(x, n) + 1e-6f);
        for (long i = 0; i < n; i++) x[i] = x[i] * r * scale;
    }

    /// <summary>
    /// In place, RMSNorm of one row: <c>x ← w ⊙ (x / sqrt(mean(x²) + eps))</c> (the variance in float32, as HF and
    /// <see cref="Modules.RmsNorm"/>).
    /// </summary>
    public static void RmsNormalize(float* x, float* weight, long n, float eps)
    {
        float r = 1f / MathF.Sqrt(SumOfSquares(x, n) / n + eps);
        for (long i = 0; i < n; i++) x[i] = weight[i] * (x[i] * r);
    }
}
