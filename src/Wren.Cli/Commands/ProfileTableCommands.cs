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

    static Command Build()
    {
        var command = new Command("build", "Measure the latency table of this device");
        var template = new Option<string>("--config") { Description = "template config: every setting but layers and width (a preset or config.json)", DefaultValueFactory = _ => "flash-tiny" };
        var operators = new Option<string>("--operators") { Description = "layer types to measure (windowed attention as a:w512)", DefaultValueFactory = _ => "a,m2,deltanet,gdn,f" };
        var widths = new Option<string>("--widths") { Description = "hidden sizes", DefaultValueFactory = _ => "128,256" };
        var batches = new Option<string>("--batches") { Description = "batch sizes", DefaultValueFactory = _ => "1" };
        var contexts = new Option<string>("--contexts") { Description = "contexts (prompt tokens) for attention", DefaultValueFactory = _ => "128,512,2048" };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per entry", DefaultValueFactory = _ => 5 };
        var calibration = new Option<int>("--calibration") { Description = "random mixed architectures per width for the in-context scale (0 = none)", DefaultValueFactory = _ => 8 };
        var output = new Option<string>("--out") { Description = "table file", DefaultValueFactory = _ => Path.Combine(".wren", "latency-table.json") };
        foreach (var o in new Option[] { template, operators, widths, batches, contexts, repeats, calibration, output }) command.Add(o);
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
                Formats.Ints(result.GetValue(contexts)!, "--contexts"), DeviceIdentity.Current(device), repeats: result.GetValue(repeats),
                calibrationArchitectures: result.GetValue(calibration), progress: new StatusProgress(status)));
            table.Save(result.GetValue(output)!);
            var view = new Table().AddColumns("operator", "width", "batch", "context", "decode step µs/layer", "prefill µs/token/layer");
            foreach (var e in table.Layers)
                view.AddRow(e.Operator, e.Width.ToString(), e.Batch.ToString(), e.Context.ToString(), $"{e.DecodeStepSeconds * 1e6:F1}",
                            $"{e.PrefillSecondsPerToken * 1e6:F2}");
            foreach (var o in table.Overheads)
                view.AddRow("(step overhead)", o.Width.ToString(), o.Batch.ToString(), "", $"{o.DecodeStepSeconds * 1e6:F1}",
                            $"{o.PrefillSecondsPerToken * 1e6:F2}");
            AnsiConsole.Write(view);
            foreach (var c in table.Calibrations)
                Console.WriteLine($"width {c.Width}, batch {c.Batch}: layers in mixed stacks cost {c.Scale:F2}× their probe entries " +
                                  $"({c.Architectures} architectures)");
            Console.WriteLine($"wrote {result.GetValue(output)} for device {table.Device.Processor} (id {table.Device.Id})");
            return 0;
        });
        return command;
    }

    static Command Check()
    {
        var command = new Command("check", "Compare the table's predictions with real measurements of random hybrid architectures");
        var path = new Option<string>("--table") { Description = "table file", DefaultValueFactory = _ => Path.Combine(".wren", "latency-table.json") };
        var count = new Option<int>("--count") { Description = "random architectures", DefaultValueFactory = _ => 20 };
        var context = new Option<int>("--context") { Description = "prompt tokens before decoding", DefaultValueFactory = _ => 256 };
        var seed = new Option<long>("--seed") { Description = "architecture sampling seed", DefaultValueFactory = _ => 1 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per architecture", DefaultValueFactory = _ => 5 };
        var output = new Option<string?>("--out") { Description = "write the checks as JSON" };
        foreach (var o in new Option[] { path, count, context, seed, repeats, output }) command.Add(o);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            var table = LatencyTable.Load(result.GetValue(path)!);
            table.EnsureDevice(DeviceIdentity.Current(device));
            IReadOnlyList<PredictionCheck> checks = [];
            AnsiConsole.Status().Start("measuring", status =>
                checks = table.Check(result.GetValue(count), result.GetValue(context), result.GetValue(seed),
                repeats: result.GetValue(repeats), progress: new StatusProgress(status)));
            var view = new Table().AddColumns("layers", "width", "predicted ms/token", "measured ms/token", "error");
            foreach (var c in checks)
                view.AddRow(Markup.Escape(string.Join(" ", c.LayerTypes)), c.Width.ToString(), $"{c.PredictedMs:F3}", $"{c.MeasuredMs:F3}",
                            $"{c.AbsolutePercentError:F1} %");
            AnsiConsole.Write(view);
            double mape = checks.Average(c => c.AbsolutePercentError);
            Console.WriteLine($"mean absolute percentage error over {checks.Count} architectures: {mape:F1} % (target ≤ 5 %)");
            if (result.GetValue(output) is { } file) AtomicFile.WriteAllText(file,
                                                                             JsonSerializer.Serialize(new { mape, checks },
                                                                                 ProfileCommand.Json));
            return 0;
        });
        return command;
    }

    public static Command Grid()
    {
        var command = new Command("grid", "Measure decode latency over a depth × width grid (the latency side of the depth–width study)");
        var template = new Option<string>("--config") { Description = "template config (a preset or config.json)", DefaultValueFactory = _ => "llama-tiny" };
        var pattern = new Option<string>("--pattern") { Description = "layer types of one block, space separated", DefaultValueFactory = _ => "a f" };
        var depths = new Option<string>("--depths") { Description = "blocks", DefaultValueFactory = _ => "6,12,18,24" };
        var widths = new Option<string>("--widths") { Description = "hidden sizes", DefaultValueFactory = _ => "128,256,384" };
        var prompt = new Option<int>("--prompt-tokens") { Description = "prompt before decoding", DefaultValueFactory = _ => 128 };
        var decode = new Option<int>("--decode-tokens") { Description = "tokens per timed run", DefaultValueFactory = _ => 16 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs per cell", DefaultValueFactory = _ => 5 };
        var output = new Option<string>("--out") { Description = "folder for grid.json and the heatmap", DefaultValueFactory = _ => Path.Combine(".wren", "grid") };
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
                view.AddRow([d.ToString(), .. widthList.Select(w => points.First(p => p.Depth == d && p.Width == w)).Select(p =>
                    $"{p.MsPerToken.Median:F2} ms ({p.Parameters / 1e6:F1}M)")]);
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
