using System.Diagnostics;
using System.Text.Json;
using Wren.Distributed;

namespace Wren.Search;

/// <summary>
/// Claims trials of a study and evaluates them, renewing its lease in the background; a result is recorded only
/// while this worker still holds the trial. Many workers (processes, machines) can serve one study.
/// <para>Under mpirun this is rank 0 of <paramref name="group"/>: it alone talks to the store, broadcasts each claimed trial
/// (JSON) so the other ranks (<see cref="Follow"/>) train it together with it through an evaluator built on the same group,
/// and broadcasts an empty message when it stops serving. Only a <see cref="CollectiveException"/> (raised on every rank
/// together) fails a trial then; any other error of one rank propagates, so the job ends through MPI_Abort.</para>
/// </summary>
public sealed class SearchWorker(StudyStore store, string study, ITrialEvaluator evaluator, string? name = null, TimeSpan? lease = null,
                                 ProcessGroup? group = null)
{
    readonly ProcessGroup group = group ?? ProcessGroup.Single;

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
        if (group.Size > 1) group.Broadcast(JsonSerializer.SerializeToUtf8Bytes(trial), $"sharing trial #{trial.Number}");
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
        catch (Exception e) when (group.Size == 1 ? e is WrenException or InvalidOperationException or ArgumentException
                                                  : e is CollectiveException)
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
        if (group.Size > 1) group.Broadcast([], "the end of the search");
        return count;
    }

    /// <summary>
    /// A rank other than 0 of <paramref name="group"/>: trains each trial rank 0's <see cref="Serve"/> broadcasts with
    /// <paramref name="evaluator"/> (built on the same group) until rank 0 stops serving; returns the trials trained. A
    /// <see cref="CollectiveException"/> fails the trial here as on rank 0; any other error propagates.
    /// </summary>
    public static int Follow(ProcessGroup group, ITrialEvaluator evaluator, CancellationToken cancellation = default)
    {
        if (group.IsRoot) throw new ArgumentException("rank 0 serves the study; the other ranks follow it", nameof(group));
        int count = 0;
        while (group.Broadcast(null, "waiting for the next trial") is { Length: > 0 } message)
        {
            var trial = JsonSerializer.Deserialize<Trial>(message)!;
            try { evaluator.Evaluate(trial, cancellation); }
            catch (CollectiveException) { }   // rank 0 records the failure
            count++;
        }
        return count;
    }
}
