using TorchSharp;
using Wren.Models;
using Wren.Profiling;
using static TorchSharp.torch;

namespace Wren.Bench;

/// <summary>
/// Batch-1 fp32 decode latency after a P-token prompt: median ms/token over repeats, next to the memory-bandwidth
/// roofline (weight bytes ÷ copy bandwidth measured in this run) and as effective GB/s of weights read per token.
/// </summary>
public static class DecodeBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
        var contexts = Arg("--contexts", "512,2048,8192").Split(',').Select(int.Parse).ToArray();
        var models = Arg("--models", "flash-300m,llama-300m").Split(',');
        int tokens = int.Parse(Arg("--tokens", "32"));
        int repeats = int.Parse(Arg("--repeats", "5"));

        var device = DeviceFacts.Measure();
        Console.WriteLine($"# decode, batch 1, fp32; {Wren.Runtime.WrenRuntime.Describe()}");
        Console.WriteLine($"# copy bandwidth {device.CopyBytesPerSecond / 1e9:F1} GB/s; matrix–vector: Wren {device.MatVecBytesPerSecond / 1e9:F1} GB/s, " +
                          $"libtorch {device.LibtorchMatVecBytesPerSecond / 1e9:F1} GB/s; matmul {device.MatmulFlopsPerSecond / 1e9:F0} GFLOP/s");
        Console.WriteLine("| model | params | weights | context | ms/token | roofline ms | ÷ roofline | effective GB/s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var name in models)
        {
            var config = HybridConfig.Load(name);
            using var model = new HybridForCausalLM(config);
            Initialization.Apply(model, 0);
            model.eval();
            var footprint = ModelFootprint.Of(config);
            double roofline = device.Roofline(footprint.WeightBytes);
            foreach (int context in contexts)
            {
                double perToken = DecodeSeconds(model, context, tokens, repeats) / tokens;
                Console.WriteLine($"| {name} | {footprint.Parameters / 1e6:F0}M | {footprint.WeightBytes / 1e9:F2} GB | {context} | {perToken * 1e3:F2} | {roofline * 1e3:F2} | " +
                                  $"{perToken / roofline:F2} | {footprint.WeightBytes / perToken / 1e9:F1} |");
            }
        }
        return 0;
    }

    /// <summary>Prefills <paramref name="context"/> tokens once, then the median over repeats of decoding <paramref name="tokens"/> more.</summary>
    static double DecodeSeconds(HybridForCausalLM model, int context, int tokens, int repeats)
    {
        using var _ = no_grad();
        using var cache = LatencyProfiler.Prefilled(model, context, tokens * (repeats + 1));
        return Measurement.Repeat(() => LatencyProfiler.DecodeSeconds(model, cache, tokens, null), repeats).Median;
    }
}
