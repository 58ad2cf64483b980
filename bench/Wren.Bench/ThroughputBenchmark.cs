using System.Globalization;
using Wren.Models;
using Wren.Profiling;
using Wren.Serving;
using static TorchSharp.torch;

namespace Wren.Bench;

/// <summary>
/// The Nemotron-Flash paper's throughput metric: decode tokens/s at a long input length with as many concurrent streams as fit
/// a memory budget, per model at the same budget. The streams held are what <c>wren serve --max-memory</c> would hold at that
/// context (<see cref="EngineOptions.SlotsWithin"/>: weights, the staging rows, no prefix cache; capped at
/// <see cref="EngineOptions.MaxSlots"/>, the rows one fused decode step takes). Prefill is not what is measured: each context is
/// prefilled for real once at batch 1 (random token ids) and that state is cloned into every slot
/// (<see cref="HybridForCausalLM.NewCacheFrom"/>); then greedy decode steps of all slots at once run directly through the batched
/// decode forward (<see cref="LatencyProfiler.DecodeSeconds"/>, the forward the engine's decode step calls), not through the
/// server's engine. Best of <c>--repeats</c> after one warm-up step.
/// </summary>
public static class ThroughputBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback) => BenchArgs.Get(args, name, fallback);
        var models = Arg("--models", "flash-300m,llama-300m").Split(',');
        var contexts = Arg("--contexts", "2048,8192,32768").Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();
        long budget = (long)(BenchArgs.Number(args, "--max-memory-gb", 6) * (1L << 30));
        int steps = BenchArgs.Int(args, "--tokens", 16);
        int repeats = BenchArgs.Int(args, "--repeats", 3);
        int room = steps * (repeats + 1) + 1;

        Console.WriteLine("# throughput: decode tokens/s at each input length with the most streams that fit " +
                          $"{budget / (double)(1L << 30):F2} GiB " +
                          $"(weights + staging rows + slots, as wren serve --max-memory counts; at most {EngineOptions.MaxSlots}); " +
                          "each context prefilled once for real at batch 1 and its state cloned into every slot; decode measured " +
                          $"directly through the batched decode forward, {steps} greedy steps, best of {repeats}; random weights fp32; " +
                          Wren.Runtime.WrenRuntime.Describe());
        Console.WriteLine("| model | input tokens | cache per stream | streams that fit | streams held | ms/step | decode tokens/s | " +
                          "prefill s (once) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in models)
        {
            var config = HybridConfig.Load(name);
            using var model = new HybridForCausalLM(config);
            Initialization.Apply(model, 0);
            model.eval();
            var footprint = ModelFootprint.Of(config);
            foreach (int context in contexts)
            {
                var options = new EngineOptions { MaxContext = context + room, PrefixCacheBytes = 0, MaxBatch = EngineOptions.MaxSlots };
                long fit = options.SlotsWithin(footprint, budget);
                int held = (int)Math.Min(fit, EngineOptions.MaxSlots);
                string perStream = $"{footprint.CacheBytes(1, context + room) / 1e6:F0} MB";
                if (held < 1)
                {
                    Console.WriteLine($"| {name} | {context} | {perStream} | 0 | 0 | – | – | – |");
                    continue;
                }
                using var _ = no_grad();
                var clock = System.Diagnostics.Stopwatch.StartNew();
                using var row = LatencyProfiler.Prefilled(model, context, room);
                double prefill = clock.Elapsed.TotalSeconds;
                using var cache = model.NewCacheFrom(row, held, context + room);
                LatencyProfiler.DecodeSeconds(model, cache, 1, null);   // warm-up: JIT, first touch
                double best = Enumerable.Range(0, repeats).Min(_ => LatencyProfiler.DecodeSeconds(model, cache, steps, null));
                Console.WriteLine($"| {name} | {context} | {perStream} | {fit} | {held} | {best / steps * 1e3:F1} | " +
                                  $"{held * steps / best:F1} | {prefill:F1} |");
            }
        }
        return 0;
    }
}
