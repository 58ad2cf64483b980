namespace Wren.Search;

/// <summary>
/// Runs a study to the end: proposes the initial population, then each cycle's children once every earlier trial
/// is finished, evaluating trials itself when given a local worker (otherwise remote workers do). Everything lives
/// in the store, so stopping and re-running continues where it stopped, with the same proposals.
/// </summary>
internal sealed class SearchDriver(StudyStore store, string study, SearchSpace space, AgingEvolution evolution, SearchWorker? local)
{
    /// <summary>
    /// Runs through stored cycle <paramref name="lastCycle"/> (0-based: the cycle people call n is n − 1; default: the space's last)
    /// and marks the study finished when complete.
    /// </summary>
    public IReadOnlyList<Trial> Run(int? lastCycle = null, IProgress<string>? progress = null, CancellationToken cancellation = default)
    {
        int last = Math.Min(lastCycle ?? space.Evolution.Cycles - 1, space.Evolution.Cycles - 1);
        int released = store.ReleaseAbandoned(study, SearchWorker.IsGoneFromThisMachine);
        if (released > 0) progress?.Report($"released {released} trial(s) of stopped workers on this machine");
        store.AddTrials(study, evolution.Initial());
        for (int cycle = 0; cycle <= last; cycle++)
        {
            Finish(cycle, progress, cancellation);
            var history = store.Trials(study);
            if (!history.Any(t => t.Cycle == cycle))
            {
                store.AddTrials(study, evolution.Children(cycle, history));
                progress?.Report($"cycle {cycle + 1}/{space.Evolution.Cycles}: proposed {space.Evolution.ChildrenPerCycle} children");
            }
        }
        Finish(int.MaxValue, progress, cancellation);
        if (last == space.Evolution.Cycles - 1) store.SetStudyState(study, "finished");
        return store.Trials(study);
    }

    /// <summary>Waits (evaluating locally if it can) until every trial of a cycle before <paramref name="cycle"/> is finished.</summary>
    void Finish(int cycle, IProgress<string>? progress, CancellationToken cancellation)
    {
        while (true)
        {
            cancellation.ThrowIfCancellationRequested();
            var open = store.Trials(study).Where(t => t.Cycle < cycle && t.Status is "pending" or "running").ToList();
            if (open.Count == 0) return;
            var done = local?.RunOne(cancellation, trial =>
                progress?.Report($"trial #{trial.Number} ({AgingEvolution.CycleName(trial.Cycle)}): {trial.Architecture} @ {trial.Width}"));
            if (done is not null)
            {
                progress?.Report(done.Status == "done" ? $"trial #{done.Number}: proxy loss {done.ProxyLoss:F4} in " +
                                                         $"{done.TrainSeconds:F0} s" : $"trial #{done.Number} failed: {done.Error}");
                continue;
            }
            progress?.Report($"waiting for {open.Count} trial(s) on other workers");
            Task.Delay(TimeSpan.FromSeconds(1), cancellation).Wait(cancellation);
        }
    }
}
