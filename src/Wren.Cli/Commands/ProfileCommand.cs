using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Models;
using Wren.Modules;
using Wren.Profiling;

namespace Wren.Cli.Commands;

/// <summary><c>wren profile</c>: real-device latency, throughput and memory of one or more models, side by side.</summary>
internal static class ProfileCommand
{
    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static Command Create()
    {
        var command = new Command("profile",
                                  "Measure decode/prefill latency, throughput and memory on this device (random weights are fine for " +
                                  "latency)");
        var models = new Option<string[]>("--model") { Description = "model folder; repeat to compare" };
        var configs = new Option<string[]>("--config") { Description = "config.json or preset (random weights); repeat to compare" };
        var compare = new Option<string[]>("--compare")
        {
            Description = "more models to profile side by side: model folders, config.json files or presets",
        };
        var prompt = new Option<int>("--prompt-tokens") { Description = "prompt length P before decoding", DefaultValueFactory = _ => 256 };
        var decode = new Option<int>("--decode-tokens") { Description = "tokens N decoded per timed run", DefaultValueFactory = _ => 32 };
        var repeats = new Option<int>("--repeats")
        {
            Description = "timed runs per measurement (median reported)",
            DefaultValueFactory = _ => 5,
        };
        var contexts = new Option<string>("--contexts")
        {
            Description = "contexts of the latency-vs-context curve",
            DefaultValueFactory = _ => "256,1024,4096",
        };
        var throughputContext = new Option<int>("--throughput-context")
        {
            Description = "context length of the throughput measurement",
            DefaultValueFactory = _ => 1024,
        };
        var budget = new Option<string>("--memory-budget")
        {
            Description = "memory for weights + caches + activations, e.g. 4GB or 512MB",
            DefaultValueFactory = _ => "4GB",
        };
        var maxBatch = new Option<int>("--max-batch")
        {
            Description = "upper bound of the throughput batch search",
            DefaultValueFactory = _ => 256,
        };
        var output = new Option<string>("--out")
        {
            Description = "folder for profile.json and plots",
            DefaultValueFactory = _ => Path.Combine(".wren", "profile"),
        };
        var deviceProfile = new Option<string?>("--device-profile")
        {
            Description = "device facts file (default: ~/.wren/devices/<id>.json, measured once)",
        };
        foreach (var o in new Option[] { models, configs, compare, prompt, decode, repeats, contexts, throughputContext, budget, maxBatch,
                                         output, deviceProfile })
            command.Add(o);
        command.Add(ProfileTableCommands.Lut());
        command.Add(ProfileTableCommands.Grid());
        var common = new CommonOptions(command);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            var targets = (result.GetValue(models) ?? []).Select(m =>
                (name: Path.GetFileName(Path.TrimEndingDirectorySeparator(m)), path: m, folder: true))
                .Concat((result.GetValue(configs) ?? []).Select(c => (name: Path.GetFileNameWithoutExtension(c), path: c, folder: false)))
                .Concat((result.GetValue(compare) ?? []).Select(c => Directory.Exists(c)
                    ? (name: Path.GetFileName(Path.TrimEndingDirectorySeparator(c)), path: c, folder: true)
                    : (name: Path.GetFileNameWithoutExtension(c), path: c, folder: false))).ToList();
            if (targets.Count == 0) throw new WrenException("give at least one --model folder or --config");
            var options = new ProfileOptions
            {
                PromptTokens = result.GetValue(prompt), DecodeTokens = result.GetValue(decode), Repeats = result.GetValue(repeats),
                Contexts = Formats.Ints(result.GetValue(contexts)!, "--contexts"), ThroughputContext = result.GetValue(throughputContext),
                MemoryBudgetBytes = ParseBytes(result.GetValue(budget)!, budget.Name), MaxBatch = result.GetValue(maxBatch),
            };
            options.Validate();
            var facts = DeviceProfile.ForCurrent(device, result.GetValue(deviceProfile));
            var profiles = new List<ModelProfile>();
            AnsiConsole.Status().Start("profiling", status =>
            {
                foreach (var (name, path, folder) in targets)
                {
                    var precision = common.Precision(result);
                    using var model = folder
                        ? HybridForCausalLM.FromPretrained(path, precision, device)
                        : RandomModel(path, precision, device);
                    profiles.Add(LatencyProfiler.Profile(model, name, options, facts, new StatusProgress(status)));
                }
            });
            Print(profiles, facts);
            string outDir = result.GetValue(output)!;
            Directory.CreateDirectory(outDir);
            AtomicFile.WriteAllText(Path.Combine(outDir, "profile.json"), JsonSerializer.Serialize(profiles, Json));
            var plots = ProfilePlots.Write(profiles, outDir);
            Console.WriteLine($"wrote {Path.Combine(outDir, "profile.json")} and {plots.Count} plots");
            return 0;
        });
        return command;
    }

    internal static HybridForCausalLM RandomModel(string config, WeightPrecision weights, TorchSharp.torch.Device device)
    {
        var model = new HybridForCausalLM(HybridConfig.Load(config), new Placement(TorchSharp.torch.ScalarType.Float32, device));
        Initialization.Apply(model, seed: 0);
        model.eval();
        if (weights == WeightPrecision.Float32) return model;
        using (model) return WeightPacking.Pack(model, weights);
    }

    static void Print(IReadOnlyList<ModelProfile> profiles, DeviceProfile device)
    {
        var console = AnsiConsole.Console;
        console.WriteLine($"device {device.Identity.Processor} ({device.Identity.Threads} threads), cached facts measured " +
                          $"{device.MeasuredAt.UtcDateTime:yyyy-MM-dd HH:mm} UTC: copy {device.Facts.CopyBytesPerSecond / 1e9:F1} GB/s, " +
                          $"matmul {device.Facts.MatmulFlopsPerSecond / 1e9:F0} GFLOP/s, matrix–vector " +
                          $"{device.Facts.MatVecBytesPerSecond / 1e9:F1} GB/s");
        console.WriteLine("÷ roofline: best decode ÷ (weight bytes ÷ copy bandwidth measured alternately with that decode), " +
                          "not the cached copy");
        var table = new Table().AddColumn("");
        foreach (var p in profiles) table.AddColumn(Markup.Escape(p.Name));
        void Row(string label, Func<ModelProfile, string> cell) => table.AddRow([label, .. profiles.Select(p => Markup.Escape(cell(p)))]);
        Row("parameters", p => $"{p.Parameters / 1e6:F1}M");
        Row("weights", p => Formats.Bytes(p.WeightBytes));
        Row("prefill", p => $"{p.PrefillSeconds.Median * 1e3:F1} ms for {p.PromptTokens} tokens");
        Row("decode (batch 1)", p => $"{p.DecodeSeconds.Median:F3} s for {p.DecodeTokens} tokens = {p.MsPerToken:F2} ms/token");
        Row("÷ bandwidth roofline", p => $"{p.RooflineRatio:F2} (best {p.BestMsPerToken:F2} ms/token; roofline {p.RooflineMs:F2} ms " +
                                         $"at {p.CopyBytesPerSecond / 1e9:F1} GB/s copy, measured alternately)");
        foreach (int i in Enumerable.Range(0, profiles.Max(p => p.LatencyByContext.Count)))
            Row($"ms/token at context {profiles[0].LatencyByContext.ElementAtOrDefault(i)?.Context}", p =>
                p.LatencyByContext.ElementAtOrDefault(i) is { } c ? $"{c.MsPerToken.Median:F2}" : "");
        Row("cache per sequence", p => string.Join(" / ", p.LatencyByContext.Select(c => Formats.Bytes(c.CacheBytesPerSequence))));
        Row("throughput", p =>
            p.Throughput.Count == 0 ? "none fits" : $"{p.Throughput[^1].TokensPerSecond.Median:F0} tokens/s at batch {p.LargestBatch} " +
                                                    $"(context {p.ThroughputContext})");
        Row("decode time by layer type", p =>
            string.Join(", ", p.Breakdown.Select(b =>
                $"{b.LayerType}×{b.Layers} {b.MsPerToken:F2} ms ({b.Share:P0})")) + $", other {p.OtherMsPerToken:F2} ms");
        Row("peak RSS", p => Formats.Bytes(p.PeakRssBytes));
        console.Write(table);
        foreach (var p in profiles)
            foreach (var w in p.Warnings) console.MarkupLine($"[yellow]warning[/] {Markup.Escape(p.Name)}: {Markup.Escape(w)}");
    }


    /// <summary>A byte size like 4GB, 512MB or 1.5G; <paramref name="option"/> names the option in the error.</summary>
    internal static long ParseBytes(string text, string option)
    {
        var t = text.Trim().ToUpperInvariant();
        (string suffix, long unit)[] units = [("GB", 1L << 30), ("G", 1L << 30), ("MB", 1L << 20), ("M", 1L << 20), ("KB", 1L << 10), ("B",
            1)];
        foreach (var (suffix, unit) in units)
            if (t.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(t[..^suffix.Length], System.Globalization.CultureInfo.InvariantCulture, out var value) && value > 0)
                return (long)(value * unit);
        throw new WrenException($"{option} must look like 4GB, 512MB or 1.5G, got '{text}'");
    }
}
