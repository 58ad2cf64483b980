using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Models;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary>
/// <c>wren experiment wnorm|meta-tokens</c>: the same hybrid trained twice on the same tokens (same seed, same batches),
/// once with and once without the method's ingredient (<see cref="Ablation"/>); prints the report.
/// </summary>
internal static class ExperimentCommand
{
    public static Command Create()
    {
        var command = new Command("experiment", "Ablations of the method's training ingredients");
        command.Add(Variant("wnorm", "weight normalization on vs off (off: AdamW weight decay; on: unit-norm projection, no decay)",
            (config, options, _) => Ablation.WeightNorm(config, options)));
        command.Add(Variant("meta-tokens", "meta tokens on vs off", Ablation.MetaTokens));
        return command;
    }

    static Command Variant(string name, string description, Func<HybridConfig, TrainingOptions, int, IReadOnlyList<AblationArm>> arms)
    {
        var command = new Command(name, description);
        var config = new Option<string>("--config")
        {
            Description = "model preset or config.json",
            DefaultValueFactory = _ => "flash-quick",
        };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var output = new Option<string>("--out") { Description = "experiment folder (one run per arm)", Required = true };
        var metaTokens = new Option<int>("--meta-tokens")
        {
            Description = "meta tokens in the 'on' arm (meta-tokens experiment)",
            DefaultValueFactory = _ => 16,
        };
        foreach (var o in new Option[] { config, data, output, metaTokens }) command.Add(o);
        var flags = new TrainingFlags(command);
        var common = new CommonOptions(command, withDType: false);
        var evaluation = new EvalTaskOptions(command);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            var evalOptions = evaluation.Read(result);
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            var chosen = arms(HybridConfig.Load(result.GetValue(config)!), flags.Read(result), result.GetValue(metaTokens));
            var report = Resumable.Run(Resumable.SameCommand(result), () =>
                Ablation.Run(name, result.GetValue(data)!, dataset, chosen, result.GetValue(output)!,
                (arm, trainer) =>
                {
                    AnsiConsole.MarkupLine($"[bold]{name} = {arm.Name}[/]");
                    return TrainingConsole.Run(trainer, cancellation);
                }, evalOptions, cancellation));
            AnsiConsole.WriteLine();
            AnsiConsole.WriteLine(report.ToMarkdown());
            return Task.FromResult(0);
        });
        return command;
    }
}
