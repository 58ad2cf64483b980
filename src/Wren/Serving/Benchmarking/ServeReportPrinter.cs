using System.Globalization;
using System.Text.Json.Nodes;

namespace Wren.Serving.Benchmarking;

/// <summary>What one run of <c>bench serve</c> was: the server, the load and how tokens were counted.</summary>
/// <param name="Target">The server's base URL.</param>
/// <param name="RequestRate">Requests per second of the Poisson arrivals; infinity: all at once.</param>
/// <param name="MaxConcurrency">Most requests in flight (null: unbounded).</param>
/// <param name="OutputTokensCountedBy"><c>usage</c> (the server's <c>completion_tokens</c>), <c>counted deltas</c> (token chunks
/// the client counted), <c>mixed</c>, or <c>none completed</c>.</param>
/// <param name="IgnoreEos">Whether the requests carried <c>ignore_eos</c>.</param>
public sealed record ServeRunInfo(string Target, string Model, string Dataset, int Requests, double RequestRate, int? MaxConcurrency,
                                  int Seed, string OutputTokensCountedBy, ServeSlo? Slo, bool IgnoreEos = false);

/// <summary>Serve-benchmark results as a Markdown table (one row per run) and as vLLM-style JSON.</summary>
public static class ServeReportPrinter
{
    /// <summary>The table's header and separator lines.</summary>
    public static string MarkdownHeader() =>
        "| model | dataset | rate | max conc. | done/failed | req/s | goodput req/s | out tok/s | total tok/s | " +
        "TTFT mean/median/p99 ms | TPOT mean/median/p99 ms | ITL mean/median/p99 ms | E2EL mean/median/p99 ms | out tokens by |\n" +
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

    /// <summary>One table row for a run.</summary>
    public static string MarkdownRow(ServeRunInfo info, ServeBenchReport r)
    {
        static string Triple(LatencyStats s) => Invariant($"{s.MeanMs:F1} / {s.MedianMs:F1} / {s.P99Ms:F1}");
        return $"| {info.Model} | {info.Dataset} | {Rate(info.RequestRate)} | {info.MaxConcurrency?.ToString() ?? "∞"} | " +
               $"{r.Completed}/{r.Failed} | " + Invariant($"{r.RequestThroughput:F2} | ") +
               (r.RequestGoodput is { } g ? Invariant($"{g:F2}") : "–") +
               Invariant($" | {r.OutputThroughput:F1} | {r.TotalTokenThroughput:F1} | ") +
               $"{Triple(r.Ttft)} | {Triple(r.Tpot)} | {Triple(r.Itl)} | {Triple(r.E2el)} | {info.OutputTokensCountedBy} |";
    }

    /// <summary>
    /// The run as a JSON object with vLLM's result keys (<c>completed</c>, <c>request_throughput</c>, <c>mean_ttft_ms</c>,
    /// <c>p99_itl_ms</c>, …: the same names and units as <c>vllm bench serve --save-result</c>) and the run's description.
    /// </summary>
    public static JsonObject Json(ServeRunInfo info, ServeBenchReport r)
    {
        var json = new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture),
            ["backend"] = "openai-chat",
            ["base_url"] = info.Target,
            ["model_id"] = info.Model,
            ["dataset_name"] = info.Dataset,
            ["num_prompts"] = info.Requests,
            ["request_rate"] = Rate(info.RequestRate),
            ["max_concurrency"] = info.MaxConcurrency,
            ["seed"] = info.Seed,
            ["output_tokens_counted_by"] = info.OutputTokensCountedBy,
            ["goodput_slo"] = info.Slo?.ToString(),
            ["ignore_eos"] = info.IgnoreEos,
            ["duration"] = r.DurationSeconds,
            ["completed"] = r.Completed,
            ["failed"] = r.Failed,
            ["total_input_tokens"] = r.TotalInputTokens,
            ["total_output_tokens"] = r.TotalOutputTokens,
            ["request_throughput"] = r.RequestThroughput,
            ["request_goodput"] = r.RequestGoodput,
            ["output_throughput"] = r.OutputThroughput,
            ["total_token_throughput"] = r.TotalTokenThroughput,
            ["max_concurrent_requests"] = r.PeakInFlight,
        };
        foreach (var (name, stats) in new[] { ("ttft", r.Ttft), ("tpot", r.Tpot), ("itl", r.Itl), ("e2el", r.E2el) })
        {
            json[$"mean_{name}_ms"] = stats.MeanMs;
            json[$"median_{name}_ms"] = stats.MedianMs;
            json[$"std_{name}_ms"] = stats.StdMs;
            json[$"p99_{name}_ms"] = stats.P99Ms;
        }
        return json;
    }

    static string Rate(double rate) => double.IsPositiveInfinity(rate) ? "inf" : Invariant($"{rate:G}");

    static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
