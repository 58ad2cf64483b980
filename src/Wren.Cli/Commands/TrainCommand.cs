using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Distributed;
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
        var launch = new MpiLaunch(command);
        command.SetAction((result, cancellation) => Task.FromResult(launch.Run(result, group =>
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
            string run = result.GetValue(output)!;
            using var log = group == ProcessGroup.Single ? null : new RankLog(run, group);
            try
            {
                using var trainer = Trainer.Open(run, dataset, start, result.GetValue(resume), flags.ReadLength(result),
                                                 flags.ReadSchedule(result), group);
                if (!group.IsRoot)
                {
                    trainer.Run(log, cancellation);
                    return 0;
                }
                string again = Resumable.Command(["train", "--data", result.GetValue(data)!, "--out", run, "--resume"]);
                var outcome = Resumable.Run(again, () => TrainingConsole.Run(trainer, cancellation, log));
                AnsiConsole.MarkupLine($"model: [bold]{Markup.Escape(outcome.ModelFolder)}[/] — try " +
                                       $"[bold]wren generate --model {Markup.Escape(outcome.ModelFolder)} --prompt \"...\"[/]");
                return 0;
            }
            catch (Exception e)
            {
                log?.Write($"error: {e.Message}");
                throw;
            }
        })));
        return command;
    }
}
