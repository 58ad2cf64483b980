using System.CommandLine;
using System.Text;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Data;
using Wren.Evaluation;
using Wren.Models;
using Wren.Profiling;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary>
/// <c>wren experiment wnorm|meta-tokens</c>: the same hybrid trained twice on the same tokens (same seed, same batches),
/// once with and once without the method's ingredient; a table of final validation loss/perplexity and weight-norm
/// statistics, a Markdown report and both loss curves in one plot. Each arm resumes if interrupted.
/// </summary>
internal static class ExperimentCommand
{
    sealed record Arm(string Name, HybridConfig Config, TrainingOptions Options);

    public static Command Create()
    {
        var command = new Command("experiment", "Ablations of the method's training ingredients");
        command.Add(Variant("wnorm", "weight normalization on vs off (off: AdamW weight decay; on: unit-norm projection, no decay)",
            (config, options, _) => [new("off", config, options with { WeightNorm = false }), new("on", config, options with { WeightNorm = true })]));
        command.Add(Variant("meta-tokens", "meta tokens on vs off",
            (config, options, metaTokens) => [new("off", config with { NumMemoryTokens = 0 }, options), new("on", config with { NumMemoryTokens = metaTokens }, options)]));
        return command;
    }

    static Command Variant(string name, string description, Func<HybridConfig, TrainingOptions, int, Arm[]> arms)
    {
        var command = new Command(name, description);
        var config = new Option<string>("--config") { Description = "model preset or config.json", DefaultValueFactory = _ => "flash-quick" };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var output = new Option<string>("--out") { Description = "experiment folder (one run per arm)", Required = true };
        var metaTokens = new Option<int>("--meta-tokens") { Description = "meta tokens in the 'on' arm (meta-tokens experiment)", DefaultValueFactory = _ => 16 };
        foreach (var o in new Option[] { config, data, output, metaTokens }) command.Add(o);
        var flags = new TrainCommand.TrainingFlags(command);
        var common = new CommonOptions(command, withDType: false);
        var evaluation = new EvalTaskOptions(command);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            var evalOptions = evaluation.Read(result);
            string folder = result.GetValue(output)!;
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            var baseConfig = TrainCommand.ForDataset(HybridConfig.Load(result.GetValue(config)!), dataset.Manifest);
            var rows = new List<(Arm Arm, TrainingResult Result, (double Mean, double Min, double Max) Norms, long Parameters,
                                 EvalReport? Accuracy)>();
            foreach (var arm in arms(baseConfig, flags.Read(result), result.GetValue(metaTokens)))
            {
                AnsiConsole.MarkupLine($"[bold]{name} = {arm.Name}[/]");
                string run = Path.Combine(folder, arm.Name);
                var outcome = TrainCommand.Run(arm.Config, dataset, arm.Options, run, resume: true, cancellation);
                using var model = Checkpoint.Load(outcome.ModelFolder);
                var accuracy = evalOptions is null ? null : Evaluator.Run(outcome.ModelFolder, evalOptions, cancellation: cancellation);
                rows.Add((arm, outcome, WeightNormalization.Statistics(WeightNormalization.Targets(model)),
                          ModelFootprint.Of(arm.Config).Parameters, accuracy));
            }
            string report = Report(name, result.GetValue(data)!, rows);
            Checkpoint.WriteAtomically(Path.Combine(folder, "report.md"), report);
            var plot = ProfilePlots.Chart($"{name}: validation loss", "tokens", "validation loss (nats/token)", rows.Select(r =>
            {
                var entries = MetricsLog.Read(Path.Combine(folder, r.Arm.Name, MetricsLog.FileName)).Where(e => e.ValLoss is not null).ToList();
                return ($"{name} {r.Arm.Name}", entries.Select(e => (double)e.Tokens).ToArray(), entries.Select(e => e.ValLoss!.Value).ToArray());
            }));
            ProfilePlots.Save(plot, Path.Combine(folder, "validation-loss"));
            AnsiConsole.WriteLine();
            AnsiConsole.WriteLine(report);
            return Task.FromResult(0);
        });
        return command;
    }

    static string Report(string name, string data,
                         List<(Arm Arm, TrainingResult Result, (double Mean, double Min, double Max) Norms, long Parameters,
                               EvalReport? Accuracy)> rows)
    {
        var text = new StringBuilder();
        var first = rows[0].Arm;
        text.AppendLine($"# Experiment: {name}");
        text.AppendLine();
        text.AppendLine($"Model: `{string.Join(" ", first.Config.LayerTypes)}`, hidden {first.Config.HiddenSize}, vocab {first.Config.VocabSize}; " +
                        $"data `{data}`; {first.Options.TotalSteps} steps × {first.Options.TokensPerStep:N0} tokens, {first.Options.Schedule} LR {first.Options.LearningRate:G3}, seed {first.Options.Seed}.");
        text.AppendLine();
        text.AppendLine("| arm | parameters | final train loss | validation loss | validation PPL | weight decay | row/column norms: mean (min–max) | wall time |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var (arm, result, norms, parameters, _) in rows)
            text.AppendLine($"| {name} {arm.Name} | {parameters / 1e6:F2}M | {result.Loss:F3} | {result.ValLoss:F4} | {result.ValPerplexity:F2} | {arm.Options.EffectiveWeightDecay:G3} | " +
                            $"{norms.Mean:F3} ({norms.Min:F3}–{norms.Max:F3}) | {result.Seconds:F0} s |");
        text.AppendLine();
        double delta = rows[1].Result.ValLoss - rows[0].Result.ValLoss;
        text.AppendLine($"Δ validation loss (on − off): {delta:+0.0000;-0.0000}; Δ PPL: {rows[1].Result.ValPerplexity - rows[0].Result.ValPerplexity:+0.00;-0.00}.");
        text.AppendLine("Norms are the L2 norms of the rows/columns that weight normalization would project (method §4), measured on the final weights.");
        foreach (var row in rows.Where(r => r.Accuracy is not null))
            text.AppendLine($"\nAccuracy, {name} {row.Arm.Name}: {row.Accuracy!.Summary()}.");
        return text.ToString();
    }
}
