using Wren.Data;
using Wren.Distributed;
using Wren.Models;
using Wren.Training;

namespace Wren.Search;

/// <summary>
/// The short-training proxy (Nemotron-Flash paper, evolutionary search): train the candidate for the space's fixed budget on the study's
/// dataset and return the validation loss. The same seed and batches for every candidate, so only the architecture differs.
/// With a <paramref name="group"/> of several ranks every rank calls <see cref="Evaluate"/> with the same trial and they
/// train it data parallel (<see cref="Trainer"/>); the run folder is named from the trial and its attempt, the same on every
/// rank, and rank 0 alone writes and removes it.
/// </summary>
internal sealed class ProxyTrainer(SearchSpace space, TokenDataset data, string scratch, double stepsFactor = 1, ProcessGroup? group = null)
    : ITrialEvaluator
{
    readonly ProcessGroup group = group ?? ProcessGroup.Single;
    readonly HybridConfig template = space.TemplateConfig();

    public HybridConfig Config(Trial trial) =>
        data.Manifest.ModelConfig(space.Config(Architecture.Parse(trial.Architecture, space), trial.Width, template));

    public double Evaluate(Trial trial, CancellationToken cancellation)
    {
        var options = space.Proxy.Training(space.Evolution.Seed, stepsFactor);
        string run = Path.Combine(scratch, $"trial-{trial.Number}-attempt-{trial.Attempts}");
        try
        {
            using var trainer = Trainer.Open(run, data, new NewRun(Config(trial), options), group: group);
            return trainer.Run(cancellation: cancellation).ValLoss;
        }
        finally
        {
            if (group.IsRoot && Directory.Exists(run)) Directory.Delete(run, recursive: true);
        }
    }
}
