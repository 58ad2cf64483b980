using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Profiling;

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
