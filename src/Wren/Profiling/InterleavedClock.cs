namespace Wren.Profiling;

/// <summary>
/// What a table's figures are ratios to: a fixed model (layers by latency key, width, context) and its step at build time.
/// </summary>
/// <param name="LayerKeys">Latency keys of the reference's layers (one of each operator the table measures).</param>
/// <param name="StepSeconds">The reference's batch-1 decode step when the table was built, in seconds.</param>
public sealed record ReferenceStep(IReadOnlyList<string> LayerKeys, int Width, int Context, double StepSeconds);

/// <summary>One figure measured against the reference, interleaved.</summary>
/// <param name="Ratio">
/// Candidate step ÷ the mean of the reference steps just before and after it, median over the clean passes (else best ÷ best).
/// </param>
/// <param name="ReferenceSeconds">The reference's best step during this measurement (the machine's speed at the time).</param>
/// <param name="Drift">|best reference step of the second half of the passes ÷ that of the first half − 1|, for the kept
/// attempt.</param>
/// <param name="Attempts">Measurements taken; more than one when the reference moved beyond the drift tolerance.</param>
public sealed record NormalizedTiming(double Ratio, double ReferenceSeconds, double Drift, int Attempts);

/// <summary>How a figure is measured against the reference.</summary>
public sealed record InterleaveOptions
{
    /// <summary>Tokens decoded per timed run: short runs are more often left alone by other processes.</summary>
    public int DecodeTokens { get; init; } = 4;
    /// <summary>Candidate runs per measurement, each between two reference runs (A B A B … A).</summary>
    public int Passes { get; init; } = 15;
    /// <summary>
    /// A reference whose best step moves by more than this share within one measurement means the machine moved: measure
    /// again. A pass is clean when its three runs are within this share of their best.
    /// </summary>
    public double DriftTolerance { get; init; } = 0.05;
    /// <summary>Measurements of one figure at most; the one whose reference moved least is kept.</summary>
    public int MaxAttempts { get; init; } = 3;
    /// <summary>
    /// Rounds over a list of candidates (<see cref="LatencyTable.Measure"/>, and the fitted architectures of
    /// <see cref="LatencyTable.Build"/>): each candidate is measured once per round and the
    /// median ratio kept, so a figure that fell into one slow patch is outvoted by the others (the same architecture measured
    /// in three rounds on the quiet machine moved by up to 15 %).
    /// </summary>
    public int Rounds { get; init; } = 1;

    public void Validate()
    {
        if (DecodeTokens < 1 || Passes < 2 || MaxAttempts < 1 || Rounds < 1)
            throw new WrenException("decode tokens, attempts and rounds must be ≥ 1, passes ≥ 2");
        if (DriftTolerance <= 0) throw new WrenException("the drift tolerance must be positive");
    }
}

/// <summary>
/// Noise-cancelling timing: every candidate run sits between two runs of one fixed reference model, and each pass's
/// figure is the candidate's step ÷ the mean of its two neighbouring reference steps (A B A B … A), which cancels any
/// slowdown that is linear over the pass. Contention on a shared machine only ever slows runs down, so a pass whose
/// three runs are all within the tolerance of their own best is clean: the figure is the median ratio of the clean
/// passes, or with fewer than <see cref="MinCleanPasses"/> of them, the candidate's best run ÷ the reference's best
/// run (best of several passes). A reference whose best step differs between the first and second half
/// of the passes by more than <see cref="InterleaveOptions.DriftTolerance"/> means the machine's speed moved: the figure is measured again.
/// </summary>
public sealed class InterleavedClock(IStepTimer reference, InterleaveOptions options)
{
    readonly List<double> levels = [];

    /// <summary>Fewer clean passes than this: the figure is the candidate's best run ÷ the reference's best run instead.</summary>
    public const int MinCleanPasses = 3;

    /// <summary>Figures measured again because the reference moved during them.</summary>
    public int Remeasured { get; private set; }

    /// <summary>Best reference step of every measurement so far, in order (seconds): the machine's speed over time.</summary>
    public IReadOnlyList<double> ReferenceLevels => levels;

    /// <summary>Largest ÷ smallest reference level seen: how far the machine drifted during the whole build or check.</summary>
    public double Drift => levels.Count == 0 ? 1 : levels.Max() / levels.Min();

    public NormalizedTiming Measure(IStepTimer candidate)
    {
        NormalizedTiming? best = null;
        for (int attempt = 1; attempt <= options.MaxAttempts; attempt++)
        {
            var refs = new List<double> { reference.StepSeconds() };
            var runs = new List<double>();
            for (int p = 0; p < options.Passes; p++)
            {
                runs.Add(candidate.StepSeconds());
                refs.Add(reference.StepSeconds());
            }
            double bestRun = runs.Min(), bestRef = refs.Min();
            // How far a pass's slowest run is above that run's best: 1 = all three runs as fast as seen.
            double Slowdown(int p) => Math.Max(runs[p] / bestRun, Math.Max(refs[p], refs[p + 1]) / bestRef);
            var clean = Enumerable.Range(0, runs.Count).Where(p => Slowdown(p) <= 1 + options.DriftTolerance)
                .Select(p => runs[p] / ((refs[p] + refs[p + 1]) / 2)).ToList();
            double ratio = clean.Count >= MinCleanPasses ? Measurement.Of(clean).Median : bestRun / bestRef;
            int half = refs.Count / 2;
            double drift = Math.Abs(refs.Skip(half).Min() / refs.Take(half).Min() - 1);
            var timing = new NormalizedTiming(ratio, bestRef, drift, attempt);
            best = best is null || timing.Drift < best.Drift ? timing : best with { Attempts = attempt };
            if (timing.Drift <= options.DriftTolerance) break;
            if (attempt < options.MaxAttempts) Remeasured++;
        }
        levels.Add(best!.ReferenceSeconds);
        return best;
    }
}
