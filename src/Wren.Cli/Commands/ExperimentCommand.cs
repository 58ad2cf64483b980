using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Models;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary>
/// <c>wren experiment wnorm|meta-tokens</c>: the same hybrid trained twice on the same tokens (same seed, same batches),
/// once with and once without the method's ingredient (<see cref="Ablation"/>); prints the report. <c>wren experiment
/// operators</c>: the operator study (<see cref="OperatorStudy"/>).
/// </summary>
internal static class ExperimentCommand
{
    public static Command Create()
    {
        var command = new Command("experiment", "Ablations of the method's training ingredients");
        command.Add(Variant("wnorm", "weight normalization on vs off (off: AdamW weight decay; on: unit-norm projection, no decay)",
            (config, options, _) => Ablation.WeightNorm(config, options)));
        command.Add(Variant("meta-tokens", "meta tokens on vs off", Ablation.MetaTokens));
        command.Add(Operators());
        return command;
    }

    static Command Operators()
    {
        var command = new Command("operators",
            "pure and hybrid models of every operator at equal parameters and tokens: PPL, accuracy, decode latency (method §2)");
        var settingsFile = new Option<string>("--settings")
        {
            Description = "experiment settings file, or built-in operators / operators-small",
            DefaultValueFactory = _ => "operators",
        };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var output = new Option<string>("--out")
        {
            Description = "study folder (one run per design and seed; reruns skip finished ones)",
            Required = true
        };
        var designs = new Option<string[]>("--designs")
        {
            Description = "designs (e.g. a m2 deltanet+m2) instead of the file's",
            AllowMultipleArgumentsPerToken = true
        };
        var seeds = new Option<long[]>("--seeds") { Description = "seeds instead of the file's", AllowMultipleArgumentsPerToken = true };
        var operators = new Option<int?>("--operators") { Description = "layers per model, mixer and FFN alternating (even)" };
        var width = new Option<int?>("--width") { Description = "reference width (the first design's); the others match its parameters" };
        var context = new Option<int?>("--context") { Description = "decode-latency prompt tokens (the paper: 8192)" };
        var passes = new Option<int?>("--passes") { Description = "interleaved latency passes" };
        var budget = new Option<double?>("--memory-budget-gib") { Description = "throughput memory budget in GiB (0 = skip throughput)" };
        var tasks = new Option<string[]>("--eval-tasks")
        {
            Description = "evaluation tasks instead of the file's ('none' for none)",
            AllowMultipleArgumentsPerToken = true
        };
        foreach (var o in new Option[] { settingsFile, data, output, designs, seeds, operators, width, context, passes, budget, tasks })
            command.Add(o);
        CommonOptions.MustBePositive(operators, width, passes);
        var flags = new TrainingFlags(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            var file = OperatorStudySettings.Load(result.GetValue(settingsFile)!);
            var settings = file with
            {
                Designs = result.GetValue(designs) is { Length: > 0 } d ? [.. d] : file.Designs,
                Seeds = result.GetValue(seeds) is { Length: > 0 } s ? [.. s] : file.Seeds,
                Operators = result.GetValue(operators) ?? file.Operators,
                Width = result.GetValue(width) ?? file.Width,
                Training = flags.Read(result, file.Training),
                EvalTasks = result.GetValue(tasks) is { Length: > 0 } t ? t is ["none"] ? [] : [.. t] : file.EvalTasks,
                Latency = file.Latency with
                {
                    Context = result.GetValue(context) ?? file.Latency.Context,
                    Passes = result.GetValue(passes) ?? file.Latency.Passes,
                    MemoryBudgetGib = result.GetValue(budget) ?? file.Latency.MemoryBudgetGib,
                },
            };
            settings.Validate("experiment settings (with the command-line overrides)");
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            var report = Resumable.Run(Resumable.SameCommand(result), () =>
                OperatorStudy.Run(settings, result.GetValue(data)!, dataset, result.GetValue(output)!, (design, seed, trainer) =>
                {
                    AnsiConsole.MarkupLine($"[bold]{design.Name}[/] seed {seed} ({design.Parameters:N0} parameters)");
                    return TrainingConsole.Run(trainer, cancellation);
                }, AnsiConsole.WriteLine, cancellation));
            AnsiConsole.WriteLine();
            AnsiConsole.WriteLine(report.ToMarkdown());
            return Task.FromResult(0);
        });
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
