using Wren.Common;

namespace Wren.Profiling;

/// <summary>The profile charts: latency vs context and throughput vs batch, as PNG and SVG.</summary>
public static class ProfilePlots
{
    /// <summary>Writes latency-vs-context and throughput-vs-batch charts into <paramref name="folder"/>; returns the files.</summary>
    public static IReadOnlyList<string> Write(IReadOnlyList<ModelProfile> profiles, string folder)
    {
        Directory.CreateDirectory(folder);
        var files = new List<string>();
        files.AddRange(Charts.Save(Charts.Lines("Decode latency vs context (batch 1)", "context (tokens)", "ms / token",
            profiles.Select(p =>
                (p.Name, p.LatencyByContext.Select(c => (double)c.Context).ToArray(),
                 p.LatencyByContext.Select(c => c.MsPerToken.Median).ToArray()))),
            Path.Combine(folder, "latency-vs-context")));
        files.AddRange(Charts.Save(Charts.Lines($"Decode throughput vs batch (context {profiles.FirstOrDefault()?.ThroughputContext})",
                                                "batch", "tokens / s",
            profiles.Select(p =>
                (p.Name, p.Throughput.Select(t => (double)t.Batch).ToArray(),
                 p.Throughput.Select(t => t.TokensPerSecond.Median).ToArray()))),
            Path.Combine(folder, "throughput-vs-batch")));
        return files;
    }
}
