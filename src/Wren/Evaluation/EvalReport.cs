using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Wren.Evaluation;

/// <summary>One aggregated metric of a task.</summary>
/// <param name="Name">The harness's metric name (acc, acc_norm, perplexity, word_perplexity, …).</param>
/// <param name="StandardError">Null where the harness reports N/A.</param>
public sealed record MetricValue(string Name, double Value, double? StandardError, bool HigherIsBetter);

/// <summary>The results of one task.</summary>
/// <param name="Documents">Documents scored (after <c>--limit</c>).</param>
/// <param name="Requests">Log-likelihood requests made (one per choice, or per rolling window).</param>
public sealed record TaskResult(string Task, string OutputType, int NumFewshot, int Documents, int Requests,
                                IReadOnlyList<MetricValue> Metrics, string Origin);

/// <summary>One document's prompt as text: the (context, continuation) pairs scored, one per choice (multiple choice) or
/// one (loglikelihood); the choices; the gold choice indices; or for loglikelihood_rolling the whole <c>Text</c>.</summary>
public sealed record DocumentPrompt(IReadOnlyList<(string Context, string Continuation)> Requests, IReadOnlyList<string> Choices,
                                    IReadOnlyList<long> Gold, string? Text);

/// <summary>Everything a <c>wren eval</c> run measured; printed as Markdown or JSON.</summary>
/// <param name="Seconds">Wall time of the scoring (excluding model loading).</param>
/// <param name="Forwards">Model forward passes run.</param>
public sealed record EvalReport(string Model, string Tokenizer, string Dtype, int BatchSize, int Seed, int? Limit, int MaxLength,
                                double Seconds, long Forwards, IReadOnlyList<TaskResult> Tasks)
{
    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>The harness's results table: task, n-shot, metric, value ± stderr, with ↑/↓ for the better direction.</summary>
    public string ToMarkdown()
    {
        var lines = new List<string>
        {
            "| Task | n-shot | Metric | | Value | | Stderr |",
            "|---|---:|---|---|---:|---|---:|",
        };
        foreach (var task in Tasks)
            for (int m = 0; m < task.Metrics.Count; m++)
            {
                var metric = task.Metrics[m];
                string name = m == 0 ? task.Task : "", shots = m == 0 ? task.NumFewshot.ToString(CultureInfo.InvariantCulture) : "";
                string error = metric.StandardError is { } e ? Format(e) : "N/A";
                string direction = metric.HigherIsBetter ? "↑" : "↓";
                lines.Add($"| {name} | {shots} | {metric.Name} | {direction} | {Format(metric.Value)} | ± | {error} |");
            }
        return string.Join('\n', lines) + '\n';
    }

    /// <summary>The mean of <paramref name="metric"/> over the tasks that report it (the paper's commonsense average), or null.</summary>
    public double? Average(string metric = "acc")
    {
        var values = Tasks.SelectMany(t => t.Metrics.Where(m => m.Name == metric).Select(m => m.Value)).ToList();
        return values.Count == 0 ? null : values.Average();
    }

    /// <summary>One line for a table cell: each task's first metric with its standard error, then the average accuracy.</summary>
    public string Summary() =>
        string.Join("; ", Tasks.Select(t => $"{t.Task} {t.Metrics[0].Name} {Format(t.Metrics[0].Value)}" +
                                            (t.Metrics[0].StandardError is { } e ? $" ± {Format(e)}" : ""))) +
        (Average() is { } mean && Tasks.Count > 1 ? $"; mean acc {Format(mean)}" : "");

    /// <summary>Models side by side: one row per model, one column per task and metric (value ± stderr).</summary>
    public static string Comparison(IReadOnlyList<EvalReport> reports)
    {
        var columns = reports.SelectMany(r => r.Tasks.SelectMany(t => t.Metrics.Select(m => (t.Task, m.Name)))).Distinct().ToList();
        var lines = new List<string>
        {
            "| model | " + string.Join(" | ", columns.Select(c => $"{c.Task} {c.Name}")) + " | mean acc |",
            "|---|" + string.Concat(columns.Select(_ => "---:|")) + "---:|",
        };
        foreach (var report in reports)
        {
            var cells = columns.Select(c =>
                report.Tasks.FirstOrDefault(t => t.Task == c.Task)?.Metrics.FirstOrDefault(m => m.Name == c.Name) is { } m
                ? Format(m.Value) + (m.StandardError is { } e ? $" ± {Format(e)}" : "") : "");
            lines.Add($"| {report.Model} | {string.Join(" | ", cells)} | {(report.Average() is { } mean ? Format(mean) : "")} |");
        }
        return string.Join('\n', lines) + '\n';
    }

    static string Format(double value) => value.ToString(Math.Abs(value) < 1e6 ? "F4" : "G4", CultureInfo.InvariantCulture);
}
