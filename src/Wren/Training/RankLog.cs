using System.Globalization;
using Wren.Distributed;

namespace Wren.Training;

/// <summary>
/// The log of one rank of a data-parallel run, <c>&lt;run&gt;/logs/rank-K.log</c> on that rank's machine: a first line with
/// the rank, world size, host and process id, then one line per step (loss, global tokens/s, all-reduce milliseconds) and
/// the error that ended the rank, if any. Lines are flushed as they are written, so a killed rank's log ends at its last step.
/// </summary>
public sealed class RankLog : IProgress<TrainingStatus>, IDisposable
{
    public const string Folder = "logs";
    readonly StreamWriter writer;

    public static string PathFor(string run, int rank) => Path.Combine(run, Folder, $"rank-{rank}.log");

    public RankLog(string run, ProcessGroup group)
    {
        string path = PathFor(run, group.Rank);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        writer = new StreamWriter(path, append: true) { AutoFlush = true };
        Write($"rank {group.Rank} of {group.Size}, pid {Environment.ProcessId} on {Environment.MachineName}");
    }

    public void Write(string line) => writer.WriteLine($"{DateTime.UtcNow:O} {line}");

    public void Report(TrainingStatus s) =>
        Write(string.Create(CultureInfo.InvariantCulture, $"step {s.Step}/{s.TotalSteps} loss {s.Loss:R} tokens/s {s.TokensPerSecond:F0} " +
                                                          $"allreduce_ms {s.AllReduceSeconds * 1e3:F2}"));

    public void Dispose() => writer.Dispose();
}
