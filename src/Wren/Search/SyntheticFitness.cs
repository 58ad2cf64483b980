namespace Wren.Search;

/// <summary>
/// A stand-in for training, for dry runs of a search setup (stores, workers, leases) in seconds: a fixed, smooth
/// function of the architecture (more DeltaNet/Mamba2 and parameters help, attention costs a little), after
/// waiting <see cref="ProxySettings.SyntheticSeconds"/>.
/// </summary>
internal sealed class SyntheticFitness(SearchSpace space) : ITrialEvaluator
{
    public double Evaluate(Trial trial, CancellationToken cancellation)
    {
        if (space.Proxy.SyntheticSeconds > 0) Task.Delay(TimeSpan.FromSeconds(space.Proxy.SyntheticSeconds),
                                                         cancellation).Wait(cancellation);
        var layers = Architecture.Parse(trial.Architecture, space).Layers(space);
        double mixers = Math.Max(1, layers.Count(l => l != "f"));
        return 4.0 + 2.0 / Math.Sqrt(1 + trial.Parameters / 1e5)
             - 0.3 * layers.Count(l => l is "deltanet" or "gdn") / mixers
             - 0.2 * layers.Count(l => l == "m2") / mixers
             + 0.1 * Math.Abs(layers.Count(l => l == "f") / mixers - 1);
    }
}
