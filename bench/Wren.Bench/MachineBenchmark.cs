using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Bench;

/// <summary>What this machine's memory system and libtorch kernels deliver: the denominators of every roofline.</summary>
public static class MachineBenchmark
{
    /// <summary>Median seconds of <paramref name="action"/> over <paramref name="repeats"/> runs after warm-up.</summary>
    public static double Median(Action action, int repeats = 9, int warmup = 2)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            times[i] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }

    /// <summary>Copy bandwidth in bytes/s (read + write counted), on a buffer far larger than the caches.</summary>
    public static double CopyBandwidth(long bytes = 1L << 30)
    {
        using var source = ones(bytes / 4);
        using var target = empty(bytes / 4);
        double seconds = Median(() => target.copy_(source), 7);
        return 2.0 * bytes / seconds;
    }

    public static double MatmulFlops(long n = 2048)
    {
        using var a = randn(n, n);
        using var b = randn(n, n);
        using var c = empty(n, n);
        double seconds = Median(() => { using var r = a.matmul(b); }, 7);
        return 2.0 * n * n * n / seconds;
    }

    /// <summary>Weight bytes read per second by a matrix–vector product (the batch-1 decode kernel).</summary>
    public static double MatVecBandwidth(long rows = 14336, long cols = 4096)
    {
        using var w = randn(rows, cols);
        using var x = randn(cols);
        double seconds = Median(() => { using var y = w.mv(x); }, 15);
        return rows * cols * 4.0 / seconds;
    }

    public static int Run()
    {
        Console.WriteLine($"copy bandwidth:        {CopyBandwidth() / 1e9:F1} GB/s (read + write)");
        Console.WriteLine($"fp32 matmul 2048³:     {MatmulFlops() / 1e9:F0} GFLOP/s");
        Console.WriteLine($"fp32 mv 14336×4096:    {MatVecBandwidth() / 1e9:F1} GB/s of weights");
        return 0;
    }
}
