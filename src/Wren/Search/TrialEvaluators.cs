using Wren.Data;
using Wren.Models;
using Wren.Training;

namespace Wren.Search;

/// <summary>Scores one trial: its proxy loss (lower is better).</summary>
public interface ITrialEvaluator
{
    double Evaluate(Trial trial, CancellationToken cancellation);
}

/// <summary>
/// The short-training proxy (method §3): train the candidate for the space's fixed budget on the study's dataset
/// and return the validation loss. The same seed and batches for every candidate, so only the architecture differs.
/// </summary>
public sealed class ProxyTrainer(SearchSpace space, TokenDataset data, string scratch, double stepsFactor = 1) : ITrialEvaluator
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

/// <summary>
/// A stand-in for training, for dry runs of a search setup (stores, workers, leases) in seconds: a fixed, smooth
/// function of the architecture (more DeltaNet/Mamba2 and parameters help, attention costs a little), after
/// waiting <see cref="ProxySettings.SyntheticSeconds"/>.
/// </summary>
public sealed class SyntheticFitness(SearchSpace space) : ITrialEvaluator
{
    public double Evaluate(Trial trial, CancellationToken cancellation)
    {
        if (space.Proxy.SyntheticSeconds > 0) Task.Delay(TimeSpan.FromSeconds(space.Proxy.SyntheticSeconds), cancellation).Wait(cancellation);
        var layers = Architecture.Parse(trial.Architecture, space).Layers(space);
        double mixers = Math.Max(1, layers.Count(l => l != "f"));
        return 4.0 + 2.0 / Math.Sqrt(1 + trial.Parameters / 1e5)
             - 0.3 * layers.Count(l => l is "deltanet" or "gdn") / mixers
             - 0.2 * layers.Count(l => l == "m2") / mixers
             + 0.1 * Math.Abs(layers.Count(l => l == "f") / mixers - 1);
    }
}
