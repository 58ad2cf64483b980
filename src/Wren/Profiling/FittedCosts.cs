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
/// <param name="Shrinkage">The ridge weight λ toward the probe entries that leave-one-out chose (0: a plain fit).</param>
public sealed record FittedCosts(int Width, int Batch, double Overhead, IReadOnlyDictionary<string, double> PerLayer, int Architectures,
                                 double RmsPercent, IReadOnlyDictionary<string, double>? PerKeyPresent = null, double PerMixerChange = 0,
                                 double Shrinkage = 0)
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
    /// MAPE), SVD solve (MathNet.Numerics). Columns: 1, the count of each key, an indicator per mixer key whose presence
    /// varies over the samples (one present in all of them is the overhead's column; so is the FFN, in nearly every stack)
    /// and the number of mixer changes when it varies.
    /// <para>Without a <paramref name="prior"/> the extra terms need twice as many architectures as columns (else the
    /// per-layer model alone is fitted, from at least keys + 2 architectures). With one (the probe entries), the fit is
    /// ridge regression toward it: each coefficient's relative move from its probe value (overhead, per-layer costs) or
    /// from 0 in units of the mean probe layer cost (start-up and change terms) is penalised by λ, and λ is chosen from
    /// <see cref="RidgeGrid"/> by leave-one-out error over the samples (0 only where the plain fit is determined). Few or
    /// noisy architectures then move the probe costs only as far as the data agree on, instead of trading one key's cost
    /// against another's (a plain fit on 24 noisy stacks of 11 keys put pure Gated DeltaNet at −87 %).</para>
    /// </summary>
    public static FittedCosts Fit(int width, int batch, IReadOnlyList<FitSample> samples, FitPrior? prior = null)
    {
        var keys = samples.SelectMany(s => s.LayerKeys).Distinct().Order(StringComparer.Ordinal).ToList();
        if (prior is null && samples.Count < keys.Count + 2)
            throw new WrenException($"fitting {keys.Count + 1} latency coefficients needs at least {keys.Count + 2} measured " +
                                    $"architectures, got {samples.Count}");
        if (samples.Count < 2)
            throw new WrenException($"fitting latency coefficients needs at least 2 measured architectures, got {samples.Count}");
        var present = keys.Where(k => IsMixer(k) && samples.Any(s => !s.LayerKeys.Contains(k))).ToList();
        var changes = samples.Select(s => (double)MixerChanges(s.LayerKeys)).ToList();
        bool changeTerm = changes.Distinct().Count() > 1;
        int columns = 1 + keys.Count + present.Count + (changeTerm ? 1 : 0);
        if (prior is null && samples.Count < 2 * columns)
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
        var rows = Matrix<double>.Build.Dense(samples.Count, columns, (i, j) => Feature(i, j) / samples[i].Step);
        var centred = prior?.Columns(keys, columns);
        double lambda = centred is not { } c ? 0
            : RidgeGrid.Where(l => l > 0 || samples.Count >= 2 * columns).MinBy(l => LeaveOneOutError(rows, c, l));
        var solution = Solve(rows, Enumerable.Range(0, samples.Count).ToList(), centred, lambda);
        var fitted = new FittedCosts(width, batch, solution[0], keys.Select((k, j) => (k, solution[1 + j])).ToDictionary(),
                                     samples.Count, 0, present.Select((k, j) => (k, solution[1 + keys.Count + j])).ToDictionary(),
                                     changeTerm ? solution[columns - 1] : 0, lambda);
        double rms = Math.Sqrt(samples.Average(s => Math.Pow(fitted.Predict(s.LayerKeys) / s.Step - 1, 2))) * 100;
        return fitted with { RmsPercent = rms };
    }

    /// <summary>Penalty weights tried for the ridge fit toward the probe prior (leave-one-out picks one).</summary>
    public static readonly IReadOnlyList<double> RidgeGrid = [0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1];

    /// <summary>Relative least squares over the <paramref name="used"/> rows (target 1 each), with the ridge rows
    /// √λ·(θ_j − centre_j)/scale_j = 0 appended when a prior is given.</summary>
    static Vector<double> Solve(Matrix<double> rows, IReadOnlyList<int> used, (double[] Centre, double[] Scale)? prior, double lambda)
    {
        int columns = rows.ColumnCount, extra = prior is null || lambda == 0 ? 0 : columns;
        var design = Matrix<double>.Build.Dense(used.Count + extra, columns);
        var target = Vector<double>.Build.Dense(used.Count + extra);
        for (int i = 0; i < used.Count; i++)
        {
            design.SetRow(i, rows.Row(used[i]));
            target[i] = 1;
        }
        for (int j = 0; j < extra; j++)
        {
            double weight = Math.Sqrt(lambda) / prior!.Value.Scale[j];
            design[used.Count + j, j] = weight;
            target[used.Count + j] = weight * prior.Value.Centre[j];
        }
        return design.Svd().Solve(target);
    }

    /// <summary>Mean squared relative error of each sample predicted by the fit on all the others.</summary>
    static double LeaveOneOutError(Matrix<double> rows, (double[] Centre, double[] Scale) prior, double lambda) =>
        Enumerable.Range(0, rows.RowCount).Average(i =>
        {
            var others = Enumerable.Range(0, rows.RowCount).Where(r => r != i).ToList();
            return Math.Pow(rows.Row(i).DotProduct(Solve(rows, others, prior, lambda)) - 1, 2);
        });
}

/// <summary>
/// What the in-situ fit shrinks toward: the probe entries at one width and batch, in reference units (the overhead and
/// each key's per-layer cost at its first measured context).
/// </summary>
public sealed record FitPrior(double Overhead, IReadOnlyDictionary<string, double> PerLayer)
{
    /// <summary>Centre and scale per fit column: overhead and per-layer costs relative to their probe values (a key
    /// without one: the mean probe layer cost, centred on it), start-up and change terms centred on 0 in units of the mean
    /// probe layer cost.</summary>
    internal (double[] Centre, double[] Scale) Columns(IReadOnlyList<string> keys, int columns)
    {
        double typical = PerLayer.Count == 0 ? Math.Max(Overhead, 1e-12) : Math.Max(PerLayer.Values.Average(), 1e-12);
        var centre = new double[columns];
        var scale = Enumerable.Repeat(typical, columns).ToArray();
        (centre[0], scale[0]) = (Overhead, Math.Max(Math.Abs(Overhead), typical));
        for (int j = 0; j < keys.Count; j++)
        {
            double probe = PerLayer.TryGetValue(keys[j], out double c) ? c : typical;
            (centre[1 + j], scale[1 + j]) = (probe, Math.Max(Math.Abs(probe), 0.05 * typical));
        }
        return (centre, scale);
    }
}
