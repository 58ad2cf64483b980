using Wren.Common;
using Wren.Search;

namespace Wren.Tests.Search;

public class EvolutionTests
{
    static SearchSpace Space(bool multiObjective = false) => SearchSpace.Load("quick") with
    {
        Evolution = new EvolutionSettings
        {
            Population = 8, Sample = 3, ChildrenPerCycle = 4, Cycles = 6, Seed = 3, MultiObjective = multiObjective,
        },
        Proxy = new ProxySettings { Fitness = "synthetic" },
    };

    /// <summary>Synthetic latency: per-layer costs growing with width (attention dearest), in ms.</summary>
    internal static double Latency(Wren.Models.HybridConfig config) =>
        config.LayerTypes.Sum(t => t switch { "a" => 1.5, "m2" => 1.2, "deltanet" => 1.0, _ => 0.6 }) * config.HiddenSize / 128.0;

    [Fact]
    public void Mutation_changes_exactly_one_factor_and_yields_valid_configs()
    {
        var space = Space();
        var random = new Random(1);
        var template = space.TemplateConfig();
        for (int i = 0; i < 300; i++)
        {
            var parent = Architecture.Random(space, random);
            var (child, change) = parent.Mutate(space, random);
            Assert.NotEqual(string.Join(" ", parent.Layers(space)), string.Join(" ", child.Layers(space)));
            var changedStages = Enumerable.Range(0, space.Stages).Where(s => parent.Stages[s] != child.Stages[s]).ToList();
            Assert.Single(changedStages);
            var (p, c) = (parent.Stages[changedStages[0]], child.Stages[changedStages[0]]);
            int factors = (p.Ratio != c.Ratio ? 1 : 0) + (p.Ffns != c.Ffns ? 1 : 0) + (p.Blocks != c.Blocks ? 1 : 0)
                        + (p.Ratio == c.Ratio && (p.First != c.First || p.Second != c.Second) ? 1 : 0);
            Assert.True(factors == 1, $"{parent} → {child} ({change})");
            if (p.Ratio == c.Ratio && p.FirstShare > 0
                && (p.First != c.First || p.Second != c.Second)) Assert.True((p.First != c.First) ^ (p.Second != c.Second),
                                                                             "one operator at a time");
            foreach (int width in space.Widths) space.Config(child, width, template).Validate();
            Assert.Equal(child.ToString(), Architecture.Parse(child.ToString(), space).ToString());
            Assert.True(child.Layers(space).Count <= space.MaxOperators);
        }
    }

    [Fact]
    public void The_all_operators_space_offers_every_registered_mixer_and_every_child_is_a_valid_model()
    {
        var space = SearchSpace.Load("all-operators");
        var mixers = Wren.Models.OperatorRegistry.All   // Wren's own operators (other tests register toy ones)
            .Where(s => s.Create is not null && s.Create.Method.DeclaringType!.Assembly == typeof(SearchSpace).Assembly)
            .SelectMany(s => s.SearchNames).Select(n => n.Name);
        Assert.Equal(mixers.Order(), space.Mixers.Order());
        var random = new Random(2);
        var template = space.TemplateConfig();
        var used = new HashSet<string>();
        for (int i = 0; i < 200; i++)
        {
            var (child, _) = Architecture.Random(space, random).Mutate(space, random);
            used.UnionWith(child.Layers(space));
            foreach (int width in space.Widths) space.Config(child, width, template).Validate();
        }
        Assert.Superset(space.Mixers.ToHashSet(), used.Where(u => u != "f").ToHashSet());
        Assert.Equal(space.Mixers.Count, used.Count(u => u != "f"));
    }

    [Fact]
    public void A_width_a_mixer_cannot_take_is_refused_naming_the_mixer_and_width()
    {
        using var stream = typeof(SearchSpace).Assembly.GetManifestResourceStream("Wren.SearchSpaces.all-operators.json")!;
        var json = new StreamReader(stream).ReadToEnd().Replace("\"widths\": [128, 256]", "\"widths\": [128, 192]");
        var error = Assert.Throws<WrenException>(() => SearchSpace.Parse(json, "space.json"));
        Assert.Contains("mixer 'm2' at width 192", error.Message);
    }

