using System.Diagnostics;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>
/// One fp32 projection y = x·Wᵀ of <see cref="Inputs"/> rows through a [rows, cols] weight, timed one product per call
/// so a benchmark can alternate it with other probes: Wren's route (what a model's projection runs: the matrix–vector
/// kernels for a decode batch, the tiled kernel or libtorch for longer inputs) or libtorch's <c>linear</c> (its GEMM).
/// Two weight copies are rotated, so small products read their weight from beyond the core's caches as a decode step does.
/// </summary>
public sealed class MatMulProbe : IDisposable
{
    readonly Tensor[] weights;
    readonly Tensor x;
    readonly bool libtorch;
    int next;

    /// <param name="rows">Output features.</param>
    /// <param name="cols">Input features.</param>
    /// <param name="inputs">Rows of x (tokens × sequences).</param>
    /// <param name="libtorch">Time libtorch's <c>linear</c> instead of Wren's route.</param>
    public MatMulProbe(long rows, long cols, long inputs, bool libtorch)
    {
        weights = [randn(rows, cols), randn(rows, cols)];
        x = randn(inputs, cols);
        (Rows, Cols, Inputs, this.libtorch) = (rows, cols, inputs, libtorch);
    }

    public long Rows { get; }
    public long Cols { get; }
    public long Inputs { get; }

    /// <summary>Floating-point operations of one product: 2 · inputs · rows · cols.</summary>
    public double Flops => 2.0 * Inputs * Rows * Cols;

    /// <summary>Seconds of one product (no autograd) on the next weight copy.</summary>
    public double Seconds()
    {
        using var _ = no_grad();
        var w = weights[next++ % weights.Length];
        var clock = Stopwatch.StartNew();
        using var y = libtorch ? nn.functional.linear(x, w) : Linear.Project(x, w);
        return clock.Elapsed.TotalSeconds;
    }

    public void Dispose()
    {
        foreach (var w in weights) w.Dispose();
        x.Dispose();
    }
}
