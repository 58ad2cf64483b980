using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Profiling;

namespace Wren.Training;

/// <summary>One line of <c>metrics.jsonl</c>: a training step (loss, LR, gradient norm, tokens/s) or a validation (val loss,
/// perplexity).</summary>
public sealed record MetricsEntry
{
    public long Step { get; init; }
    public long Tokens { get; init; }
    public double? Loss { get; init; }
    public double? Lr { get; init; }
    public double? GradNorm { get; init; }
    public double? TokensPerSecond { get; init; }
    public double? ValLoss { get; init; }
    public double? ValPpl { get; init; }
    public double Seconds { get; init; }
}

/// <summary>Appends metrics as JSON lines; on resume drops lines past the checkpoint so the log matches the run. A diverged run's
/// non-finite values (perplexity exp(loss) overflows past loss ≈ 709.78) are written as the JSON strings "Infinity" / "NaN" and
/// read back as the same doubles.</summary>
public sealed class MetricsLog
{
    public const string FileName = "metrics.jsonl", PlotName = "loss";
    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    readonly string path;
    public List<MetricsEntry> Entries { get; }

    public MetricsLog(string run, long resumeStep)
    {
        path = Path.Combine(run, FileName);
        Entries = Read(path).Where(e => e.Step <= resumeStep).ToList();
        AtomicFile.WriteAllText(path, string.Concat(Entries.Select(e => JsonSerializer.Serialize(e, Json) + "\n")));
    }

    /// <summary>The log's entries; a line torn by a crash mid-append is skipped.</summary>
    public static IReadOnlyList<MetricsEntry> Read(string path) =>
        !File.Exists(path) ? [] : File.ReadLines(path).Where(l => l.Length > 0).Select(Parse).OfType<MetricsEntry>().ToList();

    static MetricsEntry? Parse(string line)
    {
        try { return JsonSerializer.Deserialize<MetricsEntry>(line, Json); }
        catch (JsonException) { return null; }
    }

    public void Add(MetricsEntry entry)
    {
        Entries.Add(entry);
        File.AppendAllText(path, JsonSerializer.Serialize(entry, Json) + "\n");
    }

    /// <summary>Training and validation loss against tokens, as PNG and SVG beside the log.</summary>
    public string[] Plot(string title)
    {
        var train = Entries.Where(e => e.Loss is not null).ToList();
        var validation = Entries.Where(e => e.ValLoss is not null).ToList();
        var plot = Charts.Lines(title, "tokens", "loss (nats/token)",
        [
            ("train", train.Select(e => (double)e.Tokens).ToArray(), train.Select(e => e.Loss!.Value).ToArray()),
            ("validation", validation.Select(e => (double)e.Tokens).ToArray(), validation.Select(e => e.ValLoss!.Value).ToArray()),
        ]);
        return Charts.Save(plot, Path.Combine(Path.GetDirectoryName(path)!, PlotName));
    }
}
