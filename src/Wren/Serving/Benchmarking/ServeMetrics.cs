namespace Wren.Serving.Benchmarking;

/// <summary>What the client saw of one streamed request (seconds from sending it).</summary>
/// <param name="Success">False: an HTTP error or a broken stream; such requests count as failed and are left out of every
/// metric.</param>
/// <param name="TtftSeconds">Time to the first chunk carrying a generated token.</param>
/// <param name="InterTokenSeconds">Gaps between consecutive token chunks (one fewer than the token chunks).</param>
/// <param name="E2elSeconds">Time to the last data event of the stream (the usage chunk when asked for).</param>
/// <param name="InputTokens">Prompt tokens: the server's usage when given, else the client's estimate.</param>
/// <param name="OutputTokens">Generated tokens: the server's usage when given, else the token chunks counted.</param>
/// <param name="UsageReported">Whether <paramref name="OutputTokens"/> came from the server's usage.</param>
public sealed record RequestOutcome(bool Success, double TtftSeconds, IReadOnlyList<double> InterTokenSeconds, double E2elSeconds,
                                    int InputTokens, int OutputTokens, bool UsageReported, string? Error = null)
{
    public static RequestOutcome Failed(string error) => new(false, 0, [], 0, 0, 0, false, error);
}

/// <summary>Mean, population standard deviation, median and 99th percentile of one latency, in milliseconds (0 when there are
/// no values, as vLLM reports).</summary>
public sealed record LatencyStats(double MeanMs, double StdMs, double MedianMs, double P99Ms);

/// <summary>
/// Service-level objectives for goodput, in milliseconds (null: not checked). A request is good when each given metric of it is
/// at most its objective (vLLM's <c>--goodput</c>; a request of one token has TPOT 0 there).
/// </summary>
public sealed record ServeSlo(double? TtftMs = null, double? TpotMs = null, double? E2elMs = null)
{
    /// <summary>
    /// <c>ttft=MS,tpot=MS,e2el=MS</c> (any subset, any order). Errors: a one-line <see cref="WrenException"/> for an unknown
    /// name, a missing <c>=</c> or a value that is not a positive number.
    /// </summary>
    public static ServeSlo Parse(string text)
    {
        var slo = new ServeSlo();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pair = part.Split('=', 2);
            if (pair.Length != 2 || !double.TryParse(pair[1], System.Globalization.CultureInfo.InvariantCulture, out double ms) || ms <= 0)
                throw new WrenException($"--slo expects name=milliseconds pairs such as ttft=500,tpot=50, got '{part}'");
            slo = pair[0] switch
            {
                "ttft" => slo with { TtftMs = ms },
                "tpot" => slo with { TpotMs = ms },
                "e2el" => slo with { E2elMs = ms },
                _ => throw new WrenException($"--slo names ttft, tpot or e2el, got '{pair[0]}'"),
            };
        }
        return slo;
    }

    public override string ToString() => string.Join(",", new[] { ("ttft", TtftMs), ("tpot", TpotMs), ("e2el", E2elMs) }
        .Where(p => p.Item2 is not null).Select(p => $"{p.Item1}={p.Item2}"));
}

/// <summary>
/// A benchmark run's results as vLLM's <c>bench serve</c> computes them (<c>vllm/benchmarks/serve.py</c>,
/// <c>calculate_metrics</c>): throughputs are totals over completed requests ÷ the run's wall time.
/// </summary>
/// <param name="RequestGoodput">Good requests per second under the SLO; null without one.</param>
/// <param name="PeakInFlight">Most requests in flight at once, as the client counted them.</param>
public sealed record ServeBenchReport(int Completed, int Failed, double DurationSeconds, long TotalInputTokens, long TotalOutputTokens,
                                      double RequestThroughput, double? RequestGoodput, double OutputThroughput,
                                      double TotalTokenThroughput, LatencyStats Ttft, LatencyStats Tpot, LatencyStats Itl,
                                      LatencyStats E2el, int PeakInFlight);

