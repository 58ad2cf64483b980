namespace Wren.Profiling;

/// <summary>Repeated timings of one quantity: median and spread, with a verdict on whether they can be trusted.</summary>
public sealed record Measurement(double Median, double Min, double Max, int Samples)
{
    /// <summary>Spread above this share of the median means the machine was too noisy to trust the number.</summary>
    public const double TrustedSpread = 0.10;

    /// <summary>(max − min) / median.</summary>
    public double Spread => Median > 0 ? (Max - Min) / Median : 0;
    public bool Trusted => Spread <= TrustedSpread;

    public static Measurement Of(IReadOnlyList<double> samples)
    {
        if (samples.Count == 0) throw new ArgumentException("no samples");
        var sorted = samples.OrderBy(x => x).ToArray();
        double median = sorted.Length % 2 == 1
            ? sorted[sorted.Length / 2]
            : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        return new Measurement(median, sorted[0], sorted[^1], sorted.Length);
    }

    /// <summary>Runs <paramref name="warmup"/> untimed and <paramref name="repeats"/> timed calls; each returns its own seconds.</summary>
    public static Measurement Repeat(Func<double> timedRun, int repeats, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++) timedRun();
        return Of(Enumerable.Range(0, repeats).Select(_ => timedRun()).ToList());
    }
}
