using Spectre.Console;
using Wren.Models;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary>Runs a trainer with a live progress bar: what is trained (or resumed), the bar, and the outcome.</summary>
internal static class TrainingConsole
{
    /// <summary>Trains with the bar; <paramref name="log"/> (a rank's log under mpirun) sees every step too.</summary>
    public static TrainingResult Run(Trainer trainer, CancellationToken cancellation, IProgress<TrainingStatus>? log = null)
    {
        var config = trainer.Model.Config;
        var options = trainer.Options;
        var origin = trainer.Origin;
        var footprint = ModelFootprint.Of(config);
        if (origin.NothingToTrain)
        {
            AnsiConsole.MarkupLine($"the run already reached step {origin.FromStep} (≥ the {origin.TotalSteps} steps asked): " +
                                   "reusing its model, config and options, nothing to train " +
                                   "(more --steps extend the run; another --out starts a new one)");
            return Done(trainer.Run(cancellation: cancellation));
        }
        if (origin.Resumed)
            AnsiConsole.MarkupLine($"resuming from step {origin.FromStep} with the run's config, options and weights (length " +
                                   $"{origin.TotalSteps} steps)");
        AnsiConsole.MarkupLine($"[bold]train[/] {footprint.Parameters / 1e6:F2}M parameters " +
                               $"({Markup.Escape(string.Join(" ", config.LayerTypes))}), " +
                               $"{options.TotalSteps} steps × {options.TokensPerStep:N0} tokens, {options.Schedule} LR " +
                               $"{options.LearningRate:G3}, " +
                               $"{(options.WeightNorm ? "weight norm on (no decay)" : $"weight decay {options.WeightDecay:G3}")}, " +
                               $"{config.NumMemoryTokens} meta tokens" +
                               (trainer.Group.Size > 1 ? $", data-parallel over {trainer.Group.Size} ranks (tokens/s of all)" : ""));
        TrainingResult? outcome = null;
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                     new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("training", maxValue: options.TotalSteps);
                task.Value = trainer.State.Step;
                outcome = trainer.Run(new Callback<TrainingStatus>(s =>
                {
                    log?.Report(s);
                    task.Value = s.Step;
                    task.Description = $"step {s.Step}/{s.TotalSteps}  loss {s.Loss:F3}" + (s.ValLoss is { } v ? $"  val {v:F3}" : "") +
                                       $"  lr {s.LearningRate:E1}  {s.TokensPerSecond:N0} tok/s  ETA {s.Remaining:hh\\:mm\\:ss}";
                }), cancellation);
            });
        return Done(outcome!);
    }

    static TrainingResult Done(TrainingResult outcome)
    {
        AnsiConsole.MarkupLine($"done: step {outcome.Step}, {outcome.Tokens:N0} tokens in {outcome.Seconds:F0} s; train loss " +
                               $"{outcome.Loss:F3}, " +
                               $"validation loss [bold]{outcome.ValLoss:F3}[/] (perplexity {outcome.ValPerplexity:G4}); " +
                               $"metrics and loss.png in {Markup.Escape(Path.GetDirectoryName(outcome.ModelFolder)!)}");
        return outcome;
    }
}
