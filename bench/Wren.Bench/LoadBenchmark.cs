using System.Diagnostics;
using Wren.Models;
using Wren.Modules;
using Wren.Profiling;
using static TorchSharp.torch;

namespace Wren.Bench;

/// <summary>
/// Loading a real-size checkpoint into each weight precision: a random model saved in bf16 (as the released
/// checkpoints are) is loaded by a fresh process per precision, which reports the load time and how far its peak
/// resident set rose above what it held before loading, next to the bytes of the loaded weights.
/// </summary>
public static class LoadBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback) => BenchArgs.Get(args, name, fallback);
        string preset = Arg("--model", "flash-1b");
        string folder = Arg("--dir", Path.Combine(Path.GetTempPath(), $"wren-load-{preset}"));
        string dtypes = Arg("--dtype", "all");
        var precisions = (dtypes == "all" ? "float32,bfloat16,int8" : dtypes).Split(',').Select(WeightPrecisions.Parse).ToArray();
        var config = HybridConfig.Load(preset);
        if (!File.Exists(Path.Combine(folder, "model.safetensors")))
        {
            Console.WriteLine($"# writing a random {preset} in bf16 to {folder}");
            using var model = new HybridForCausalLM(config);
            Initialization.Apply(model, 0);
            model.SavePretrained(folder, ScalarType.BFloat16);
        }
        Console.WriteLine($"# {preset} from {folder} (bf16 on disk), one fresh process per precision");
        Console.WriteLine("| weights | load s | weight bytes | peak RSS rise | rise − weights |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var precision in precisions)
        {
            var (seconds, rise) = Child(folder, precision);
            long bytes = ModelFootprint.Of(config, ScalarType.Float32, precision).WeightBytes;
            Console.WriteLine($"| {precision.Name()} | {seconds:F1} | {bytes / 1e9:F2} GB | {rise / 1e9:F2} GB | " +
                              $"{(rise - bytes) / 1e6:F0} MB |");
        }
        return 0;
    }

    /// <summary>Runs <c>load-one</c> in a new process, so that each peak resident set is its own.</summary>
    static (double Seconds, long Rise) Child(string folder, WeightPrecision precision)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
            start.ArgumentList.Add(typeof(LoadBenchmark).Assembly.Location);
        foreach (var a in new[] { "load-one", folder, precision.Name() }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new WrenException($"load-one {precision.Name()} failed with exit code {process.ExitCode}");
        var fields = output.Trim().Split(' ');
        return (double.Parse(fields[0], System.Globalization.CultureInfo.InvariantCulture), long.Parse(fields[1]));
    }

    /// <summary>The child: prints "seconds peak-rise-bytes" for one load.</summary>
    public static int One(string[] args)
    {
        long before = ResidentBytes();
        var clock = Stopwatch.StartNew();
        using var model = HybridForCausalLM.FromPretrained(args[0], WeightPrecisions.Parse(args[1]));
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine(FormattableString.Invariant($"{seconds} {LatencyProfiler.PeakResidentBytes() - before}"));
        return 0;
    }

    /// <summary>Current resident set (VmRSS), or 0 where /proc is unavailable.</summary>
    static long ResidentBytes()
    {
        var line = File.Exists("/proc/self/status")
            ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            : null;
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
