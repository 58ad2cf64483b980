using Wren.Profiling;

namespace Wren.Bench;

/// <summary>
/// fp32 projections x [inputs, cols] · Wᵀ through Wren's route (<see cref="Wren.Modules"/>' Linear: decode-batch kernels,
/// the tiled kernel for longer inputs) and through libtorch's GEMM, alternately round after round (best of each), per
/// weight shape and input count: ms, GFLOP/s, the share of the FMA peak measured in the same run, and Wren ÷ libtorch.
/// </summary>
public static class MatMulBenchmark
{
    public static int Run(string[] args)
    {
        int rounds = BenchArgs.Int(args, "--rounds", 9);
        var shapes = BenchArgs.Get(args, "--shapes", "4096x1024,1024x4096").Split(',')
            .Select(s => s.Split('x') is [var r, var c] && long.TryParse(r, out long rows) && long.TryParse(c, out long cols)
                         && rows > 0 && cols > 0
                ? (Rows: rows, Cols: cols)
                : throw new ArgumentException($"--shapes: '{s}' is not OUTxIN (e.g. 4096x1024)")).ToArray();
        var inputs = BenchArgs.Get(args, "--inputs", "1,4,16,32,64,128,512").Split(',')
            .Select(s => long.TryParse(s, out long n) && n > 0 ? n : throw new ArgumentException($"--inputs: '{s}' is not a row count"))
            .ToArray();
        double peak = DeviceFacts.FmaPeak();
        Console.WriteLine($"# matmul; {Wren.Runtime.WrenRuntime.Describe()}; best of {rounds} rounds, alternating");
        Console.WriteLine($"fp32 FMA peak (all cores, registers only): {peak / 1e9:F0} GFLOP/s; " +
                          $"libtorch matmul 2048³: {DeviceFacts.MatmulFlops() / 1e9:F0} GFLOP/s");
        Console.WriteLine("| weight | inputs | Wren ms | libtorch ms | Wren GFLOP/s | Wren ÷ FMA peak | libtorch ÷ FMA peak | " +
                          "Wren ÷ libtorch time |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var (rows, cols) in shapes)
            foreach (long n in inputs)
            {
                using var wren = new MatMulProbe(rows, cols, n, libtorch: false);
                using var torch = new MatMulProbe(rows, cols, n, libtorch: true);
                wren.Seconds(); torch.Seconds();                                   // warm-up: JIT, first touch
                double a = double.MaxValue, b = double.MaxValue;
                for (int r = 0; r < rounds; r++) (a, b) = (Math.Min(a, wren.Seconds()), Math.Min(b, torch.Seconds()));
                Console.WriteLine($"| {rows}×{cols} | {n} | {a * 1e3:F3} | {b * 1e3:F3} | {wren.Flops / a / 1e9:F0} | " +
                                  $"{wren.Flops / a / peak:P0} | {wren.Flops / b / peak:P0} | {a / b:F2} |");
            }
        return 0;
    }
}
