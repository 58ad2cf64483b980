using Wren.Serving.Benchmarking;

namespace Wren.Tests.Serving.Benchmarking;

/// <summary>The serve benchmark's metrics against values computed by hand from vLLM's definitions.</summary>
public class ServeMetricsTests
{
    const double Tolerance = 1e-9;

    static RequestOutcome Ok(double ttft, double[] gaps, double e2el, int input, int output) =>
        new(true, ttft, gaps, e2el, input, output, true);

    // A: 4 tokens, TPOT (0.2 − 0.1)/3; B: 1 token (no TPOT, 0 for goodput); C: 2 tokens, TPOT (0.4 − 0.2)/1; D failed. 2 s.
    static readonly RequestOutcome[] Outcomes =
    [
        Ok(0.1, [0.02, 0.03, 0.05], 0.2, 10, 4),
        Ok(0.3, [], 0.3, 20, 1),
        Ok(0.2, [0.1], 0.4, 30, 2),
        RequestOutcome.Failed("HTTP 503"),
    ];

    [Fact]
    public void Throughputs_count_completed_requests_over_the_wall_time()
    {
        var r = ServeMetrics.Compute(Outcomes, 2.0);
        Assert.Equal((3, 1, 60L, 7L), (r.Completed, r.Failed, r.TotalInputTokens, r.TotalOutputTokens));
        Assert.Equal(1.5, r.RequestThroughput, Tolerance);          // 3 / 2
        Assert.Equal(3.5, r.OutputThroughput, Tolerance);           // 7 / 2
        Assert.Equal(33.5, r.TotalTokenThroughput, Tolerance);      // (60 + 7) / 2
        Assert.Null(r.RequestGoodput);
    }

    [Fact]
    public void Latencies_are_mean_std_median_and_p99_in_milliseconds()
    {
        var r = ServeMetrics.Compute(Outcomes, 2.0);
        // TTFT 100, 300, 200 ms: std √((100² + 100² + 0) / 3); p99 at rank 0.99·2 = 1.98: 200 + 0.98·100.
        Close(new LatencyStats(200, Math.Sqrt(20000.0 / 3), 200, 298), r.Ttft);
        // TPOT 33.33 and 200 ms (B excluded): mean and median 116.67, std 83.33, p99 33.33 + 0.99·166.67.
        Close(new LatencyStats(350.0 / 3, 250.0 / 3, 350.0 / 3, 100.0 / 3 + 0.99 * 500.0 / 3), r.Tpot);
        // ITL 20, 30, 50, 100 ms pooled: std √(3800/4); median 40; p99 at rank 2.97: 50 + 0.97·50.
        Close(new LatencyStats(50, Math.Sqrt(950), 40, 98.5), r.Itl);
        Close(new LatencyStats(300, Math.Sqrt(20000.0 / 3), 300, 398), r.E2el);
    }

    [Fact]
    public void Goodput_counts_requests_within_every_given_objective()
    {
        // ttft ≤ 250 and tpot ≤ 50: A only (B's TTFT is 300, C's TPOT 200) → 1 / 2 s.
        Assert.Equal(0.5, ServeMetrics.Compute(Outcomes, 2.0, new ServeSlo(TtftMs: 250, TpotMs: 50)).RequestGoodput!.Value, Tolerance);
        // tpot ≤ 50 alone: A, and B whose one token has TPOT 0 → 2 / 2 s.
        Assert.Equal(1.0, ServeMetrics.Compute(Outcomes, 2.0, new ServeSlo(TpotMs: 50)).RequestGoodput!.Value, Tolerance);
        // e2el ≤ 300: A and B.
        Assert.Equal(1.0, ServeMetrics.Compute(Outcomes, 2.0, new ServeSlo(E2elMs: 300)).RequestGoodput!.Value, Tolerance);
    }

