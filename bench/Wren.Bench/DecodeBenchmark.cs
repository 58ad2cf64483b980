using System.Diagnostics;
using TorchSharp;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using Wren.Profiling;
using static TorchSharp.torch;

namespace Wren.Bench;

/// <summary>
/// Batch-1 decode latency after a P-token prompt for each weight precision: best ms/token over repeats, next to the
/// memory-bandwidth roofline (bytes a step must read — the weights in that precision plus the cache at that context, i.e.
/// the attention layers' KV and the recurrent states — ÷ copy bandwidth, the bandwidth measured alternately with the
/// decode runs and the best taken), the ratio to the fp32 time of the same model in the same run, effective GB/s of
/// those bytes and the kernel path that ran. With <c>--busy N</c> each row is measured again while N
/// busy-spinning processes run (the busy-core slowdown). With <c>--unfused</c> each row also times the same decode with
/// the fused layer form off (<see cref="HybridForCausalLM.FusedDecode"/>), alternately with the fused runs (an A/B in one
/// run). With <c>--llama-bench PATH --gguf MODEL:PRECISION=FILE[,…]</c> (a llama.cpp <c>llama-bench</c> binary and GGUFs of
/// the same shape, e.g. <c>llama-300m:float32=llama-300m-f32.gguf</c>) each Wren row of that model and precision is followed
/// by llama.cpp's on the same context, measured right after it, and the last column gives Wren ÷ llama.cpp time. With
/// <c>--prefill N</c> a second table gives N-token prefill tokens/s per model and precision (best of the repeats), its
/// matmul GFLOP/s against the FMA peak measured in the same run, and llama.cpp's ppN beside it when given.
/// </summary>
public static class DecodeBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback) => BenchArgs.Get(args, name, fallback);
        var contexts = Arg("--contexts", "512,2048,8192").Split(',').Select(int.Parse).ToArray();
        var models = Arg("--models", "flash-300m,llama-300m").Split(',');
        string dtypes = Arg("--dtype", "float32");
        var precisions = (dtypes == "all" ? "float32,bfloat16,int8,q4,q4k" : dtypes).Split(',')
            .Select(WeightPrecisions.Parse).Distinct().Order().ToArray();   // fp32 first: the others compare to it
        int tokens = BenchArgs.Int(args, "--tokens", 32);
        int repeats = BenchArgs.Int(args, "--repeats", 5);
        int busy = BenchArgs.Int(args, "--busy", 0);
        bool unfused = args.Contains("--unfused");
        int prefill = BenchArgs.Int(args, "--prefill", 0);
        string llamaBinary = Arg("--llama-bench", "");
        if (llamaBinary.Length > 0 && !File.Exists(llamaBinary)) throw new ArgumentException($"--llama-bench: no file {llamaBinary}");
        var llama = llamaBinary.Length > 0 ? new LlamaBench(llamaBinary, Environment.ProcessorCount) : null;
        var ggufs = Arg("--gguf", "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(g => g.Split('=', 2))
            .Select(g => g.Length == 2 && g[0].Split(':') is [var m, var p] ? (Key: (m, WeightPrecisions.Parse(p)), File: g[1])
                : throw new ArgumentException($"--gguf: '{string.Join('=', g)}' is not MODEL:PRECISION=FILE " +
                                              "(e.g. llama-300m:float32=llama-300m-f32.gguf)"))
            .ToDictionary(g => g.Key, g => g.File);
        if (ggufs.Count > 0 && llama is null) throw new ArgumentException("--gguf needs --llama-bench PATH");
        foreach (var file in ggufs.Values.Where(f => !File.Exists(f))) throw new ArgumentException($"--gguf: no file {file}");
        var prefillRows = new List<string>();
        double peak = prefill > 0 ? DeviceFacts.FmaPeak() : 0;

        Console.WriteLine($"# decode, batch 1; {Wren.Runtime.WrenRuntime.Describe()}");
        Console.WriteLine($"# kernel path {KernelPaths.Active} (best on this CPU: {KernelPaths.Best});");
        Console.WriteLine("# roofline = (weight + cache bytes) ÷ copy bandwidth, measured alternately with the decode " +
                          $"(best of {repeats} each)");
        Console.WriteLine("| model | weights | weight bytes | ctx | cache bytes | path | ms/token | copy GB/s | roofline ms | " +
                          "÷ roofline | eff. GB/s | ÷ fp32 |" + (unfused ? " unfused ms/token | fused ÷ unfused |" : "") +
                          (busy > 0 ? " busy ms/token | slowdown |" : "") + (llama is null ? "" : " Wren ÷ llama.cpp |"));
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|" + (unfused ? "---|---|" : "") + (busy > 0 ? "---|---|" : "") +
                          (llama is null ? "" : "---|"));
        foreach (var name in models)
        {
            var config = HybridConfig.Load(name);
            using var fp32 = new HybridForCausalLM(config);
            Initialization.Apply(fp32, 0);
            fp32.eval();
            // One prefill per context (the long one costs minutes at 1B), shared by every precision and the busy runs.
            var prompts = contexts.ToDictionary(c => c, c => { using var _ = no_grad(); return LatencyProfiler.Prefilled(fp32, c, 1); });
            var fp32Ms = new Dictionary<int, double>();
            foreach (var precision in precisions)
            {
                using var packed = precision == WeightPrecision.Float32 ? null : WeightPacking.Pack(fp32, precision);
                var model = packed ?? fp32;
                var footprint = ModelFootprint.Of(config, ScalarType.Float32, precision);
                long weightBytes = footprint.WeightBytes;
                foreach (int context in contexts)
                {
                    var (perToken, bandwidth, unfusedPerToken) = Interleaved(model, prompts[context], context, tokens, repeats, unfused);
                    if (precision == WeightPrecision.Float32) fp32Ms[context] = perToken;
                    long cacheBytes = footprint.CacheBytes(1, context), bytes = weightBytes + cacheBytes;
                    double roofline = bytes / bandwidth;
                    string path = precision.IsQuantized() ? KernelPaths.Int8Description : KernelPaths.Active.ToString();
                    string row = $"| {name} | {precision.Name()} | {weightBytes / 1e6:F0} MB | {context} | " +
                                 $"{cacheBytes / 1e6:F0} MB | {path} | " +
                                 $"{perToken * 1e3:F2} | " +
                                 $"{bandwidth / 1e9:F1} | {roofline * 1e3:F2} | {perToken / roofline:F2} | {bytes / perToken / 1e9:F1} | " +
                                 $"{(fp32Ms.TryGetValue(context, out var f) ? $"{perToken / f:F2}" : "–")} |";
                    if (unfused) row += $" {unfusedPerToken * 1e3:F2} | {perToken / unfusedPerToken:F2} |";
                    if (busy > 0)
                    {
                        double busyPerToken;
                        using (BusyProcesses.Start(busy))
                            busyPerToken = Interleaved(model, prompts[context], context, tokens, repeats, false).PerToken;
                        row += $" {busyPerToken * 1e3:F2} | {busyPerToken / perToken:F2}× |";
                    }
                    if (llama is not null && ggufs.TryGetValue((name, precision), out var gguf))
                    {
                        double theirs = llama.DecodeSecondsPerToken(gguf, context, tokens, repeats);
                        Console.WriteLine(row + $" {perToken / theirs:F2} |");
                        Console.WriteLine($"| llama.cpp {Path.GetFileName(gguf)} | {precision.Name()} | | {context} | | llama.cpp | " +
                                          $"{theirs * 1e3:F2} | | {roofline * 1e3:F2} | {theirs / roofline:F2} | " +
                                          $"{bytes / theirs / 1e9:F1} | | |");
                    }
                    else Console.WriteLine(row + (llama is null ? "" : " – |"));
                }
                if (prefill > 0) prefillRows.Add(PrefillRow(name, precision, model, prefill, repeats, peak, llama, ggufs));
            }
            foreach (var prompt in prompts.Values) prompt.Dispose();
        }
        if (prefill > 0)
        {
            Console.WriteLine();
            Console.WriteLine($"# prefill of {prefill} tokens, batch 1 (logits of the last position only, as llama-bench's pp); " +
                              $"fp32 FMA peak {peak / 1e9:F0} GFLOP/s; matmul FLOPs = 2 · tokens · (parameters − embedding − head)");
            Console.WriteLine("| model | weights | tokens | Wren tokens/s | Wren matmul GFLOP/s | ÷ FMA peak | llama.cpp tokens/s | " +
                              "Wren ÷ llama.cpp speed |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|");
            prefillRows.ForEach(Console.WriteLine);
        }
        return 0;
    }

    /// <summary>
    /// Best <paramref name="tokens"/>-token prefill of <paramref name="repeats"/> (random tokens, a fresh cache each time),
    /// alternately with llama.cpp's ppN on the GGUF of that precision when one is given: one table row.
    /// </summary>
    static string PrefillRow(string name, WeightPrecision precision, HybridForCausalLM model, int tokens, int repeats,
                                           double peak, LlamaBench? llama, Dictionary<(string, WeightPrecision), string> ggufs)
    {
        using var _ = no_grad();
        using var ids = randint(0, model.Config.VocabSize, [1, tokens]);
        double Once()
        {
            using var cache = model.NewCache(1, tokens + 1);
            var clock = Stopwatch.StartNew();
            using (NewDisposeScope()) model.forward(new LMInput(ids, cache, LastPositionOnly: true));
            return clock.Elapsed.TotalSeconds;
        }
        Once();                                                                               // warm-up: JIT, first touch
        double best = double.MaxValue, theirs = 0;
        string? gguf = llama is null ? null : ggufs.GetValueOrDefault((name, precision));
        for (int r = 0; r < repeats; r++)
        {
            best = Math.Min(best, Once());
            if (gguf is not null) theirs = Math.Max(theirs, llama!.PrefillTokensPerSecond(gguf, tokens, 1));
        }
        var config = model.Config;
        long embeddings = (long)config.VocabSize * config.HiddenSize * (config.TieWordEmbeddings ? 1 : 2);
        double flops = 2.0 * tokens * (ModelFootprint.Of(config, ScalarType.Float32, precision).Parameters - embeddings);
        double ours = tokens / best;
        return $"| {name} | {precision.Name()} | {tokens} | {ours:F1} | {flops / best / 1e9:F0} | {flops / best / peak:P0} | " +
                     (gguf is null ? "– | – |" : $"{theirs:F1} | {ours / theirs:F2} |");
    }

    /// <summary>
    /// Alternates a copy-bandwidth probe with a timed decode of <paramref name="tokens"/> tokens from a copy of the
    /// <paramref name="prompt"/>'s cache (<paramref name="context"/> tokens), <paramref name="repeats"/> times
    /// (<see cref="InterleavedBandwidth"/>): the best decode seconds per token and the best bandwidth, each taken under the
    /// conditions the other saw. With <paramref name="unfused"/> each repeat also times the decode with the fused layer
    /// form off (best of those in the third value, else 0).
    /// </summary>
    static (double PerToken, double Bandwidth, double Unfused) Interleaved(HybridForCausalLM model, ModelCache prompt, int context,
                                                                            int tokens, int repeats, bool unfused)
    {
        using var _ = no_grad();
        double Decode()
        {
            using var cache = model.NewCacheFrom(prompt, 1, context + tokens);
            return LatencyProfiler.DecodeSeconds(model, cache, tokens, null);
        }
        using (var warm = model.NewCacheFrom(prompt, 1, context + 1))
            LatencyProfiler.DecodeSeconds(model, warm, 1, null);   // warm-up: JIT, first touch
        double bestUnfused = unfused ? double.MaxValue : 0;
        var runs = InterleavedBandwidth.Measure(() =>
        {
            double fused = Decode();
            if (unfused)
            {
                model.FusedDecode = false;
                try { bestUnfused = Math.Min(bestUnfused, Decode()); }
                finally { model.FusedDecode = true; }
            }
            return fused;
        }, repeats);
        return (runs.BestSeconds / tokens, runs.CopyBytesPerSecond, bestUnfused / tokens);
    }
}

/// <summary>
/// Background processes that keep cores busy (a shell loop each), stopped when disposed and bounded by a time limit
/// even if this process dies first, to measure decode on a machine another process is using. POSIX shells only.
/// </summary>
sealed class BusyProcesses : IDisposable
{
    /// <summary>A spinner stops by itself after this long.</summary>
    const int LimitSeconds = 600;

    readonly List<Process> processes;

    BusyProcesses(List<Process> processes) => this.processes = processes;

    public static BusyProcesses Start(int count)
    {
        var started = Enumerable.Range(0, count).Select(_ => Process.Start(new ProcessStartInfo("/bin/sh")
        {
            ArgumentList =
            {
                "-c",
                $"end=$(( $(date +%s) + {LimitSeconds} )); " +
                "while [ $(date +%s) -lt $end ]; do i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; done",
            },
            UseShellExecute = false,
        })!).ToList();
        Thread.Sleep(200);   // let the scheduler place them
        return new BusyProcesses(started);
    }

    public void Dispose()
    {
        foreach (var p in processes)
        {
            if (!p.HasExited) p.Kill();
            p.WaitForExit();
            p.Dispose();
        }
    }
}
