namespace Wren.Profiling;

/// <summary>Something whose decode step can be timed again and again: a model with its prompt already in the cache.</summary>
public interface IStepTimer : IDisposable
{
    /// <summary>One timed run: seconds per decode step, averaged over the run's tokens.</summary>
    double StepSeconds();

    /// <summary>Share of all runs' time spent inside the layers (observed per layer), 0–1; the rest is the per-step overhead.</summary>
    double LayerShare { get; }
}
