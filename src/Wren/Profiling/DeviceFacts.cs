using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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

    /// <summary>fp32 matrix–vector product on a 14336×4096 weight (larger than any cache), rotating over several copies.</summary>
    public static double MatVecBandwidth(bool wren, long rows = 14336, long cols = 4096)
    {
        using var probe = wren ? MatVecProbe.Wren(Modules.WeightPrecision.Float32, rows, cols) : MatVecProbe.Libtorch(rows, cols);
        return probe.BytesPerSecond();
    }
}
