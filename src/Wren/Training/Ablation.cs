using Wren.Common;
using Wren.Data;
using Wren.Evaluation;
using Wren.Models;
using Wren.Tokenization;

namespace Wren.Training;

/// <summary>One arm of an ablation: a name ("off", "on"), the model config and the training options.</summary>
public sealed record AblationArm(string Name, HybridConfig Config, TrainingOptions Options);

/// <summary>
/// A trained arm: its result, the L2 norms (mean, min, max) of the rows/columns weight normalization projects,
/// measured on the final weights, the parameter count, and the accuracy on the evaluation tasks when they were asked for.
/// </summary>
public sealed record ArmResult(AblationArm Arm, TrainingResult Result, double NormMean, double NormMin, double NormMax, long Parameters,
                               EvalReport? Accuracy = null);

/// <summary>The two arms of an ablation side by side; <see cref="ToMarkdown"/> prints the table and the deltas.</summary>
public sealed record AblationReport(string Name, string Data, IReadOnlyList<ArmResult> Arms)
{
    public string ToMarkdown()
    {
        var first = Arms[0].Arm;
        var lines = new List<string>
        {
            $"# Experiment: {Name}", "",
            $"Model: `{string.Join(" ", first.Config.LayerTypes)}`, hidden {first.Config.HiddenSize}, vocab {first.Config.VocabSize}; " +
            $"data `{Data}`; " +
            $"{first.Options.TotalSteps} steps × {first.Options.TokensPerStep:N0} tokens, {first.Options.Schedule} LR " +
            $"{first.Options.LearningRate:G3}, " +
            $"seed {first.Options.Seed}.", "",
            "| arm | parameters | final train loss | validation loss | validation PPL | weight decay | " +
            "row/column norms: mean (min–max) | wall time |",
            "|---|---|---|---|---|---|---|---|",
        };
        lines.AddRange(Arms.Select(a =>
            $"| {Name} {a.Arm.Name} | {a.Parameters / 1e6:F2}M | {a.Result.Loss:F3} | {a.Result.ValLoss:F4} | " +
            $"{a.Result.ValPerplexity:F2} | " +
            $"{a.Arm.Options.EffectiveWeightDecay:G3} | {a.NormMean:F3} ({a.NormMin:F3}–{a.NormMax:F3}) | {a.Result.Seconds:F0} s |"));
        double delta = Arms[1].Result.ValLoss - Arms[0].Result.ValLoss;
        double deltaPpl = Arms[1].Result.ValPerplexity - Arms[0].Result.ValPerplexity;
        lines.AddRange(["", $"Δ validation loss (on − off): {delta:+0.0000;-0.0000}; Δ PPL: {deltaPpl:+0.00;-0.00}.",
                        "Norms are the L2 norms of the rows/columns that weight normalization would project " +
                        "(Nemotron-Flash paper, weight normalization), measured on the final weights."]);
        foreach (var arm in Arms.Where(a => a.Accuracy is not null))
            lines.AddRange(["", $"Accuracy, {Name} {arm.Arm.Name}: {arm.Accuracy!.Summary()}."]);
        return string.Join("\n", lines) + "\n";
    }
}

/// <summary>
/// The method's training ingredients ablated: the same hybrid trained twice on the same tokens (same seed, same batches),
/// once without and once with the ingredient. Each arm is a run folder that resumes if interrupted.
/// </summary>
public static class Ablation
{
    /// <summary>Weight normalization off (AdamW weight decay) vs on (unit-norm projection, no decay).</summary>
    public static IReadOnlyList<AblationArm> WeightNorm(HybridConfig config, TrainingOptions options) =>
        [new("off", config, options with { WeightNorm = false }), new("on", config, options with { WeightNorm = true })];

    /// <summary>No meta tokens vs <paramref name="metaTokens"/> of them.</summary>
    public static IReadOnlyList<AblationArm> MetaTokens(HybridConfig config, TrainingOptions options, int metaTokens) =>
        [new("off", config with { NumMemoryTokens = 0 }, options), new("on", config with { NumMemoryTokens = metaTokens }, options)];

    /// <summary>
    /// Trains every arm in <c>folder/&lt;arm&gt;</c> (through <paramref name="train"/>, which may show progress), then writes
    /// <c>report.md</c> and the arms' validation curves (<c>validation-loss.png/svg</c>). With <paramref name="evaluation"/>,
    /// each trained arm is also scored on those tasks (<see cref="Evaluator"/>; off by default: it costs time).
    /// </summary>
    public static AblationReport Run(string name, string dataPath, TokenDataset data, IReadOnlyList<AblationArm> arms, string folder,
                                     Func<AblationArm, Trainer, TrainingResult> train, EvalOptions? evaluation = null,
                                     CancellationToken cancellation = default)
    {
        var results = new List<ArmResult>();
        foreach (var arm in arms)
        {
            TrainingResult outcome;
            using (var trainer = Trainer.Open(Path.Combine(folder, arm.Name), data,
                                              new NewRun(data.Manifest.ModelConfig(arm.Config), arm.Options), resume: true))
                outcome = train(arm, trainer);
            using var model = HybridForCausalLM.FromPretrained(outcome.ModelFolder);
            var (mean, min, max) = WeightNormalization.Statistics(WeightNormalization.Targets(model));
            EvalReport? accuracy = null;
            if (evaluation is not null)
            {
                var tokenizer = TokenizerLoader.ForModel(outcome.ModelFolder, model.Config);
                accuracy = Evaluator.Run(model, tokenizer, evaluation, cancellation: cancellation) with { Model = outcome.ModelFolder };
            }
            results.Add(new ArmResult(arm, outcome, mean, min, max, ModelFootprint.Of(model.Config).Parameters, accuracy));
        }
        var report = new AblationReport(name, dataPath, results);
        AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), report.ToMarkdown());
        Charts.Save(Charts.Lines($"{name}: validation loss", "tokens", "validation loss (nats/token)", results.Select(r =>
        {
            var entries = MetricsLog.Read(Path.Combine(folder, r.Arm.Name, MetricsLog.FileName)).Where(e => e.ValLoss is not null).ToList();
            return ($"{name} {r.Arm.Name}", entries.Select(e => (double)e.Tokens).ToArray(),
                    entries.Select(e => e.ValLoss!.Value).ToArray());
        })), Path.Combine(folder, "validation-loss"));
        return report;
    }
}
