using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Models;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary><c>wren train</c>: train a hybrid on a prepared dataset, resumably, into an HF model folder.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var command = new Command("train", "Train a hybrid model on a prepared dataset (wren data prepare); resumable");
        var config = new Option<string?>("--config")
        {
            Description = "model config.json or preset (vocab_size is set from the dataset's tokenizer)",
        };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var output = new Option<string>("--out") { Description = "run folder", Required = true };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its latest checkpoint" };
        var metaTokens = new Option<int?>("--meta-tokens") { Description = "override num_memory_tokens (0 = none)" };
        foreach (var o in new Option[] { config, data, output, resume, metaTokens }) command.Add(o);
        var flags = new TrainingFlags(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            NewRun? start = null;
            if (result.GetValue(config) is { } configPath)
            {
                var model = HybridConfig.Load(configPath);
                start = new NewRun(model with { NumMemoryTokens = result.GetValue(metaTokens) ?? model.NumMemoryTokens },
                                   flags.Read(result));
            }
            else if (!result.GetValue(resume)) throw new WrenException("give --config (a config.json or preset) to start a run, or " +
                                                                       "--resume to continue one");
            using var trainer = Trainer.Open(result.GetValue(output)!, dataset, start, result.GetValue(resume), flags.ReadLength(result),
                                            flags.ReadSchedule(result));
            string again = Resumable.Command(["train", "--data", result.GetValue(data)!, "--out", result.GetValue(output)!, "--resume"]);
            var outcome = Resumable.Run(again, () => TrainingConsole.Run(trainer, cancellation));
            AnsiConsole.MarkupLine($"model: [bold]{Markup.Escape(outcome.ModelFolder)}[/] — try " +
                                   $"[bold]wren generate --model {Markup.Escape(outcome.ModelFolder)} --prompt \"...\"[/]");
            return Task.FromResult(0);
        });
        return command;
    }
}
