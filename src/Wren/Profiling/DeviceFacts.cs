using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>
/// What this device's memory system and kernels delivered when first measured (cached per device by
/// <see cref="DeviceProfile"/>): a description of the machine. Rooflines do not use the cached copy bandwidth, which moves
/// from day to day on a shared machine; they use the bandwidth measured alternately with the runs they normalize
/// (<see cref="InterleavedBandwidth"/>).
/// </summary>
/// <param name="CopyBytesPerSecond">Memory copy bandwidth, bytes read + written per second, all cores.</param>
/// <param name="MatmulFlopsPerSecond">fp32 2048³ matrix product through libtorch.</param>
/// <param name="MatVecBytesPerSecond">Weight bytes per second read by Wren's fp32 matrix–vector kernel (batch-1 decode).</param>
/// <param name="LibtorchMatVecBytesPerSecond">The same through libtorch's mv, for comparison.</param>
public sealed record DeviceFacts(double CopyBytesPerSecond, double MatmulFlopsPerSecond, double MatVecBytesPerSecond,
                                 double LibtorchMatVecBytesPerSecond)
{
    public static DeviceFacts Measure() => new(CopyBandwidth(), MatmulFlops(), MatVecBandwidth(wren: true), MatVecBandwidth(wren: false));

    /// <summary>Best of <paramref name="repeats"/> timings after a warm-up: what the hardware can do, not the noise.</summary>
    public static double BestSeconds(Action action, int repeats = 7)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return best;
    }

    /// <summary>STREAM-style copy of a 512 MiB buffer split across all cores; read + written bytes counted.</summary>
    public static unsafe double CopyBandwidth(long bytes = 512L << 20)
    {
        using var source = ones(bytes / 4);
        using var target = zeros(bytes / 4);
        byte* from = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(source.bytes));
        byte* to = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(target.bytes));
        int parts = Workers.Count;
        double seconds = BestSeconds(() => Workers.Run(parts, i =>
        {
            long begin = bytes * i / parts, end = bytes * (i + 1) / parts;
            Buffer.MemoryCopy(from + begin, to + begin, end - begin, end - begin);
        }));
        return 2.0 * bytes / seconds;
    }

    public static double MatmulFlops(long n = 2048)
    {
        using var a = randn(n, n);
        using var b = randn(n, n);
        return 2.0 * n * n * n / BestSeconds(() => { using var c = a.matmul(b); });
    }

    /// <summary>
    /// The fp32 FMA peak, FLOP/s over all cores: each core runs twelve independent chains of vector FMAs (enough to cover
    /// the FMA latency on two pipes) on registers only, at the widest vector width the kernels use. The roof a
    /// matrix–matrix product is measured against (docs/benchmarks.md).
    /// </summary>
    public static double FmaPeak(long iterations = 4_000_000)
    {
        int parts = Workers.Count, lanes = KernelPaths.Active == KernelPath.Avx512 ? 16 : KernelPaths.Active == KernelPath.Avx2 ? 8 : 1;
        var sink = new float[parts];
        double seconds = BestSeconds(() => Workers.Run(parts, i => sink[i] = FmaChains(iterations, lanes)), repeats: 5);
        return 2.0 * 12 * lanes * iterations * parts / seconds;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    static float FmaChains(long iterations, int lanes)
    {
        if (lanes == 16) return Chains512(iterations);
        if (lanes == 8) return Chains256(iterations);
        float s = 0;
        for (long i = 0; i < 12 * iterations; i++) s = MathF.FusedMultiplyAdd(s, 0.999f, 1e-4f);
        return s;
    }

    // Two widths written out: .NET 10 has no public generic vector interface to write the chains once.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Chains512(long iterations)
    {
        var (b, c) = (Vector512.Create(0.999f), Vector512.Create(1e-4f));
        var (a0, a1, a2, a3, a4, a5) = (c, c * 2, c * 3, c * 4, c * 5, c * 6);
        var (a6, a7, a8, a9, a10, a11) = (c * 7, c * 8, c * 9, c * 10, c * 11, c * 12);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, b, c); a1 = Vector512.FusedMultiplyAdd(a1, b, c); a2 = Vector512.FusedMultiplyAdd(a2, b, c);
            a3 = Vector512.FusedMultiplyAdd(a3, b, c); a4 = Vector512.FusedMultiplyAdd(a4, b, c); a5 = Vector512.FusedMultiplyAdd(a5, b, c);
            a6 = Vector512.FusedMultiplyAdd(a6, b, c); a7 = Vector512.FusedMultiplyAdd(a7, b, c); a8 = Vector512.FusedMultiplyAdd(a8, b, c);
            a9 = Vector512.FusedMultiplyAdd(a9, b, c); a10 = Vector512.FusedMultiplyAdd(a10, b, c);
            a11 = Vector512.FusedMultiplyAdd(a11, b, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Chains256(long iterations)
    {
        var (b, c) = (Vector256.Create(0.999f), Vector256.Create(1e-4f));
        var (a0, a1, a2, a3, a4, a5) = (c, c * 2, c * 3, c * 4, c * 5, c * 6);
        var (a6, a7, a8, a9, a10, a11) = (c * 7, c * 8, c * 9, c * 10, c * 11, c * 12);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, b, c); a1 = Vector256.FusedMultiplyAdd(a1, b, c); a2 = Vector256.FusedMultiplyAdd(a2, b, c);
            a3 = Vector256.FusedMultiplyAdd(a3, b, c); a4 = Vector256.FusedMultiplyAdd(a4, b, c); a5 = Vector256.FusedMultiplyAdd(a5, b, c);
            a6 = Vector256.FusedMultiplyAdd(a6, b, c); a7 = Vector256.FusedMultiplyAdd(a7, b, c); a8 = Vector256.FusedMultiplyAdd(a8, b, c);
            a9 = Vector256.FusedMultiplyAdd(a9, b, c); a10 = Vector256.FusedMultiplyAdd(a10, b, c);
            a11 = Vector256.FusedMultiplyAdd(a11, b, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    /// <summary>fp32 matrix–vector product on a 14336×4096 weight (larger than any cache), rotating over several copies.</summary>
    public static double MatVecBandwidth(bool wren, long rows = 14336, long cols = 4096)
    {
        using var probe = wren ? MatVecProbe.Wren(Modules.WeightPrecision.Float32, rows, cols) : MatVecProbe.Libtorch(rows, cols);
        return probe.BytesPerSecond();
    }
}
