using MathNet.Numerics.LinearAlgebra;
using Wren.Models;

namespace Wren.Profiling;

/// <summary>One measured architecture for the fit: its layers' latency keys and its decode step in reference units.</summary>
public sealed record FitSample(IReadOnlyList<string> LayerKeys, double Step);

/// <summary>
/// In-situ costs at one width and batch, in reference units, fitted by least squares on whole measured architectures:
/// a per-step overhead, one cost per layer of each latency key, one cost per mixer key <i>present</i> in the stack
/// (paid once per step however many layers use it: the first layer of a kind in a step runs its kernels cold), and one
/// cost per change of mixer between consecutive mixer layers (FFNs skipped). Unlike probe entries (the same layer
/// repeated), these include what a layer costs among other layers. The presence and change terms are what a per-layer
/// model lacks on homogeneous stacks: fitted on random mixes, where nearly every key is present, the per-key start-up
/// costs land in the overhead and a stack of one mixer is charged for the ones it lacks (docs/search.md: pure Mamba2 +
/// FFN over-predicted by 17 %).
/// </summary>
/// <param name="Overhead">Per-step cost outside the layers (embedding, final norm, lm_head, glue).</param>
/// <param name="PerLayer">Cost of one layer per latency key.</param>
/// <param name="PerKeyPresent">Cost per step of each mixer key used by at least one layer; empty (or null, in tables from
/// before it) when the fit had too few architectures for these terms.</param>
/// <param name="PerMixerChange">Cost of each change of mixer key between consecutive mixer layers (0 without the term).</param>
/// <param name="RmsPercent">Root-mean-square relative residual on the fitted architectures, in percent.</param>
public sealed record FittedCosts(int Width, int Batch, double Overhead, IReadOnlyDictionary<string, double> PerLayer, int Architectures,
                                 double RmsPercent, IReadOnlyDictionary<string, double>? PerKeyPresent = null, double PerMixerChange = 0)
{
    /// <summary>Overhead, the per-layer cost of every layer, each present key's cost and the mixer changes; throws for a key the
    /// fit never saw.</summary>
    public double Predict(IEnumerable<string> layerKeys)
    {
        var keys = layerKeys.ToList();
        double layers = keys.Sum(k => PerLayer.TryGetValue(k, out double c) ? c
            : throw new WrenException($"the fitted latency model at width {Width}, batch {Batch} has no '{k}' layers " +
                                      $"(it knows {string.Join(", ", PerLayer.Keys)})"));
        double present = keys.Distinct().Sum(k => PerKeyPresent?.GetValueOrDefault(k) ?? 0);
        return Overhead + layers + present + PerMixerChange * MixerChanges(keys);
    }

    /// <summary>True for a key whose operator mixes tokens (everything but the FFN, whose spec creates no mixer).</summary>
    public static bool IsMixer(string key) => OperatorSpec.ParseLatencyKey(key).Operator.Create is not null;

    /// <summary>Consecutive mixer layers (FFN layers skipped) whose latency keys differ.</summary>
    public static int MixerChanges(IReadOnlyList<string> layerKeys)
    {
        var mixers = layerKeys.Where(IsMixer).ToList();
        return Enumerable.Range(1, Math.Max(0, mixers.Count - 1)).Count(i => mixers[i] != mixers[i - 1]);
    }

    /// <summary>
    /// Least squares on relative error (each row divided by its measured step, so the fit minimises the check's measure,
    /// MAPE), SVD solve (MathNet.Numerics). Columns: 1, the count of each key, and — when there are at least twice as many
    /// architectures as columns, so measurement noise does not leak into the extra terms — an indicator per mixer key
    /// whose presence varies over the samples (one present in all of them is the overhead's column; so is the FFN, in
    /// nearly every stack) and the number of mixer changes when it varies. With fewer architectures the per-layer model
    /// alone is fitted (at least keys + 2 architectures).
    /// </summary>
    public static FittedCosts Fit(int width, int batch, IReadOnlyList<FitSample> samples)
    {
        var keys = samples.SelectMany(s => s.LayerKeys).Distinct().Order(StringComparer.Ordinal).ToList();
        if (samples.Count < keys.Count + 2)
            throw new WrenException($"fitting {keys.Count + 1} latency coefficients needs at least {keys.Count + 2} measured " +
                                    $"architectures, got {samples.Count}");
        var present = keys.Where(k => IsMixer(k) && samples.Any(s => !s.LayerKeys.Contains(k))).ToList();
        var changes = samples.Select(s => (double)MixerChanges(s.LayerKeys)).ToList();
        bool changeTerm = changes.Distinct().Count() > 1;
        int columns = 1 + keys.Count + present.Count + (changeTerm ? 1 : 0);
        if (samples.Count < 2 * columns)
        {
            present = [];
            changeTerm = false;
            columns = 1 + keys.Count;
        }

        double Feature(int i, int j)
        {
            var s = samples[i].LayerKeys;
            if (j == 0) return 1;
            if (j <= keys.Count) return s.Count(k => k == keys[j - 1]);
            if (j <= keys.Count + present.Count) return s.Contains(present[j - 1 - keys.Count]) ? 1 : 0;
            return changes[i];
        }
        var design = Matrix<double>.Build.Dense(samples.Count, columns, (i, j) => Feature(i, j) / samples[i].Step);
        var solution = design.Svd().Solve(Vector<double>.Build.Dense(samples.Count, 1.0));
        var fitted = new FittedCosts(width, batch, solution[0], keys.Select((k, j) => (k, solution[1 + j])).ToDictionary(),
                                     samples.Count, 0, present.Select((k, j) => (k, solution[1 + keys.Count + j])).ToDictionary(),
                                     changeTerm ? solution[columns - 1] : 0);
        double rms = Math.Sqrt(samples.Average(s => Math.Pow(fitted.Predict(s.LayerKeys) / s.Step - 1, 2))) * 100;
        return fitted with { RmsPercent = rms };
    }
}
