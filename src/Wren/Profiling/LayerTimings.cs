using System.Diagnostics;
using TorchSharp;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>
/// Accumulated wall time per layer (seconds) of the forwards run while it observes the model
/// (<see cref="HybridForCausalLM.Observe"/>), and of the whole runs they belong to.
/// </summary>
public sealed class LayerTimings(int layers) : ILayerObserver
{
    long started;

    public double[] Seconds { get; } = new double[layers];

    /// <summary>Wall time of the enclosing runs (set by the caller), so that layers + everything else adds up.</summary>
    public double RunSeconds { get; set; }

    public void Entering(int layer) => started = Stopwatch.GetTimestamp();

    public void Left(int layer, Tensor output)
    {
        if (output.device.type == DeviceType.CUDA) cuda.synchronize();   // time the work, not the launch
        Seconds[layer] += Stopwatch.GetElapsedTime(started).TotalSeconds;
    }
}