/// <summary>The metric computations of <c>bench serve</c>, each as vLLM defines it.</summary>
public static class ServeMetrics
{
    /// <summary>
    /// The report of <paramref name="outcomes"/> over <paramref name="durationSeconds"/> of wall time. TTFT and E2EL: one value per
    /// completed request. TPOT: (E2EL − TTFT) ÷ (output tokens − 1), for requests of more than one token. ITL: every gap between
    /// token chunks of every completed request, pooled. Input tokens count each completed request's prompt.
    /// </summary>
    public static ServeBenchReport Compute(IReadOnlyList<RequestOutcome> outcomes, double durationSeconds, ServeSlo? slo = null,
                                           int peakInFlight = 0)
    {
        var done = outcomes.Where(o => o.Success).ToList();
        var tpots = done.Where(o => o.OutputTokens > 1).Select(Tpot).ToList();
        long input = done.Sum(o => (long)o.InputTokens), output = done.Sum(o => (long)o.OutputTokens);
        double? goodput = slo is null ? null : done.Count(o => Good(o, slo)) / durationSeconds;
        return new ServeBenchReport(done.Count, outcomes.Count - done.Count, durationSeconds, input, output, done.Count / durationSeconds,
                                    goodput, output / durationSeconds, (input + output) / durationSeconds,
                                    Stats(done.Select(o => o.TtftSeconds).ToList()), Stats(tpots),
                                    Stats(done.SelectMany(o => o.InterTokenSeconds).ToList()),
                                    Stats(done.Select(o => o.E2elSeconds).ToList()),
                                    peakInFlight);
    }

    /// <summary>Time per output token after the first, seconds: (E2EL − TTFT) ÷ (output tokens − 1); 0 for one token or
    /// none.</summary>
    public static double Tpot(RequestOutcome o) => o.OutputTokens > 1 ? (o.E2elSeconds - o.TtftSeconds) / (o.OutputTokens - 1) : 0;

    static bool Good(RequestOutcome o, ServeSlo slo) =>
        (slo.TtftMs is not { } ttft || o.TtftSeconds * 1e3 <= ttft)
        && (slo.TpotMs is not { } tpot || Tpot(o) * 1e3 <= tpot)
        && (slo.E2elMs is not { } e2el || o.E2elSeconds * 1e3 <= e2el);

    /// <summary>Mean, population standard deviation, median and p99 of <paramref name="seconds"/>, in milliseconds.</summary>
    public static LatencyStats Stats(IReadOnlyList<double> seconds)
    {
        if (seconds.Count == 0) return new LatencyStats(0, 0, 0, 0);
        var sorted = seconds.Select(s => s * 1e3).Order().ToArray();
        double mean = sorted.Average();
        double std = Math.Sqrt(sorted.Sum(x => (x - mean) * (x - mean)) / sorted.Length);
        return new LatencyStats(mean, std, Percentile(sorted, 50), Percentile(sorted, 99));
    }

    /// <summary>
    /// The <paramref name="percent"/>-th percentile of ascending <paramref name="sorted"/> values by linear interpolation between
    /// the closest ranks: rank h = p/100 · (n − 1), value x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋+1] − x[⌊h⌋]) (numpy's default
    /// <c>percentile</c>, which vLLM uses; Hyndman and Fan's definition 7).
    /// </summary>
    public static double Percentile(IReadOnlyList<double> sorted, double percent)
    {
        if (sorted.Count == 0) throw new ArgumentException("no values", nameof(sorted));
        if (percent is < 0 or > 100) throw new ArgumentOutOfRangeException(nameof(percent), "a percentile is between 0 and 100");
        double h = percent / 100 * (sorted.Count - 1);
        int low = (int)Math.Floor(h);
        return low + 1 >= sorted.Count ? sorted[^1] : sorted[low] + (h - low) * (sorted[low + 1] - sorted[low]);
    }

    /// <summary>
    /// Send times, seconds from the start, of <paramref name="count"/> requests arriving as a Poisson process of
    /// <paramref name="rate"/> requests per second: the first at 0, then gaps −ln(1 − u)/rate, u from <paramref name="uniform"/>
    /// in [0, 1) (exponential gaps; vLLM's burstiness 1). An infinite rate sends everything at 0.
    /// </summary>
    public static double[] ArrivalTimes(int count, double rate, Func<double> uniform)
    {
        if (rate <= 0 || double.IsNaN(rate)) throw new WrenException($"--request-rate must be > 0 or inf, got {rate}");
        var times = new double[count];
        if (double.IsPositiveInfinity(rate)) return times;
        for (int i = 1; i < count; i++) times[i] = times[i - 1] - Math.Log(1 - uniform()) / rate;
        return times;
    }
}
