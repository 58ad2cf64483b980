using System.Diagnostics;

namespace Wren.Search;

/// <summary>
/// Claims trials of a study and evaluates them, renewing its lease in the background; a result is recorded only
/// while this worker still holds the trial. Many workers (processes, machines) can serve one study.
/// </summary>
public sealed class SearchWorker(StudyStore store, string study, ITrialEvaluator evaluator, string? name = null, TimeSpan? lease = null)
{
    public string Name { get; } = name ?? $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";
    public TimeSpan Lease { get; } = lease ?? TimeSpan.FromMinutes(2);

    /// <summary>
    /// True for a worker name of this machine whose process is gone (names are <c>machine:pid:…</c>): its trials can be
    /// released at once instead of after their leases, when a search restarts after a crash or kill.
    /// </summary>
    public static bool IsGoneFromThisMachine(string worker)
    {
        var parts = worker.Split(':');
        if (parts.Length < 3 || parts[0] != Environment.MachineName || !int.TryParse(parts[1], out int pid)) return false;
        if (pid == Environment.ProcessId) return false;
        try { using var process = System.Diagnostics.Process.GetProcessById(pid); return process.HasExited; }
        catch (ArgumentException) { return true; }   // no such process
    }

    /// <summary>Claims and evaluates one trial; null when none is claimable now.</summary>
    public Trial? RunOne(CancellationToken cancellation = default, Action<Trial>? started = null)
    {
        var trial = store.Claim(study, Name, Lease);
        if (trial is null) return null;
        started?.Invoke(trial);
        var clock = Stopwatch.StartNew();
        using var heartbeat = new Timer(_ => store.Heartbeat(trial.Id, Name, Lease), null, Lease / 3, Lease / 3);
        try
        {
            double loss = evaluator.Evaluate(trial, cancellation);
            heartbeat.Change(Timeout.Infinite, Timeout.Infinite);
            store.Complete(trial.Id, Name, loss, clock.Elapsed.TotalSeconds);
            return trial with { Status = "done", ProxyLoss = loss, TrainSeconds = clock.Elapsed.TotalSeconds };
        }
        catch (OperationCanceledException) { throw; }   // the trial stays running; its lease expires and another worker takes it
        catch (Exception e) when (e is WrenException or InvalidOperationException or ArgumentException)
        {
            heartbeat.Change(Timeout.Infinite, Timeout.Infinite);
            store.Fail(trial.Id, Name, e.Message);
            return trial with { Status = "failed", Error = e.Message };
        }
    }

    /// <summary>Serves the study until it is finished, or nothing was claimable for <paramref name="idle"/>.</summary>
    public int Serve(TimeSpan idle, CancellationToken cancellation = default, Action<Trial>? started = null, Action<Trial>? finished = null)
    {
        int count = 0;
        var quiet = Stopwatch.StartNew();
        while (!cancellation.IsCancellationRequested)
        {
            var result = RunOne(cancellation, started);
            if (result is not null)
            {
                count++;
                finished?.Invoke(result);
                quiet.Restart();
                continue;
            }
            if (store.GetStudy(study)?.State == "finished" || quiet.Elapsed > idle) break;
            Task.Delay(TimeSpan.FromMilliseconds(500), cancellation).Wait(cancellation);
        }
        return count;
    }
}
