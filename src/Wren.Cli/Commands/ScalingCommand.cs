using System.CommandLine;
using System.Text;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Data;
using Wren.Models;
using Wren.Scaling;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary><c>wren scaling sweep</c>: the depth–width study — train a grid, time it, fit L(D, W), recommend a shape for a
/// budget.</summary>
internal static class ScalingCommand
{
    public static Command Create()
    {
        var command = new Command("scaling", "Depth–width scaling study");
        var sweep = new Command("sweep",
                                "Train a (depth, width) grid for a fixed budget, measure latency, fit L(D, W) = L0 + a·D^-α + b·W^-β");
        var config = new Option<string>("--config")
        {
            Description = "template config (preset or config.json)",
            DefaultValueFactory = _ => "flash-quick",
        };
        var pattern = new Option<string>("--pattern")
        {
            Description = "block repeated D times (layer types)",
            DefaultValueFactory = _ => "a f",
        };
        var depths = new Option<string>("--depths") { Description = "depths (blocks)", DefaultValueFactory = _ => "1,2,3,4" };
        var widths = new Option<string>("--widths") { Description = "widths", DefaultValueFactory = _ => "128,192,256" };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var steps = new Option<long>("--steps") { Description = "training steps per shape", DefaultValueFactory = _ => 60 };
        var batch = new Option<int>("--batch-size") { Description = "sequences per step", DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { Description = "tokens per sequence", DefaultValueFactory = _ => 128 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 2e-3 };
        var decode = new Option<int>("--decode-tokens")
        {
            Description = "tokens decoded per timed run (runs alternate with a reference model's)",
            DefaultValueFactory = _ => 16,
        };
        var holdout = new Option<string?>("--holdout-depths")
        {
            Description = "depths held out of the fit to test extrapolation (default: the largest)",
        };
        var budget = new Option<double?>("--budget-ms")
        {
            Description = "decode latency budget (ms/token) for the recommendation (default: the median measured)",
        };
        var output = new Option<string>("--out") { Description = "study folder (results resume from sweep.json)", Required = true };
        var remeasure = new Option<bool>("--remeasure-latency")
        {
            Description = "time every shape in sweep.json again (e.g. on the target device), keeping the losses",
        };
        foreach (var o in new Option[] { config, pattern, depths, widths, data, steps, batch, seqLen, lr, decode, holdout, budget, output,
                                         remeasure })
            sweep.Add(o);
        var common = new CommonOptions(sweep, withDType: false);
        var evaluation = new EvalTaskOptions(sweep);
        var launch = new MpiLaunch(sweep);
        sweep.SetAction((result, cancellation) => Task.FromResult(launch.Run(result, group =>
        {
            common.Initialize(result);
            var proxy = new TrainingOptions
            {
                Steps = result.GetValue(steps), BatchSize = result.GetValue(batch), SeqLen = result.GetValue(seqLen),
                LearningRate = result.GetValue(lr),
                WarmupSteps = Math.Max(1, result.GetValue(steps) / 8),
            };
            var options = new SweepOptions(HybridConfig.Load(result.GetValue(config)!),
                                           result.GetValue(pattern)!.Split(' ', StringSplitOptions.RemoveEmptyEntries),
                                           Formats.Ints(result.GetValue(depths)!, "--depths"), Formats.Ints(result.GetValue(widths)!,
                                               "--widths"),
                                           proxy, result.GetValue(decode), result.GetValue(holdout) is { } h ? Formats.Ints(h,
                                               "--holdout-depths") : [],
                                           result.GetValue(budget), result.GetValue(remeasure), evaluation.Read(result));
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            if (!group.IsRoot)
            {
                SweepReport.Run(options, dataset, result.GetValue(output)!, cancellation: cancellation, group: group);
                return 0;
            }
            SweepReport report = null!;
            Resumable.Run(Resumable.SameCommand(result), () => AnsiConsole.Status().Start("sweeping", status =>
                report = SweepReport.Run(options, dataset, result.GetValue(output)!, new StatusProgress(status), cancellation,
                                         group)!));
            Console.WriteLine(report.ToMarkdown());
            return 0;
        })));
        command.Add(sweep);
        return command;
    }
}
