using Wren.Kernels;
using Wren.Modules;
using Wren.Profiling;

namespace Wren.Bench;

/// <summary>
/// This device's copy bandwidth and matrix–vector throughput in every weight precision, measured alternately in one
/// process (a copy probe, then one product of each kernel, repeated; best of each), so the precisions are compared under
/// the same conditions: GB/s of weight bytes, time ÷ the fp32 kernel's, and weight GB/s ÷ copy GB/s. The int8 kernel runs
/// on every variant this CPU has (AVX-512; AVX2 with and without AVX-VNNI). Also libtorch's fp32 matmul and <c>mv</c>.
/// </summary>
public static class DeviceBenchmark
{
    public static int Run(string[] args)
    {
        int rounds = BenchArgs.Int(args, "--rounds", 12);
        long rows = BenchArgs.Int(args, "--rows", 14336), cols = BenchArgs.Int(args, "--cols", 4096);
        var probes = new List<MatVecProbe>
        {
            MatVecProbe.Wren(WeightPrecision.Float32, rows, cols), MatVecProbe.Wren(WeightPrecision.BFloat16, rows, cols),
        };
        foreach (var path in KernelPaths.Available.Where(p => p != KernelPath.Scalar).Reverse())   // the widest (the default) first
            foreach (var vnni in path == KernelPath.Avx2 && KernelPaths.VnniSupported ? new bool?[] { true, false } : [null])
                probes.Add(MatVecProbe.Wren(WeightPrecision.Int8, rows, cols, path: path, vnni: vnni));
        probes.Add(MatVecProbe.Libtorch(rows, cols));
        foreach (var p in probes) p.Seconds();                                                  // warm-up: JIT, first touch
        var best = probes.Select(_ => double.MaxValue).ToArray();
        double copy = 0;
        for (int r = 0; r < rounds; r++)
        {
            copy = Math.Max(copy, DeviceFacts.CopyBandwidth(InterleavedBandwidth.ProbeBytes));
            for (int i = 0; i < probes.Count; i++) best[i] = Math.Min(best[i], probes[i].Seconds());
        }
        Console.WriteLine($"# device; {Wren.Runtime.WrenRuntime.Describe()}; best of {rounds} rounds, alternating");
        Console.WriteLine($"copy bandwidth (read + write, all cores, 256 MiB): {copy / 1e9:F1} GB/s");
        Console.WriteLine($"fp32 matmul 2048³ (libtorch): {DeviceFacts.MatmulFlops() / 1e9:F0} GFLOP/s");
        Console.WriteLine($"| matrix–vector {rows}×{cols} | weight bytes | ms | GB/s of weights | ÷ fp32 time | ÷ copy GB/s |");
        Console.WriteLine("|---|---|---|---|---|---|");
        for (int i = 0; i < probes.Count; i++)
        {
            double gbs = probes[i].WeightBytes / best[i];
            Console.WriteLine($"| {probes[i].Name} | {probes[i].WeightBytes / 1e6:F0} MB | {best[i] * 1e3:F2} | {gbs / 1e9:F1} | " +
                              $"{best[i] / best[0]:F2} | {gbs / copy:F2} |");
        }
        foreach (var p in probes) p.Dispose();
        return 0;
    }
}
