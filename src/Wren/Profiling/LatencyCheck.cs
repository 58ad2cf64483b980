namespace Wren.Profiling;

/// <summary>A decode step measured against the reference.</summary>
/// <param name="Seconds">At the table's machine speed: ratio to the reference × the reference's step at build time.</param>
/// <param name="RawSeconds">At the machine's speed during this measurement (ratio × the reference's step just now).</param>
public sealed record MeasuredStep(double Seconds, double RawSeconds, NormalizedTiming Timing);

/// <summary>One unseen architecture: measured and predicted decode step, all in reference units.</summary>
/// <param name="PredictedByFit">The fitted in-situ model's prediction; null when the table has no fit at this width.</param>
/// <param name="Family">The kind of stack it was drawn as.</param>
public sealed record PredictionCheck(IReadOnlyList<string> LayerTypes, int Width, double Measured, double PredictedBySum,
                                     double? PredictedByFit, StackFamily Family = StackFamily.Mixed)
{
    /// <summary>Signed error of the sum of entries, percent of the measurement.</summary>
    public double SumErrorPercent => (PredictedBySum - Measured) / Measured * 100;

    /// <summary>Signed error of the fitted model, percent of the measurement.</summary>
    public double? FitErrorPercent => PredictedByFit is { } p ? (p - Measured) / Measured * 100 : null;
}

/// <summary>Error of one predictor over a set of checks: one width, one family (<paramref name="Family"/>, over every width), or
/// all when both are null.</summary>
/// <param name="Predictor"><c>sum</c> (probe entries) or <c>fit</c> (in-situ least squares).</param>
/// <param name="Mape">Mean absolute percentage error.</param>
/// <param name="WorstPercent">Largest absolute percentage error.</param>
/// <param name="Within5">Share (0–1) of architectures within ±5 %.</param>
/// <param name="Within10">Share (0–1) within ±10 %.</param>
public sealed record ErrorSummary(string Predictor, int? Width, int Count, double Mape, double WorstPercent, double Within5,
                                  double Within10, StackFamily? Family = null)
{
    /// <summary>The targets on this machine kind: MAPE ≤ 5 % and ≥ 90 % of architectures within ±10 %.</summary>
    public bool MeetsTarget => Mape <= 5 && Within10 >= 0.9;

    public static ErrorSummary Of(string predictor, int? width, IReadOnlyList<double> signedPercent, StackFamily? family = null)
    {
        var absolute = signedPercent.Select(Math.Abs).ToList();
        double Share(double limit) => absolute.Count(e => e <= limit) / (double)absolute.Count;
        return new ErrorSummary(predictor, width, absolute.Count, absolute.Average(), absolute.Max(), Share(5), Share(10), family);
    }
}

/// <summary>
/// The latency table's check (<see cref="LatencyTable.Check"/>): per architecture predicted vs measured, the error of each
/// predictor per width, per stack family and overall (last), and what the machine did meanwhile.
/// </summary>
/// <param name="ReferenceMsAtBuild">The reference's decode step when the table was built (ms).</param>
/// <param name="ReferenceMsNow">Its median step during this check (ms): the machine's speed now relative to the build.</param>
/// <param name="Drift">Largest ÷ smallest reference step seen during the check.</param>
/// <param name="Remeasured">Architectures measured again because the reference moved during their measurement.</param>
public sealed record LatencyCheck(int Context, int Batch, IReadOnlyList<PredictionCheck> Checks, IReadOnlyList<ErrorSummary> Summaries,
                                  double ReferenceMsAtBuild, double ReferenceMsNow, double Drift, int Remeasured)
{
    public static LatencyCheck Of(IReadOnlyList<PredictionCheck> checks, IReadOnlyList<MeasuredStep> measured, double referenceSeconds,
                                  int context, int batch)
    {
        var summaries = new List<ErrorSummary>();
        var groups = checks.GroupBy(c => ((int?)c.Width, (StackFamily?)null))
            .Concat(checks.GroupBy(c => ((int?)null, (StackFamily?)c.Family)).OrderBy(g => g.Key.Item2))
            .Append(checks.GroupBy(_ => ((int?)null, (StackFamily?)null)).First());
        foreach (var group in groups)
        {
            var (width, family) = group.Key;
            summaries.Add(ErrorSummary.Of("sum", width, group.Select(c => c.SumErrorPercent).ToList(), family));
            var fitted = group.Where(c => c.FitErrorPercent is not null).Select(c => c.FitErrorPercent!.Value).ToList();
            if (fitted.Count > 0) summaries.Add(ErrorSummary.Of("fit", width, fitted, family));
        }
        var levels = measured.Select(m => m.Timing.ReferenceSeconds).ToList();
        return new LatencyCheck(context, batch, checks, summaries, referenceSeconds * 1e3, Measurement.Of(levels).Median * 1e3,
                                levels.Max() / levels.Min(),
                                measured.Count(m => m.Timing.Attempts > 1));
    }
}