    [Fact]
    public void Sliding_window_mixers_become_windowed_attention_layers()
    {
        var space = Space() with { Mixers = ["swa", "a", "m2"] };
        var architecture = Architecture.Parse("swa+m2 1:1 ffn0 x1 | a 0:1 ffn1 x1 | m2 0:1 ffn0 x1", space);
        var config = space.Config(architecture, 256);
        Assert.Equal(["a", "m2", "a", "f", "m2"], config.LayerTypes);
        Assert.Equal(space.SlidingWindow, config.WindowOf(0));
        Assert.Null(config.WindowOf(2));
    }

    [Fact]
    public void The_width_rule_takes_the_widest_width_within_the_target()
    {
        var space = Space() with { Latency = new LatencySettings { TargetMs = 20 } };
        var placer = new CandidatePlacer(space, Latency);
        var random = new Random(5);
        for (int i = 0; i < 100; i++)
        {
            var architecture = Architecture.Random(space, random);
            var candidate = placer.Place(architecture);
            var fitting = space.Widths.Where(w => Latency(space.Config(architecture, w)) <= 20).ToList();
            if (fitting.Count == 0) { Assert.False(candidate.Feasible); Assert.Equal(space.Widths.Min(), candidate.Width); continue; }
            Assert.True(candidate.Feasible);
            Assert.Equal(fitting.Max(), candidate.Width);
            Assert.True(candidate.PredictedLatencyMs <= 20);
        }
    }

    /// <summary>A known optimum: only DeltaNet mixers with one FFN each, the most operators, the widest width that fits.</summary>
    static double KnownFitness(Trial trial, SearchSpace space)
    {
        var layers = Architecture.Parse(trial.Architecture, space).Layers(space);
        int deltanet = layers.Count(l => l == "deltanet"), ffn = layers.Count(l => l == "f"), mixers = layers.Count - ffn;
        return 10 - deltanet - 0.5 * Math.Min(ffn, mixers) + 0.7 * Math.Abs(ffn - mixers) - trial.Width / 256.0;
    }

    [Fact]
    public void Aging_evolution_finds_the_known_optimum_of_a_synthetic_fitness()
    {
        var space = Space() with
        {
            Latency = new LatencySettings { TargetMs = 16 },
            Evolution = new EvolutionSettings { Population = 10, Sample = 4, ChildrenPerCycle = 6, Cycles = 40, Seed = 11 },
            Seeds = [],
        };
        string storage = Path.Combine(TestSupport.TempDir(), "study.db");
        using var store = StudyStore.Open(storage);
        store.CreateStudy("synthetic", space.ToJson(), "none");
        var worker = new SearchWorker(store, "synthetic", new Evaluator(t => KnownFitness(t, space)));
        var trials = new SearchDriver(store, "synthetic", space, new AgingEvolution(space, new CandidatePlacer(space, Latency)),
                                      worker).Run();
        Assert.Equal(10 + 40 * 6, trials.Count);
        Assert.All(trials, t => Assert.Equal("done", t.Status));
        // Optimum within 16 ms: 12 operators "deltanet f" ×6 at width 128 costs 9.6 ms; at 256, 19.2 ms (too slow);
        // 6 "deltanet f" pairs at 128 beat everything: fitness 10 − 6 − 3 − 0.5 = 0.5.
        var best = trials.Where(t => t.Feasible).MinBy(t => t.ProxyLoss)!;
        Assert.Equal(0.5, best.ProxyLoss!.Value, 6);
        Assert.Equal(Enumerable.Repeat(new[] { "deltanet", "f" }, 6).SelectMany(x => x),
                     Architecture.Parse(best.Architecture, space).Layers(space));
        Assert.Equal("finished", store.GetStudy("synthetic")!.State);
    }

