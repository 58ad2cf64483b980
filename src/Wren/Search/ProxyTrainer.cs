using Wren.Data;
using Wren.Models;
using Wren.Training;

namespace Wren.Search;

/// <summary>
/// The short-training proxy (Nemotron-Flash paper, evolutionary search): train the candidate for the space's fixed budget on the study's
/// dataset and return the validation loss. The same seed and batches for every candidate, so only the architecture differs.
/// </summary>
internal sealed class ProxyTrainer(SearchSpace space, TokenDataset data, string scratch, double stepsFactor = 1) : ITrialEvaluator
{
    readonly HybridConfig template = space.TemplateConfig();

    public HybridConfig Config(Trial trial) =>
        data.Manifest.ModelConfig(space.Config(Architecture.Parse(trial.Architecture, space), trial.Width, template));

    public double Evaluate(Trial trial, CancellationToken cancellation)
    {
        var options = space.Proxy.Training(space.Evolution.Seed, stepsFactor);
        string run = Path.Combine(scratch, $"trial-{trial.Number}-{Guid.NewGuid().ToString("N")[..8]}");
        try
        {
            using var trainer = Trainer.Open(run, data, new NewRun(Config(trial), options));
            return trainer.Run(cancellation: cancellation).ValLoss;
        }
        finally
        {
            if (Directory.Exists(run)) Directory.Delete(run, recursive: true);
        }
    }
}
