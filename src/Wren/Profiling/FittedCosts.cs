using MathNet.Numerics.LinearAlgebra;

namespace Wren.Profiling;

/// <summary>One measured architecture for the fit: its layers' latency keys and its decode step in reference units.</summary>
public sealed record FitSample(IReadOnlyList<string> LayerKeys, double Step);

/// <summary>
/// In-situ costs at one width and batch, in reference units: a per-step overhead and one cost per layer of each
/// latency key, fitted by least squares on whole measured mixed architectures. Unlike probe entries (the same layer
/// repeated), these include what a layer costs among other layers: cold caches, mixed dispatch, the glue between them.
/// </summary>
/// <param name="Overhead">Per-step cost outside the layers (embedding, final norm, lm_head, glue).</param>
/// <param name="PerLayer">Cost of one layer per latency key.</param>
/// <param name="RmsPercent">Root-mean-square relative residual on the fitted architectures, in percent.</param>
public sealed record FittedCosts(int Width, int Batch, double Overhead, IReadOnlyDictionary<string, double> PerLayer, int Architectures,
                                 double RmsPercent)
{
    /// <summary>Overhead plus the per-layer cost of every layer; throws for a key the fit never saw.</summary>
    public double Predict(IEnumerable<string> layerKeys) => Overhead + layerKeys.Sum(k => PerLayer.TryGetValue(k, out double c) ? c
        : throw new WrenException($"the fitted latency model at width {Width}, batch {Batch} has no '{k}' layers " +
                                  $"(it knows {string.Join(", ", PerLayer.Keys)})"));

    /// <summary>
    /// Least squares over [1, count of each key] → [overhead, per-layer costs], each row divided by its measured step so
    /// the fit minimises relative error (the check's measure, MAPE). QR solve (MathNet.Numerics).
    /// </summary>
    public static FittedCosts Fit(int width, int batch, IReadOnlyList<FitSample> samples)
    {
        var keys = samples.SelectMany(s => s.LayerKeys).Distinct().Order(StringComparer.Ordinal).ToList();
        if (samples.Count < keys.Count + 2)
            throw new WrenException($"fitting {keys.Count + 1} latency coefficients needs at least {keys.Count + 2} measured " +
                                    $"architectures, got {samples.Count}");
        var design = Matrix<double>.Build.Dense(samples.Count, keys.Count + 1, (i, j) =>
            (j == 0 ? 1.0 : samples[i].LayerKeys.Count(k => k == keys[j - 1])) / samples[i].Step);
        var ones = Vector<double>.Build.Dense(samples.Count, 1.0);
        var solution = design.QR().Solve(ones);
        var perLayer = keys.Select((k, j) => (k, solution[j + 1])).ToDictionary(p => p.k, p => p.Item2);
        var fitted = new FittedCosts(width, batch, solution[0], perLayer, samples.Count, 0);
        double rms = Math.Sqrt(samples.Average(s => Math.Pow(fitted.Predict(s.LayerKeys) / s.Step - 1, 2))) * 100;
        return fitted with { RmsPercent = rms };
    }
}
