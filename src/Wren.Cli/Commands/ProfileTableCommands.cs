using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Models;
using Wren.Profiling;

namespace Wren.Cli.Commands;

/// <summary><c>wren profile lut build|check</c> and <c>wren profile grid</c>.</summary>
internal static class ProfileTableCommands
{
    public static Command Lut()
    {
        var lut = new Command("lut", "Latency lookup table: per-operator costs on this device, and a predictor built from them");
        lut.Add(Build());
        lut.Add(Check());
        return lut;
    }

    /// <summary>--passes, --decode-tokens, --drift-tolerance and --rounds: how each figure is measured against the reference.</summary>
    sealed class InterleaveFlags
    {
        readonly Option<int> passes = new("--passes")
        {
            Description = "timed runs per figure, each between two reference runs", DefaultValueFactory = _ => 15,
        };
        readonly Option<int> tokens = new("--decode-tokens") { Description = "tokens per timed run", DefaultValueFactory = _ => 4 };
        readonly Option<double> drift = new("--drift-tolerance")
        {
            Description = "re-measure a figure when the reference's best step moved more than this share during it",
            DefaultValueFactory = _ => 0.05,
        };

        readonly Option<int> rounds = new("--rounds")
        {
            Description = "measure the list of whole architectures (the fitted or checked ones) this many times over, keeping " +
                          "each one's median",
            DefaultValueFactory = _ => 1,
        };

        public InterleaveFlags(Command command)
        {
            foreach (var o in new Option[] { passes, tokens, drift, rounds }) command.Add(o);
        }

        public InterleaveOptions Of(ParseResult r) => new()
        {
            Passes = r.GetValue(passes), DecodeTokens = r.GetValue(tokens), DriftTolerance = r.GetValue(drift), Rounds = r.GetValue(rounds),
        };
    }

