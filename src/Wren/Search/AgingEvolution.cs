using Wren.Common;
using Wren.Models;

namespace Wren.Search;

/// <summary>An architecture placed at a width, with its predicted latency and whether it meets the target.</summary>
internal sealed record Candidate(Architecture Architecture, int Width, double PredictedLatencyMs, bool Feasible, long Parameters);

/// <summary>
/// The width rule (Nemotron-Flash paper, evolutionary search): the largest width of the space whose predicted latency meets the target, so
/// proxy loss is the only ranking signal. In multi-objective mode the architecture carries its own width.
/// </summary>
internal sealed class CandidatePlacer(SearchSpace space, Func<HybridConfig, double> latencyMs, HybridConfig? template = null)
{
    readonly HybridConfig template = template ?? space.TemplateConfig();

    public HybridConfig Config(Architecture architecture, int width) => space.Config(architecture, width, template);

    public Candidate Place(Architecture architecture)
    {
        if (space.Evolution.MultiObjective || space.Latency.TargetMs is null)
        {
            int width = architecture.Width > 0 ? architecture.Width : space.Widths.Max();
            return Make(architecture, width, latencyMs(Config(architecture, width)), feasible: true);
        }
        double target = space.Latency.TargetMs.Value;
        double latency = double.NaN;
        foreach (int width in space.Widths.OrderDescending())
        {
            latency = latencyMs(Config(architecture, width));
            if (latency <= target) return Make(architecture, width, latency, feasible: true);
        }
        return Make(architecture, space.Widths.Min(), latency, feasible: false);
    }

    Candidate Make(Architecture architecture, int width, double latency, bool feasible) =>
        new(architecture, width, latency, feasible, ModelFootprint.Of(Config(architecture, width)).Parameters);
}

/// <summary>
/// Aging evolution with tournament selection (Nemotron-Flash paper, evolutionary search), written as a pure function of the study's history
/// so that a search can stop and restart anywhere: the population before cycle c is the last <c>population</c>
/// finished trials of earlier cycles; every child of cycle c comes from a generator seeded by (seed, c).
/// Each child: sample members, take the lowest-loss one that meets the latency target (multi-objective: a random
/// member of the sample's loss–latency Pareto front), mutate exactly one factor, place it at its width.
/// </summary>
internal sealed class AgingEvolution(SearchSpace space, CandidatePlacer placer)
{
    EvolutionSettings Settings => space.Evolution;

    /// <summary>The cycle as people count it: 0 for the initial population (stored as −1), then 1, 2, … (stored 0-based).</summary>
    public static int CycleNumber(int storedCycle) => storedCycle < 0 ? 0 : storedCycle + 1;

    /// <summary>"initial population" or "cycle n" (1-based), for messages.</summary>
    public static string CycleName(int storedCycle) => storedCycle < 0 ? "initial population" : $"cycle {storedCycle + 1}";

    /// <summary>Trial numbers of cycle c start here.</summary>
    public int FirstNumber(int cycle) => cycle < 0 ? 0 : Settings.Population + cycle * Settings.ChildrenPerCycle;

    /// <summary>The seeded initial population: the space's known designs, then random architectures (duplicates skipped).</summary>
    public IReadOnlyList<NewTrial> Initial()
    {
        var random = new Random(unchecked((int)Settings.Seed * 7919 + 1));
        var chosen = new List<(Candidate Candidate, string Origin)>();
        var seen = new HashSet<string>();
        foreach (var seed in space.Seeds)
        {
            var architecture = Architecture.Parse(seed, space);
            if (chosen.Count < Settings.Population && seen.Add(Key(architecture))) chosen.Add((placer.Place(architecture), "seed"));
        }
        for (int attempt = 0; chosen.Count < Settings.Population && attempt < 10_000; attempt++)
        {
            var architecture = Architecture.Random(space, random);
            if (seen.Add(Key(architecture))) chosen.Add((placer.Place(architecture), "random"));
        }
        return chosen.Select((c, i) => Trial(c.Candidate, i, -1, "", c.Origin)).ToList();
    }

    /// <summary>The members that age out last: the last <c>population</c> finished trials before cycle c.</summary>
    public IReadOnlyList<Trial> Population(int cycle, IReadOnlyList<Trial> history) =>
        history.Where(t => t.Cycle < cycle && t.Status is "done" or "failed").OrderBy(t => t.Number).TakeLast(Settings.Population).ToList();

    /// <summary>The children of cycle <paramref name="cycle"/>; every trial of earlier cycles must be finished.</summary>
    public IReadOnlyList<NewTrial> Children(int cycle, IReadOnlyList<Trial> history)
    {
        if (history.Any(t => t.Cycle < cycle && t.Status is "pending" or "running"))
            throw new InvalidOperationException($"{CycleName(cycle)} needs every earlier trial finished");
        var population = Population(cycle, history);
        var random = new Random(unchecked((int)Settings.Seed * 7919 + 1009 * (cycle + 2)));
        var seen = history.Select(t => Key(Architecture.Parse(t.Architecture, space))).ToHashSet();
        var children = new List<NewTrial>();
        for (int i = 0; i < Settings.ChildrenPerCycle; i++)
        {
            var parent = SelectParent(population, random);
            var parentArchitecture = Architecture.Parse(parent.Architecture, space);
            var mutation = parentArchitecture.Mutate(space, random);
            for (int attempt = 1; attempt < 20 && seen.Contains(Key(mutation.Child)); attempt++)
                mutation = parentArchitecture.Mutate(space, random);
            seen.Add(Key(mutation.Child));
            children.Add(Trial(placer.Place(mutation.Child), FirstNumber(cycle) + i, cycle, $"#{parent.Number} {parent.Architecture}",
                               mutation.Change));
        }
        return children;
    }

    Trial SelectParent(IReadOnlyList<Trial> population, Random random)
    {
        var sample = population.OrderBy(_ => random.Next()).Take(Settings.Sample).OrderBy(t => t.Number).ToList();
        if (Settings.MultiObjective)
        {
            var front = Pareto.Front(sample, t => Loss(t), t => t.PredictedLatencyMs).ToList();
            return front[random.Next(front.Count)];
        }
        var feasible = sample.Where(t => t.Feasible).ToList();
        return feasible.Count > 0 ? feasible.MinBy(Loss)! : sample.MinBy(t => t.PredictedLatencyMs)!;
    }

    /// <summary>A failed trial ranks last.</summary>
    public static double Loss(Trial trial) => trial.Status == "done" && trial.ProxyLoss is { } loss
        && double.IsFinite(loss) ? loss : double.PositiveInfinity;

    /// <summary>Identity of an architecture: its layers (and width when searched), so equivalent genes count once.</summary>
    string Key(Architecture architecture) =>
        string.Join(" ", architecture.Layers(space)) + (Settings.MultiObjective ? $"@{architecture.Width}" : "");

    static NewTrial Trial(Candidate c, int number, int cycle, string parent, string mutation) =>
        new(number, cycle, c.Architecture.ToString(), parent, mutation, c.Width, c.PredictedLatencyMs, c.Feasible, c.Parameters);
}
