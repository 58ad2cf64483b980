namespace Wren.Evaluation;

/// <summary>
/// Aggregations and standard errors as lm-evaluation-harness computes them (lm_eval/api/metrics.py): <c>mean</c> with the
/// sample standard error of the mean (<c>mean_stderr</c>: ddof = 1, over √n); <c>perplexity</c> = exp(−mean) with a
/// bootstrap standard error; <c>weighted_perplexity</c> = exp(−Σll / Σweight) and <c>bits_per_byte</c> =
/// −Σll / Σbytes / ln 2, which the harness gives no standard error.
/// </summary>
public static class Metrics
{
    /// <summary>The harness's default bootstrap draws (<c>bootstrap_iters</c>).</summary>
    public const int BootstrapIterations = 100_000;

    public static double Mean(IReadOnlyList<double> values) => values.Sum() / values.Count;

    /// <summary>Sample standard deviation over √n (<c>mean_stderr</c>); null below two values (the harness prints N/A).</summary>
    public static double? MeanStandardError(IReadOnlyList<double> values) =>
        values.Count < 2 ? null : SampleStandardDeviation(values) / Math.Sqrt(values.Count);

    /// <summary>√(Σ(x − mean)² / (n − 1)) (<c>sample_stddev</c>).</summary>
    public static double SampleStandardDeviation(IReadOnlyList<double> values)
    {
        double mean = Mean(values);
        return Math.Sqrt(values.Sum(x => (x - mean) * (x - mean)) / (values.Count - 1));
    }

    /// <summary>exp(−mean log-likelihood) (<c>perplexity</c>).</summary>
    public static double Perplexity(IReadOnlyList<double> logLikelihoods) => Math.Exp(-Mean(logLikelihoods));

    /// <summary>exp(−Σll / Σweight) (<c>weighted_perplexity</c>: words or bytes).</summary>
    public static double WeightedPerplexity(IReadOnlyList<(double LogLikelihood, double Weight)> items) =>
        Math.Exp(-items.Sum(i => i.LogLikelihood) / items.Sum(i => i.Weight));

    /// <summary>−Σll / Σbytes / ln 2 (<c>bits_per_byte</c>).</summary>
    public static double BitsPerByte(IReadOnlyList<(double LogLikelihood, double Bytes)> items) =>
        -items.Sum(i => i.LogLikelihood) / items.Sum(i => i.Bytes) / Math.Log(2);

    /// <summary>
    /// Bootstrap standard error of <paramref name="statistic"/> (<c>bootstrap_stderr</c>): the sample standard deviation
    /// of the statistic over <paramref name="iterations"/> resamples with replacement, drawn in chunks of 1000 each seeded
    /// by its chunk number as the harness does (the draws themselves differ: .NET's generator is not Python's).
    /// </summary>
    public static double? BootstrapStandardError(Func<IReadOnlyList<double>, double> statistic, IReadOnlyList<double> values,
                                                 int iterations = BootstrapIterations)
    {
        if (values.Count < 2) return null;
        int chunk = Math.Min(1000, iterations);
        var estimates = new List<double>(iterations);
        var sample = new double[values.Count];
        for (int c = 0; c < iterations / chunk; c++)
        {
            var random = new Random(c);
            for (int draw = 0; draw < chunk; draw++)
            {
                for (int i = 0; i < sample.Length; i++) sample[i] = values[random.Next(values.Count)];
                estimates.Add(statistic(sample));
            }
        }
        return SampleStandardDeviation(estimates);
    }

    /// <summary>Index of the first largest value (numpy's <c>argmax</c>).</summary>
    public static int ArgMax(IReadOnlyList<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Count; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
