using System.CommandLine;
using System.Text;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Data;
using Wren.Models;
using Wren.Scaling;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary><c>wren scaling sweep</c>: the depth–width study — train a grid, time it, fit L(D, W), recommend a shape for a budget.</summary>
internal static class ScalingCommand
{
    public static Command Create()
    {
        var command = new Command("scaling", "Depth–width scaling study");
        var sweep = new Command("sweep", "Train a (depth, width) grid for a fixed budget, measure latency, fit L(D, W) = L0 + a·D^-α + b·W^-β");
        var config = new Option<string>("--config") { Description = "template config (preset or config.json)", DefaultValueFactory = _ => "flash-quick" };
        var pattern = new Option<string>("--pattern") { Description = "block repeated D times (layer types)", DefaultValueFactory = _ => "a f" };
        var depths = new Option<string>("--depths") { Description = "depths (blocks)", DefaultValueFactory = _ => "1,2,3,4" };
        var widths = new Option<string>("--widths") { Description = "widths", DefaultValueFactory = _ => "128,192,256" };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var steps = new Option<long>("--steps") { Description = "training steps per shape", DefaultValueFactory = _ => 60 };
        var batch = new Option<int>("--batch-size") { Description = "sequences per step", DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { Description = "tokens per sequence", DefaultValueFactory = _ => 128 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 2e-3 };
        var decode = new Option<int>("--decode-tokens") { Description = "tokens decoded per latency measurement", DefaultValueFactory = _ => 64 };
        var holdout = new Option<string?>("--holdout-depths") { Description = "depths held out of the fit to test extrapolation (default: the largest)" };
        var budget = new Option<double?>("--budget-ms") { Description = "decode latency budget (ms/token) for the recommendation (default: the median measured)" };
        var output = new Option<string>("--out") { Description = "study folder (results resume from sweep.json)", Required = true };
        var remeasure = new Option<bool>("--remeasure-latency") { Description = "time every shape in sweep.json again (e.g. on the target device), keeping the losses" };
        foreach (var o in new Option[] { config, pattern, depths, widths, data, steps, batch, seqLen, lr, decode, holdout, budget, output, remeasure }) sweep.Add(o);
        var common = new CommonOptions(sweep, withDType: false);
        var evaluation = new EvalTaskOptions(sweep);
        sweep.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            var depthList = ProfileCommand.ParseInts(result.GetValue(depths)!, "--depths");
            var widthList = ProfileCommand.ParseInts(result.GetValue(widths)!, "--widths");
            var layers = result.GetValue(pattern)!.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            foreach (var layer in layers) OperatorRegistry.Get(layer);
            var held = result.GetValue(holdout) is { } h ? ProfileCommand.ParseInts(h, "--holdout-depths") : [depthList.Max()];
            string folder = result.GetValue(output)!;
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            var proxy = new TrainingOptions { Steps = result.GetValue(steps), BatchSize = result.GetValue(batch), SeqLen = result.GetValue(seqLen), LearningRate = result.GetValue(lr), WarmupSteps = Math.Max(1, result.GetValue(steps) / 8) };
            IReadOnlyList<SweepPoint> points = [];
            AnsiConsole.Status().Start("sweeping", status => points = DepthWidthSweep.Run(HybridConfig.Load(result.GetValue(config)!), layers, depthList, widthList,
                dataset, proxy, result.GetValue(decode), folder, new StatusProgress(status), cancellation, result.GetValue(remeasure),
                evaluation.Read(result)));
            double budgetMs = result.GetValue(budget) ?? points.Select(p => p.DecodeMsPerToken).Order().ElementAt(points.Count / 2);
            var analysis = DepthWidthSweep.Analyze(points, p => held.Contains(p.Depth), budgetMs);
            DepthWidthSweep.FrontierPlot(points, Path.Combine(folder, "frontier"));

            var text = new StringBuilder($"# Depth–width sweep\n\nPattern `{string.Join(" ", layers)}` × D at width W, {proxy.TotalSteps} steps × {proxy.TokensPerStep:N0} tokens each; " +
                                         $"latency: batch-1 decode ms/token; mean acc over the --eval-tasks where measured.\n\n" +
                                         "| depth | width | params | val loss | val PPL | decode ms/token | fit | mean acc |\n" +
                                         "|---|---|---|---|---|---|---|---|\n");
            foreach (var p in points.OrderBy(p => p.Depth).ThenBy(p => p.Width))
                text.AppendLine($"| {p.Depth} | {p.Width} | {p.Parameters / 1e6:F2}M | {p.ValLoss:F4} | {p.ValPerplexity:F2} | " +
                                $"{p.DecodeMsPerToken:F2} | " +
                                $"{(held.Contains(p.Depth) ? "held out" : "fitted")} | {p.Accuracy:F4} |");
            text.AppendLine($"\nFitted on perplexity: {analysis.Law} (RMS residual {analysis.Law.RmsError:F3}).\n");
            text.AppendLine("| held-out shape | measured PPL | predicted PPL | error |\n|---|---|---|---|");
            foreach (var (p, predicted, error) in analysis.HeldOut) text.AppendLine($"| {p.Depth}×{p.Width} | {p.ValPerplexity:F2} | {predicted:F2} | {error:F1} % |");
            if (analysis.HeldOut.Count > 0) text.AppendLine($"\nMean extrapolation error {analysis.HeldOut.Average(e => e.ErrorPercent):F1} % (the method: within 5.3 %).");
            text.AppendLine(analysis.Recommended is { } r
                ? $"\nFor a budget of {budgetMs:F2} ms/token: depth {r.Depth}, width {r.Width} (predicted PPL {analysis.RecommendedPredicted:F2}, measured {r.ValPerplexity:F2}, {r.DecodeMsPerToken:F2} ms/token)."
                : $"\nNo measured shape decodes within {budgetMs:F2} ms/token.");
            text.AppendLine("\n![frontier](frontier.png)");
            Checkpoint.WriteAtomically(Path.Combine(folder, "report.md"), text.ToString());
            Console.WriteLine(text);
            return Task.FromResult(0);
        });
        command.Add(sweep);
        return command;
    }
}