    [Fact]
    public void No_completed_request_gives_zero_latencies()
    {
        var r = ServeMetrics.Compute([RequestOutcome.Failed("x")], 1.0);
        Assert.Equal((0, 1), (r.Completed, r.Failed));
        Assert.Equal(new LatencyStats(0, 0, 0, 0), r.Ttft);
    }

    [Fact]
    public void Percentile_interpolates_linearly_between_closest_ranks()
    {
        double[] values = [1, 2, 3, 4];
        Assert.Equal(2.5, ServeMetrics.Percentile(values, 50), Tolerance);    // rank 1.5
        Assert.Equal(3.97, ServeMetrics.Percentile(values, 99), Tolerance);   // rank 2.97
        Assert.Equal(1, ServeMetrics.Percentile(values, 0), Tolerance);
        Assert.Equal(4, ServeMetrics.Percentile(values, 100), Tolerance);
        Assert.Equal(7, ServeMetrics.Percentile([7.0], 99), Tolerance);
    }

    [Fact]
    public void Poisson_arrivals_start_at_zero_with_exponential_gaps()
    {
        var uniforms = new Queue<double>([0.5, 0.75]);
        var times = ServeMetrics.ArrivalTimes(3, 2.0, uniforms.Dequeue);
        // gaps −ln(1 − u) / rate: ln 2 / 2 and ln 4 / 2.
        Assert.Equal(3, times.Length);
        Assert.Equal(0, times[0]);
        Assert.Equal(Math.Log(2) / 2, times[1], Tolerance);
        Assert.Equal(Math.Log(2) / 2 + Math.Log(4) / 2, times[2], Tolerance);
        Assert.Equal([0.0, 0, 0], ServeMetrics.ArrivalTimes(3, double.PositiveInfinity, () => throw new InvalidOperationException()));
        Assert.Throws<WrenException>(() => ServeMetrics.ArrivalTimes(3, 0, () => 0.5));
    }

    [Fact]
    public void Slo_parses_named_milliseconds_and_refuses_anything_else()
    {
        Assert.Equal(new ServeSlo(TtftMs: 500, TpotMs: 50), ServeSlo.Parse("ttft=500,tpot=50"));
        Assert.Equal(new ServeSlo(E2elMs: 1.5), ServeSlo.Parse("e2el=1.5"));
        Assert.Equal("ttft=500,tpot=50", new ServeSlo(TtftMs: 500, TpotMs: 50).ToString());
        foreach (var bad in new[] { "ttft", "ttft=abc", "ttft=-1", "latency=5" })
            Assert.Throws<WrenException>(() => ServeSlo.Parse(bad));
    }

    [Fact]
    public void Json_uses_vllm_result_keys()
    {
        var info = new ServeRunInfo("http://127.0.0.1:1/", "m", "random", 4, double.PositiveInfinity, 2, 0, "usage", null);
        var json = ServeReportPrinter.Json(info, ServeMetrics.Compute(Outcomes, 2.0));
        Assert.Equal(3, (int)json["completed"]!);
        Assert.Equal(298, (double)json["p99_ttft_ms"]!, 1e-6);
        Assert.Equal(40, (double)json["median_itl_ms"]!, 1e-6);
        Assert.Equal("inf", (string)json["request_rate"]!);
        Assert.Contains("| m | random | inf | 2 | 3/1 | 1.50 | – | 3.5 | 33.5 | 200.0 / 200.0 / 298.0 |",
                        ServeReportPrinter.MarkdownRow(info, ServeMetrics.Compute(Outcomes, 2.0)));
    }

    static void Close(LatencyStats expected, LatencyStats actual)
    {
        Assert.Equal(expected.MeanMs, actual.MeanMs, Tolerance);
        Assert.Equal(expected.StdMs, actual.StdMs, Tolerance);
        Assert.Equal(expected.MedianMs, actual.MedianMs, Tolerance);
        Assert.Equal(expected.P99Ms, actual.P99Ms, Tolerance);
    }
}