    static Command Build()
    {
        var command = new Command("build", "Measure the latency table of this device");
        var template = new Option<string>("--config")
        {
            Description = "template config: every setting but layers and width (a preset or config.json)",
            DefaultValueFactory = _ => "flash-tiny",
        };
        var operators = new Option<string>("--operators")
        {
            Description = "layer types to measure (windowed attention as a:w512); default: every registered type",
            DefaultValueFactory = _ => string.Join(",", OperatorRegistry.All.Select(s => s.Name)),
        };
        var widths = new Option<string>("--widths") { Description = "hidden sizes", DefaultValueFactory = _ => "128,256" };
        var batches = new Option<string>("--batches") { Description = "batch sizes", DefaultValueFactory = _ => "1" };
        var contexts = new Option<string>("--contexts")
        {
            Description = "contexts (prompt tokens) for attention",
            DefaultValueFactory = _ => "128,512,2048",
        };
        var fit = new Option<int>("--fit")
        {
            Description = "random architectures per width and batch for the in-situ fit (0 = none)", DefaultValueFactory = _ => 48,
        };
        var output = new Option<string>("--out")
        {
            Description = "table file",
            DefaultValueFactory = _ => Path.Combine(".wren", "latency-table.json"),
        };
        foreach (var o in new Option[] { template, operators, widths, batches, contexts, fit, output }) command.Add(o);
        var interleave = new InterleaveFlags(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            var config = HybridConfig.Load(result.GetValue(template)!);
            var ops = result.GetValue(operators)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var op in ops) OperatorSpec.ParseLatencyKey(op);   // an unknown operator fails before measuring
            LatencyTable table = null!;
            AnsiConsole.Status().Start("measuring", status => table = LatencyTable.Build(config, ops,
                Formats.Ints(result.GetValue(widths)!, "--widths"), Formats.Ints(result.GetValue(batches)!, "--batches"),
                Formats.Ints(result.GetValue(contexts)!, "--contexts"), DeviceIdentity.Current(device), interleave.Of(result),
                result.GetValue(fit), new StatusProgress(status)));
            table.Save(result.GetValue(output)!);
            PrintTable(table);
            Console.WriteLine($"wrote {result.GetValue(output)} for device {table.Device.Processor} (id {table.Device.Id})");
            return 0;
        });
        return command;
    }

    static void PrintTable(LatencyTable table)
    {
        double us = table.Reference.StepSeconds * 1e6;
        var reference = table.Reference;
        Console.WriteLine($"reference: {string.Join(" ", reference.LayerKeys)} at width {reference.Width}, context {reference.Context}: " +
                          $"{us:F1} µs/step (reference units × this = µs); it moved ×{table.Drift:F2} during the build");
        var view = new Table().AddColumns("operator", "width", "batch", "positions", "probe (ref units)", "probe µs/layer",
                                          "in-situ µs/layer");
        foreach (var e in table.Layers)
        {
            var fit = table.Fits.FirstOrDefault(f => f.Width == e.Width && f.Batch == e.Batch);
            string inSitu = fit is not null && fit.PerLayer.TryGetValue(e.Operator, out double c) ? $"{c * us:F1}" : "–";
            view.AddRow(e.Operator, e.Width.ToString(), e.Batch.ToString(), e.Context.ToString(), $"{e.DecodeStep:F4}",
                        $"{e.DecodeStep * us:F1}", inSitu);
        }
        foreach (var o in table.Overheads)
        {
            var fit = table.Fits.FirstOrDefault(f => f.Width == o.Width && f.Batch == o.Batch);
            view.AddRow("(step overhead)", o.Width.ToString(), o.Batch.ToString(), "", $"{o.DecodeStep:F4}", $"{o.DecodeStep * us:F1}",
                        fit is null ? "–" : $"{fit.Overhead * us:F1}");
        }
        AnsiConsole.Write(view);
        foreach (var c in table.Calibrations)
            Console.WriteLine($"width {c.Width}, batch {c.Batch}: layers in mixed stacks cost {c.Scale:F2}× their probe entries " +
                              $"({c.Architectures} architectures)");
        foreach (var f in table.Fits)
        {
            Console.WriteLine($"width {f.Width}, batch {f.Batch}: in-situ fit on {f.Architectures} architectures, " +
                              $"RMS residual {f.RmsPercent:F1} %" +
                              (f.Shrinkage > 0 ? $", shrunk toward the probes (λ {f.Shrinkage:G2})" : ""));
            if (f.PerKeyPresent is { Count: > 0 } present)
                Console.WriteLine("  once per step for each key present (µs): " +
                                  string.Join(", ", present.Select(p => $"{p.Key} {p.Value * us:F1}")) +
                                  $"; per change of mixer {f.PerMixerChange * us:F1} µs");
        }
    }

    static Command Check()
    {
        var command = new Command("check", "Compare the table's predictions with real measurements of random hybrid architectures");
        var path = new Option<string>("--table")
        {
            Description = "table file",
            DefaultValueFactory = _ => Path.Combine(".wren", "latency-table.json"),
        };
        var count = new Option<int>("--count") { Description = "random architectures per width", DefaultValueFactory = _ => 20 };
        var context = new Option<int>("--context") { Description = "prompt tokens before decoding", DefaultValueFactory = _ => 256 };
        var seed = new Option<long>("--seed") { Description = "architecture sampling seed", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "batch size (one the table has)", DefaultValueFactory = _ => 1 };
        var output = new Option<string?>("--out") { Description = "write the check as JSON" };
        foreach (var o in new Option[] { path, count, context, seed, batch, output }) command.Add(o);
        var interleave = new InterleaveFlags(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            var table = LatencyTable.Load(result.GetValue(path)!);
            table.EnsureDevice(DeviceIdentity.Current(device));
            LatencyCheck check = null!;
            AnsiConsole.Status().Start("measuring", status => check = table.Check(result.GetValue(count), result.GetValue(context),
                result.GetValue(seed), interleave.Of(result), result.GetValue(batch), new StatusProgress(status)));
            PrintCheck(check);
            if (result.GetValue(output) is { } file) AtomicFile.WriteAllText(file, JsonSerializer.Serialize(check, ProfileCommand.Json));
            return 0;
        });
        return command;
    }

    static void PrintCheck(LatencyCheck check)
    {
        double ms = check.ReferenceMsAtBuild;
        var view = new Table().AddColumns("layers", "family", "width", "measured ms", "sum ms", "sum error", "fit ms", "fit error");
        foreach (var c in check.Checks)
            view.AddRow(Markup.Escape(string.Join(" ", c.LayerTypes)), c.Family.ToString(), c.Width.ToString(), $"{c.Measured * ms:F3}",
                        $"{c.PredictedBySum * ms:F3}",
                        $"{c.SumErrorPercent:+0.0;-0.0} %", c.PredictedByFit is { } p ? $"{p * ms:F3}" : "–",
                        c.FitErrorPercent is { } e ? $"{e:+0.0;-0.0} %" : "–");
        AnsiConsole.Write(view);
        var summary = new Table().AddColumns("predictor", "width", "family", "architectures", "MAPE", "worst", "within ±5 %",
                                             "within ±10 %", "target");
        foreach (var s in check.Summaries)
            summary.AddRow(s.Predictor, s.Width?.ToString() ?? "all", s.Family?.ToString() ?? "all", s.Count.ToString(), $"{s.Mape:F1} %",
                           $"{s.WorstPercent:F1} %", $"{s.Within5:P0}", $"{s.Within10:P0}", s.MeetsTarget ? "met" : "not met");
        AnsiConsole.Write(summary);
        Console.WriteLine($"ms at the table's machine speed (reference step {check.ReferenceMsAtBuild:F3} ms at build, " +
                          $"{check.ReferenceMsNow:F3} ms now); the reference moved ×{check.Drift:F2} during the check; " +
                          $"{check.Remeasured} architecture(s) re-measured after drift. " +
                          "Targets: MAPE ≤ 5 %, ≥ 90 % within ±10 %.");
    }

    public static Command Grid()
    {
        var command = new Command("grid",
                                  "Measure decode latency over a depth × width grid (the latency side of the depth–width study)");
        var template = new Option<string>("--config")
        {
            Description = "template config (a preset or config.json)",
            DefaultValueFactory = _ => "llama-tiny",
        };
        var pattern = new Option<string>("--pattern")
        {
            Description = "layer types of one block, space separated",
            DefaultValueFactory = _ => "a f",
        };
        var depths = new Option<string>("--depths") { Description = "blocks", DefaultValueFactory = _ => "6,12,18,24" };
        var widths = new Option<string>("--widths") { Description = "hidden sizes", DefaultValueFactory = _ => "128,256,384" };
        var prompt = new Option<int>("--prompt-tokens") { Description = "prompt before decoding", DefaultValueFactory = _ => 128 };
        var decode = new Option<int>("--decode-tokens") { Description = "tokens per timed run", DefaultValueFactory = _ => 16 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per cell", DefaultValueFactory = _ => 5 };
        var output = new Option<string>("--out")
        {
            Description = "folder for grid.json and the heatmap",
            DefaultValueFactory = _ => Path.Combine(".wren", "grid"),
        };
        foreach (var o in new Option[] { template, pattern, depths, widths, prompt, decode, repeats, output }) command.Add(o);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction(result =>
        {
            common.Initialize(result);
            var config = HybridConfig.Load(result.GetValue(template)!);
            var blocks = result.GetValue(pattern)!.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            IReadOnlyList<GridPoint> points = [];
            AnsiConsole.Status().Start("measuring", status => points = DepthWidthGrid.Measure(config, blocks,
                Formats.Ints(result.GetValue(depths)!, "--depths"), Formats.Ints(result.GetValue(widths)!, "--widths"),
                result.GetValue(prompt), result.GetValue(decode), result.GetValue(repeats), new StatusProgress(status)));
            var widthList = points.Select(p => p.Width).Distinct().Order().ToList();
            var view = new Table().AddColumn("depth \\ width");
            foreach (var w in widthList) view.AddColumn(w.ToString());
            foreach (var d in points.Select(p => p.Depth).Distinct().Order())
                view.AddRow([d.ToString(), .. widthList.Select(w => points.First(p => p.Depth == d && p.Width == w))
                    .Select(p => $"{p.MsPerToken.Median:F2} ms ({p.Parameters / 1e6:F1}M)")]);
            AnsiConsole.Write(view);
            string folder = result.GetValue(output)!;
            Directory.CreateDirectory(folder);
            AtomicFile.WriteAllText(Path.Combine(folder, "grid.json"), JsonSerializer.Serialize(points, ProfileCommand.Json));
            DepthWidthGrid.Heatmap(points, Path.Combine(folder, "latency-heatmap"));
            Console.WriteLine($"wrote {Path.Combine(folder, "grid.json")} and latency-heatmap.png/.svg");
            return 0;
        });
        return command;
    }
}