    [Fact]
    public void An_interrupted_search_resumes_to_the_same_trials()
    {
        var space = Space() with { Latency = new LatencySettings { TargetMs = 16 } };
        IReadOnlyList<Trial> Search(string storage, params int?[] stops)
        {
            foreach (var stop in stops)
            {
                using var store = StudyStore.Open(storage);
                store.CreateStudy("s", space.ToJson(), "none");
                var worker = new SearchWorker(store, "s", new Evaluator(t => KnownFitness(t, space)));
                new SearchDriver(store, "s", space, new AgingEvolution(space, new CandidatePlacer(space, Latency)), worker).Run(stop);
            }
            using var final = StudyStore.Open(storage);
            return final.Trials("s");
        }
        var straight = Search(Path.Combine(TestSupport.TempDir(), "a.db"), [null]);
        var resumed = Search(Path.Combine(TestSupport.TempDir(), "b.db"), 1, 3, null);
        Assert.Equal(8 + 6 * 4, straight.Count);
        Assert.Equal(straight.Select(t => (t.Number, t.Architecture, t.Width, t.ProxyLoss)),
                     resumed.Select(t => (t.Number, t.Architecture, t.Width, t.ProxyLoss)));
    }

    [Fact]
    public void A_restarted_search_takes_back_the_trial_its_killed_process_held_without_waiting_for_the_lease()
    {
        var space = Space() with
        {
            Latency = new LatencySettings { TargetMs = 16 },
            Evolution = new EvolutionSettings { Population = 4, Cycles = 0 },
        };
        string storage = Path.Combine(TestSupport.TempDir(), "r.db");
        using var store = StudyStore.Open(storage);
        store.CreateStudy("r", space.ToJson(), "none");
        var evolution = new AgingEvolution(space, new CandidatePlacer(space, Latency));
        store.AddTrials("r", evolution.Initial());
        int deadPid = 4_000_000;   // above Linux's default pid_max (4,194,304 is the hard maximum): no such process
        Assert.Throws<ArgumentException>(() => System.Diagnostics.Process.GetProcessById(deadPid));
        // a crashed run's trial, long lease
        var held = store.Claim("r", $"{Environment.MachineName}:{deadPid}:dead", TimeSpan.FromHours(1))!;
        Assert.NotNull(store.Claim("r", "elsewhere:1:x", TimeSpan.FromHours(1)));   // another machine's live worker: left alone
        var worker = new SearchWorker(store, "r", new Evaluator(t => KnownFitness(t, space)));
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => new SearchDriver(store, "r", space, evolution, worker).Run(cancellation: stop.Token));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (store.Trials("r").Count(t => t.Status == "done") < 3 && clock.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(50);
        var trials = store.Trials("r");
        Assert.Equal("done", trials.Single(t => t.Id == held.Id).Status);   // released at once, not after an hour
        Assert.Equal("running", trials.Single(t => t.Worker == "elsewhere:1:x").Status);
        Assert.False(run.IsCompleted);   // still waiting for the other machine's trial
        stop.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => run.GetAwaiter().GetResult());
    }

    [Fact]
    public void Multi_objective_mode_searches_widths_and_keeps_a_pareto_front()
    {
        var space = Space(multiObjective: true) with { Latency = new LatencySettings() };
        string storage = Path.Combine(TestSupport.TempDir(), "mo.db");
        using var store = StudyStore.Open(storage);
        store.CreateStudy("mo", space.ToJson(), "none");
        var worker = new SearchWorker(store, "mo", new Evaluator(t => KnownFitness(t, space)));
        var trials = new SearchDriver(store, "mo", space, new AgingEvolution(space, new CandidatePlacer(space, Latency)), worker).Run();
        Assert.True(trials.Select(t => t.Width).Distinct().Count() > 1);
        var front = Pareto.Front(trials, t => t.ProxyLoss!.Value, t => t.PredictedLatencyMs).ToList();
        Assert.NotEmpty(front);
        foreach (var a in front)
            Assert.DoesNotContain(trials, b => b.ProxyLoss < a.ProxyLoss && b.PredictedLatencyMs < a.PredictedLatencyMs);
    }

    sealed class Evaluator(Func<Trial, double> fitness) : ITrialEvaluator
    {
        public double Evaluate(Trial trial, CancellationToken cancellation) => fitness(trial);
    }
}
