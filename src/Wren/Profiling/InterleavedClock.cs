using System.Diagnostics;
using TorchSharp;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>Something whose decode step can be timed again and again: a model with its prompt already in the cache.</summary>
public interface IStepTimer : IDisposable
{
    /// <summary>One timed run: seconds per decode step, averaged over the run's tokens.</summary>
    double StepSeconds();

    /// <summary>Share of all runs' time spent inside the layers (observed per layer), 0–1; the rest is the per-step overhead.</summary>
    double LayerShare { get; }
}

/// <summary>What a table's figures are ratios to: a fixed model (layers by latency key, width, context) and its step at build time.</summary>
/// <param name="LayerKeys">Latency keys of the reference's layers (one of each operator the table measures).</param>
/// <param name="StepSeconds">The reference's batch-1 decode step when the table was built, in seconds.</param>
public sealed record ReferenceStep(IReadOnlyList<string> LayerKeys, int Width, int Context, double StepSeconds);

/// <summary>One figure measured against the reference, interleaved.</summary>
/// <param name="Ratio">Median over passes of candidate step ÷ the mean of the reference steps just before and after it.</param>
/// <param name="ReferenceSeconds">Median reference step during this measurement (the machine's speed at the time).</param>
/// <param name="Spread">(max − min) / median of the reference steps of the kept attempt: how much the machine moved.</param>
/// <param name="Attempts">Measurements taken; more than one when the reference moved beyond the drift tolerance.</param>
public sealed record NormalizedTiming(double Ratio, double ReferenceSeconds, double Spread, int Attempts);

/// <summary>How a figure is measured against the reference.</summary>
public sealed record InterleaveOptions
{
    /// <summary>Tokens decoded per timed run.</summary>
    public int DecodeTokens { get; init; } = 16;
    /// <summary>Candidate runs per measurement, each between two reference runs (A B A B … A).</summary>
    public int Passes { get; init; } = 7;
    /// <summary>Reference spread above this within one measurement means the machine moved: measure again.</summary>
    public double DriftTolerance { get; init; } = 0.10;
    /// <summary>Measurements of one figure at most; the one whose reference moved least is kept.</summary>
    public int MaxAttempts { get; init; } = 3;

    public void Validate()
    {
        if (DecodeTokens < 1 || Passes < 1 || MaxAttempts < 1) throw new WrenException("decode tokens, passes and attempts must be ≥ 1");
        if (DriftTolerance <= 0) throw new WrenException("the drift tolerance must be positive");
    }
}

/// <summary>
/// Noise-cancelling timing: every candidate run sits between two runs of one fixed reference model, and the figure
/// is the median ratio of candidate to reference (A B A B … A). A machine that slows down uniformly — other
/// processes, frequency changes, a noisy neighbour — slows both, so the ratio stays put; a reference that moves
/// within a measurement (spread above <see cref="InterleaveOptions.DriftTolerance"/>) triggers a re-measurement.
/// </summary>
public sealed class InterleavedClock(IStepTimer reference, InterleaveOptions options)
{
    readonly List<double> levels = [];

    /// <summary>Figures measured again because the reference moved during them.</summary>
    public int Remeasured { get; private set; }

    /// <summary>Median reference step of every measurement so far, in order (seconds): the machine's speed over time.</summary>
    public IReadOnlyList<double> ReferenceLevels => levels;

    /// <summary>Largest ÷ smallest reference level seen: how far the machine drifted during the whole build or check.</summary>
    public double Drift => levels.Count == 0 ? 1 : levels.Max() / levels.Min();

    public NormalizedTiming Measure(IStepTimer candidate)
    {
        NormalizedTiming? best = null;
        for (int attempt = 1; attempt <= options.MaxAttempts; attempt++)
        {
            var refs = new List<double> { reference.StepSeconds() };
            var ratios = new List<double>();
            for (int p = 0; p < options.Passes; p++)
            {
                double seconds = candidate.StepSeconds();
                refs.Add(reference.StepSeconds());
                ratios.Add(seconds / ((refs[^2] + refs[^1]) / 2));
            }
            var level = Measurement.Of(refs);
            var timing = new NormalizedTiming(Measurement.Of(ratios).Median, level.Median, level.Spread, attempt);
            best = best is null || timing.Spread < best.Spread ? timing : best with { Attempts = attempt };
            if (timing.Spread <= options.DriftTolerance) break;
            if (attempt < options.MaxAttempts) Remeasured++;
        }
        levels.Add(best!.ReferenceSeconds);
        return best;
    }
}

/// <summary>
/// A real model (random weights) after a prompt of <c>context</c> tokens, decoding <c>tokens</c> greedy steps per run at a
/// batch; every run starts from the same prefilled cache, so every run does the same work.
/// </summary>
public sealed class DecodeRig : IStepTimer
{
    readonly HybridForCausalLM model;
    readonly ModelCache row;
    readonly int batch, context, tokens;
    readonly LayerTimings? timings;

    public DecodeRig(HybridConfig config, int batch, int context, int tokens, int seed = 0, bool observeLayers = false)
    {
        using var _ = no_grad();
        (this.batch, this.context, this.tokens) = (batch, context, tokens);
        model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed);
        model.eval();
        row = LatencyProfiler.Prefilled(model, context, tokens);
        if (observeLayers) timings = new LayerTimings(config.NumLayers);
        StepSeconds();   // warm-up
        if (timings is not null) { Array.Clear(timings.Seconds); timings.RunSeconds = 0; }
    }

    public double StepSeconds()
    {
        using var _ = no_grad();
        using var cache = model.NewCacheFrom(row, batch, context + tokens);
        return LatencyProfiler.DecodeSeconds(model, cache, tokens, timings) / tokens;
    }

    public double LayerShare => timings is null || timings.RunSeconds <= 0 ? 0 : timings.Seconds.Sum() / timings.RunSeconds;

    public void Dispose()
    {
        row.Dispose();
        model.Dispose();
    }
}
