using System.CommandLine;
using System.Text.Json;
using Wren.Common;
using Wren.Inference;
using Wren.Modules;

namespace Wren.Cli.Commands;

/// <summary><c>wren accuracy</c>: logit error, greedy agreement and perplexity change of bf16, int8 and 4-bit weights against
/// fp32.</summary>
internal static class AccuracyCommand
{
    public static Command Create()
    {
        var command = new Command("accuracy", "Compare bf16, int8, q4 and q4k weights with float32 (logits, greedy tokens, perplexity)");
        var model = new Option<string?>("--model") { Description = "model folder (the float32 reference)" };
        var config = new Option<string?>("--config") { Description = "config.json or preset with seeded random weights (no --model)" };
        var data = new Option<string?>("--data") { Description = "prepared dataset folder: prompt and validation windows for perplexity" };
        var precisions = new Option<string>("--dtype") { Description = "bfloat16, int8, q4, q4k or all", DefaultValueFactory = _ => "all" };
        var greedy = new Option<int>("--greedy-tokens") { Description = "greedy decode steps compared", DefaultValueFactory = _ => 256 };
        var windows = new Option<int>("--windows") { Description = "validation windows for perplexity", DefaultValueFactory = _ => 16 };
        var seqLen = new Option<int>("--seq-len") { Description = "tokens per validation window", DefaultValueFactory = _ => 256 };
        var output = new Option<string?>("--json") { Description = "also write the report as JSON to this file" };
        precisions.AcceptOnlyFromAmong("bfloat16", "int8", "q4", "q4k", "all");
        foreach (var o in new Option[] { model, config, data, precisions, greedy, windows, seqLen, output }) command.Add(o);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            string chosen = result.GetValue(precisions)!;
            var options = new PrecisionAccuracyOptions(result.GetValue(model), result.GetValue(config), result.GetValue(data))
            {
                Precisions = chosen == "all"
                    ? [WeightPrecision.BFloat16, WeightPrecision.Int8, WeightPrecision.Q4, WeightPrecision.Q4K]
                    : [WeightPrecisions.Parse(chosen)],
                GreedyTokens = result.GetValue(greedy), ValidationWindows = result.GetValue(windows),
                SequenceLength = result.GetValue(seqLen),
            };
            var report = PrecisionAccuracyReport.Measure(options, device);
            Console.WriteLine(report.ToMarkdown());
            if (result.GetValue(output) is { } path)
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(report, ProfileCommand.Json));
            return 0;
        });
        return command;
    }
}
