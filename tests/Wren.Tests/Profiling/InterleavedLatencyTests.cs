using TorchSharp;
using Wren.Models;
using Wren.Operators;
using Wren.Profiling;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Profiling;

/// <summary>
/// Reference-normalized measurement, the in-situ fit and the table built from them, on a synthetic machine: every
/// "timed" run returns a known cost times the machine's current slowdown, so the expected values are computed by hand
/// from the cost model below, never from Wren's own output.
/// </summary>
public class InterleavedLatencyTests
{
    static readonly DeviceIdentity Here = DeviceIdentity.Current(torch.CPU);
    static readonly HybridConfig Template = Config("a", "m2", "f") with { NumMemoryTokens = 0 };

    /// <summary>Per-layer cost (s) of each key: base + per-width part; attention adds 0.01 µs per position held.</summary>
    static double LayerCost(string key, int width, int positions) => key switch
    {
        "a" => 40e-6 + 0.05e-6 * width + 0.01e-6 * positions,
        "m2" => 60e-6 + 0.10e-6 * width,
        "deltanet" => 55e-6 + 0.08e-6 * width,
        "mamba1" => 70e-6 + 0.12e-6 * width,
        "f" => 20e-6 + 0.20e-6 * width,
        _ => throw new ArgumentException(key),
    };

    /// <summary>Embedding, final norm, lm_head: per-step cost outside the layers.</summary>
    static double Overhead(int width) => 100e-6 + 0.3e-6 * width;

    static List<string> Keys(HybridConfig c) =>
        Enumerable.Range(0, c.NumLayers).Select(i => OperatorRegistry.Of(c, i).LatencyKey(c, i)).ToList();

    static double TrueStep(HybridConfig c, int batch, int context) =>
        batch * (Overhead(c.HiddenSize) + Keys(c).Sum(k => LayerCost(k, c.HiddenSize, context + c.NumMemoryTokens)));

    /// <summary>A machine whose speed changes with the number of runs so far (a slowdown factor ≥ 1).</summary>
    sealed class Machine(Func<int, double> slowdown)
    {
        int runs;
        public double Run(double seconds) => seconds * slowdown(runs++);
    }

    sealed class Rig(Machine machine, double seconds, double layerShare) : IStepTimer
    {
        public double StepSeconds() => machine.Run(seconds);
        public double LayerShare => layerShare;
        public void Dispose() { }
    }

    static LatencyTable.RigFactory Rigs(Machine machine, Func<HybridConfig, int, int, double>? trueStep = null) =>
        (config, batch, context, _) =>
        {
            double step = (trueStep ?? TrueStep)(config, batch, context);
            return new Rig(machine, step, 1 - batch * Overhead(config.HiddenSize) / step);
        };

    /// <summary>
    /// A machine on which a stack runs faster when it uses fewer kinds of layer: <see cref="TrueStep"/> plus a start-up
    /// cost once per step for each mixer present (m2 30 µs, a 12 µs, deltanet 20 µs) and 3 µs per change of mixer.
    /// </summary>
    static double StepWithStartUps(HybridConfig c, int batch, int context)
    {
        var startUp = new Dictionary<string, double> { ["m2"] = 30e-6, ["a"] = 12e-6, ["deltanet"] = 20e-6, ["f"] = 0 };
        var keys = Keys(c);
        double changes = 3e-6 * FittedCosts.MixerChanges(keys);
        return TrueStep(c, batch, context) + batch * (keys.Distinct().Sum(k => startUp[k]) + changes);
    }

    static LatencyTable Build(Machine machine, int fitArchitectures = 12) =>
        LatencyTable.Build(Template, ["a", "m2", "f"], [64, 128], [1], [100, 300], Here, new InterleaveOptions { Passes = 5 },
                           fitArchitectures, rigs: Rigs(machine));

    [Fact]
    public void A_linear_drift_cancels_between_the_reference_runs_around_each_candidate_run()
    {
        var machine = new Machine(run => 1 + 0.02 * run);   // 2 % slower every run: 30 % over one measurement
        var clock = new InterleavedClock(new Rig(machine, 1e-3, 0), new InterleaveOptions { Passes = 7, DriftTolerance = 1 });
        var timing = clock.Measure(new Rig(machine, 2.5e-3, 0));
        Assert.Equal(2.5, timing.Ratio, 12);
        Assert.Equal(1, timing.Attempts);
    }

    [Fact]
    public void Runs_slowed_down_by_other_processes_are_left_out()
    {
        var spikes = new Random(7);   // 20 % of runs, candidate's or reference's, 1.1–3× slower
        var machine = new Machine(_ => spikes.NextDouble() < 0.2 ? 1.1 + 1.9 * spikes.NextDouble() : 1.0);
        var clock = new InterleavedClock(new Rig(machine, 1e-3, 0), new InterleaveOptions { Passes = 9 });
        for (int i = 0; i < 20; i++) Assert.Equal(2.5, clock.Measure(new Rig(machine, 2.5e-3, 0)).Ratio, 1e-9);
    }

    [Fact]
    public void A_reference_that_moves_during_a_measurement_is_measured_again()
    {
        // Runs 0–4 at full speed, then 60 % slower for good: the first measurement straddles the change.
        var machine = new Machine(run => run < 5 ? 1.0 : 1.6);
        var clock = new InterleavedClock(new Rig(machine, 1e-3, 0), new InterleaveOptions { Passes = 5, DriftTolerance = 0.1 });
        var timing = clock.Measure(new Rig(machine, 3e-3, 0));
        Assert.Equal(2, timing.Attempts);
        Assert.Equal(1, clock.Remeasured);
        Assert.Equal(3.0, timing.Ratio, 12);
        Assert.Equal(1.6e-3, timing.ReferenceSeconds, 12);
    }

    [Fact]
    public void Normalized_predictions_do_not_move_when_the_machine_slows_down_during_the_build()
    {
        var steady = Build(new Machine(_ => 1.0));
        var slowed = Build(new Machine(run => run < 50 ? 1.0 : 1.45));          // a 45 % slowdown part-way through the probes
        var drifting = Build(new Machine(run => 1 + 0.5 * Math.Sin(run / 50.0) * Math.Sin(run / 50.0)));   // slow swings up to 50 %
        Assert.True(slowed.Drift > 1.4, $"the slowdown happened (drift ×{slowed.Drift:F2})");
        Assert.NotEqual(steady.Reference.StepSeconds, slowed.Reference.StepSeconds, 6);
        var random = new Random(5);
        for (int i = 0; i < 20; i++)
        {
            var keys = Enumerable.Range(0, random.Next(4, 20)).Select(_ => new[] { "a", "m2", "f" }[random.Next(3)]).ToList();
            var config = Template.WithShape(keys, i % 2 == 0 ? 64 : 128);
            int context = random.Next(100, 301);
            double truth = TrueStep(config, 1, context) / steady.Reference.StepSeconds;   // steady machine: reference units by hand
            foreach (var table in new[] { steady, slowed, drifting })
            {
                Assert.Equal(truth, table.PredictByFit(config, 1, context)!.Value, truth * 1e-3);
                Assert.Equal(truth, table.PredictBySum(config, 1, context), truth * 1e-3);
            }
        }
    }

    [Fact]
    public void Mamba1_layers_are_probed_and_priced_under_their_own_key()
    {
        var table = LatencyTable.Build(Template, ["a", "mamba1", "f"], [64, 128], [1], [100, 300], Here,
                                       new InterleaveOptions { Passes = 5 },
                                       fitArchitectures: 12, rigs: Rigs(new Machine(_ => 1.0)));
        Assert.Equal(2, table.Layers.Count(l => l.Operator == "mamba1"));              // one context: its cost does not grow with it
        var config = Template.WithShape(["mamba1", "f", "a", "mamba1", "f"], 128);
        double truth = TrueStep(config, 1, 200) / table.Reference.StepSeconds;
        Assert.Equal(truth, table.PredictBySum(config, 1, 200), truth * 1e-3);
        Assert.Equal(truth, table.PredictByFit(config, 1, 200)!.Value, truth * 1e-3);
    }

    [Fact]
    public void The_check_on_a_machine_slower_than_at_the_build_still_compares_like_with_like()
    {
        var table = Build(new Machine(_ => 1.0));
        var check = table.Check(5, 200, seed: 2, new InterleaveOptions { Passes = 5 }, rigs: Rigs(new Machine(_ => 1.7)));
        Assert.Equal(10, check.Checks.Count);
        Assert.Equal([64, 128], check.Checks.Select(c => c.Width).Distinct().Order());
        Assert.Equal(1.7 * check.ReferenceMsAtBuild, check.ReferenceMsNow, 1e-9);
        foreach (var c in check.Checks)
        {
            var config = Template.WithShape(c.LayerTypes, c.Width);
            Assert.Equal(TrueStep(config, 1, 200) / table.Reference.StepSeconds, c.Measured, c.Measured * 1e-9);   // in build units
        }
        var overall = check.Summaries.Single(s => s.Predictor == "fit" && s.Width is null && s.Family is null);
        Assert.True(overall.Mape < 0.1 && overall.Within5 == 1 && overall.MeetsTarget, $"MAPE {overall.Mape} %");
        Assert.Equal(3, check.Summaries.Count(s => s.Predictor == "sum" && s.Family is null));   // per width and overall
        Assert.Equal(4, check.Summaries.Count(s => s.Predictor == "sum" && s.Family is not null));   // per family (5 per width)
        Assert.Contains("drew the fitted architectures", Assert.Throws<WrenException>(
            () => table.Check(1, 200, LatencyTable.CalibrationSeed, new InterleaveOptions())).Message);
    }

    [Fact]
    public void The_fit_recovers_known_overhead_and_per_layer_costs()
    {
        var truth = new Dictionary<string, double> { ["a"] = 0.31, ["a:w128"] = 0.12, ["m2"] = 0.47, ["f"] = 0.09 };
        const double overhead = 0.8;
        var random = new Random(11);
        var samples = Enumerable.Range(0, 30).Select(_ =>
        {
            var keys = Enumerable.Range(0, random.Next(3, 25)).Select(_ => truth.Keys.ElementAt(random.Next(truth.Count))).ToList();
            return new FitSample(keys, overhead + keys.Sum(k => truth[k]));
        }).ToList();
        var fit = FittedCosts.Fit(128, 1, samples);
        Assert.Equal(overhead, fit.Overhead, 9);
        foreach (var (key, cost) in truth) Assert.Equal(cost, fit.PerLayer[key], 9);
        Assert.True(fit.RmsPercent < 1e-6);
        Assert.Contains("needs at least", Assert.Throws<WrenException>(() => FittedCosts.Fit(128, 1, samples.Take(4).ToList())).Message);
    }

    [Fact]
    public void The_fit_recovers_known_start_up_and_mixer_change_costs()
    {
        var perLayer = new Dictionary<string, double> { ["a"] = 0.31, ["m2"] = 0.47, ["deltanet"] = 0.40, ["f"] = 0.09 };
        var startUp = new Dictionary<string, double> { ["a"] = 0.05, ["m2"] = 0.21, ["deltanet"] = 0.12 };
        const double overhead = 0.8, change = 0.04;
        var random = new Random(13);
        var samples = Enumerable.Range(0, 40).Select(i =>
        {
            var kinds = perLayer.Keys.OrderBy(_ => random.Next()).Take(1 + i % 4).ToList();   // 1–4 kinds of layer
            var keys = Enumerable.Range(0, random.Next(3, 25)).Select(_ => kinds[random.Next(kinds.Count)]).ToList();
            int changes = 0;
            var mixers = keys.Where(k => k != "f").ToList();
            for (int j = 1; j < mixers.Count; j++) changes += mixers[j] != mixers[j - 1] ? 1 : 0;   // by hand
            double startUps = keys.Distinct().Sum(k => startUp.GetValueOrDefault(k));
            return new FitSample(keys, overhead + keys.Sum(k => perLayer[k]) + startUps + change * changes);
        }).ToList();
        var fit = FittedCosts.Fit(128, 1, samples);
        Assert.Equal(overhead, fit.Overhead, 9);
        foreach (var (key, cost) in perLayer) Assert.Equal(cost, fit.PerLayer[key], 9);
        foreach (var (key, cost) in startUp) Assert.Equal(cost, fit.PerKeyPresent![key], 9);
        Assert.Equal(change, fit.PerMixerChange, 9);
        Assert.True(fit.RmsPercent < 1e-6);
        Assert.Equal(2, FittedCosts.MixerChanges(["m2", "f", "a", "f", "f", "a", "m2"]));
        // Too few architectures for the extra terms: the per-layer model alone, which cannot express them.
        var small = FittedCosts.Fit(128, 1, samples.Take(8).ToList());
        Assert.Empty(small.PerKeyPresent!);
        Assert.Equal(0, small.PerMixerChange);
    }

    [Fact]
    public void With_a_probe_prior_few_noisy_architectures_move_the_costs_only_as_far_as_they_agree()
    {
        string[] names = ["a", "a:w128", "mamba1", "m2", "gla", "deltanet", "gdn", "rwkv7", "mlstm", "hymba", "f"];
        var random = new Random(19);
        var truth = names.ToDictionary(k => k, _ => 0.2 + random.NextDouble());
        const double overhead = 0.8;
        // Probe entries 5 % high (a probe of one repeated layer runs slower than the layer among others).
        var prior = new FitPrior(overhead * 1.05, truth.ToDictionary(kv => kv.Key, kv => kv.Value * 1.05));
        List<string> Stack() => Enumerable.Range(0, random.Next(4, 25)).Select(_ => names[random.Next(names.Length)]).ToList();
        double Step(IReadOnlyList<string> keys) => overhead + keys.Sum(k => truth[k]);
        var samples = Enumerable.Range(0, 12).Select(_ => Stack())
            .Select(keys => new FitSample(keys, Step(keys) * (1 + 0.04 * (2 * random.NextDouble() - 1)))).ToList();

        Assert.Contains("needs at least", Assert.Throws<WrenException>(() => FittedCosts.Fit(128, 1, samples)).Message);
        var fit = FittedCosts.Fit(128, 1, samples, prior);
        foreach (var (key, cost) in truth)
            Assert.True(Math.Abs(fit.PerLayer.GetValueOrDefault(key, cost) / cost - 1) < 0.12,
                        $"{key}: {fit.PerLayer.GetValueOrDefault(key, cost):F3} vs {cost:F3}");
        foreach (var name in names.Where(FittedCosts.IsMixer))
        {
            var homogeneous = Enumerable.Range(0, 6).SelectMany(_ => new[] { name, "f" }).ToList();
            if (!homogeneous.All(fit.PerLayer.ContainsKey)) continue;
            double error = fit.Predict(homogeneous) / Step(homogeneous) - 1;
            Assert.True(Math.Abs(error) < 0.08, $"pure {name}: {error:P1}");
        }

        // Exact data and enough of it: leave-one-out picks no shrinkage and the fit is exact, prior or not.
        var exact = Enumerable.Range(0, 60).Select(_ => Stack()).Select(keys => new FitSample(keys, Step(keys))).ToList();
        var unshrunk = FittedCosts.Fit(128, 1, exact, prior);
        Assert.Equal(overhead, unshrunk.Overhead, 6);
        foreach (var (key, cost) in truth) Assert.Equal(cost, unshrunk.PerLayer[key], 6);
    }

    [Fact]
    public void A_synthetic_homogeneous_stack_bias_is_removed_by_the_start_up_terms_and_the_stack_families()
    {
        var table = LatencyTable.Build(Template, ["a", "m2", "deltanet", "f"], [64, 128], [1], [100, 300], Here,
                                       new InterleaveOptions { Passes = 5 }, fitArchitectures: 24,
                                       rigs: Rigs(new Machine(_ => 1.0), StepWithStartUps));
        var homogeneous = Template.WithShape([.. Enumerable.Range(0, 6).SelectMany(_ => new[] { "m2", "f" })], 128);
        double truth = StepWithStartUps(homogeneous, 1, 200) / table.Reference.StepSeconds;
        Assert.Equal(truth, table.PredictByFit(homogeneous, 1, 200)!.Value, truth * 1e-6);

        // The model before: per-layer costs fitted on mixed stacks where every key is present. Their start-up costs land in
        // the overhead, so a stack of one mixer is charged for the three it lacks: over-predicted by 20/12/8 µs by hand.
        var random = new Random(17);
        var mixed = Enumerable.Range(0, 24).Select(_ =>
        {
            var keys = new List<string> { "a", "m2", "deltanet", "f" };
            keys.AddRange(Enumerable.Range(0, random.Next(4, 20)).Select(_ => keys[random.Next(4)]));
            var config = Template.WithShape(keys.OrderBy(_ => random.Next()).ToList(), 128);
            return new FitSample(Keys(config), StepWithStartUps(config, 1, 100));
        }).ToList();
        var perLayerOnly = FittedCosts.Fit(128, 1, mixed);
        Assert.Empty(perLayerOnly.PerKeyPresent!);   // no key is ever absent: the presence terms are the overhead's column
        double atFirstContext = StepWithStartUps(homogeneous, 1, 100);
        double missing = 20e-6 + 12e-6;   // deltanet's and attention's start-ups, never paid by this stack
        Assert.True(Math.Abs(perLayerOnly.Predict(Keys(homogeneous)) - (atFirstContext + missing)) < 0.1 * missing,
                    $"per-layer fit {perLayerOnly.Predict(Keys(homogeneous)) * 1e6:F1} µs; truth {atFirstContext * 1e6:F1} µs");

        var check = table.Check(8, 200, seed: 4, new InterleaveOptions { Passes = 5 }, rigs: Rigs(new Machine(_ => 1.0), StepWithStartUps));
        Assert.Equal(Enum.GetValues<StackFamily>(), check.Checks.Select(c => c.Family).Distinct().Order());
        foreach (var c in check.Checks.Where(c => c.Family == StackFamily.Homogeneous))
            Assert.Single(c.LayerTypes.Distinct(), t => t != "f");
        foreach (var c in check.Checks.Where(c => c.Family == StackFamily.FfnHeavy))
            Assert.Equal(2 * c.LayerTypes.Count / 3, c.LayerTypes.Count(t => t == "f"));
        var homogeneousFit = check.Summaries.Single(s => s.Predictor == "fit" && s.Family == StackFamily.Homogeneous);
        Assert.True(homogeneousFit.Mape < 1e-3, $"homogeneous MAPE {homogeneousFit.Mape} %");
    }

    [Fact]
    public void Rounds_outvote_a_fitted_architecture_measured_slow_once()
    {
        // Every fifth whole-architecture rig (not the probes, not the reference) runs 30 % slow for its whole measurement,
        // which the interleaving cannot see: its reference runs are not slowed.
        int wholeRigs = 0;
        var machine = new Machine(_ => 1.0);
        LatencyTable.RigFactory rigs = (config, batch, context, observe) =>
        {
            double step = TrueStep(config, batch, context);
            bool slow = !observe && config.NumLayers != 3 && ++wholeRigs % 5 == 0;   // 12 per round: never the same one twice
            return new Rig(machine, slow ? 1.3 * step : step, 1 - batch * Overhead(config.HiddenSize) / step);
        };
        var table = LatencyTable.Build(Template, ["a", "m2", "f"], [128], [1], [100, 300], Here,
                                       new InterleaveOptions { Passes = 5, Rounds = 3 }, fitArchitectures: 12, rigs: rigs);
        var config = Template.WithShape(["m2", "f", "a", "f", "m2", "f"], 128);
        double truth = TrueStep(config, 1, 200) / table.Reference.StepSeconds;
        Assert.Equal(truth, table.PredictByFit(config, 1, 200)!.Value, truth * 1e-9);
        Assert.True(table.Fits.Single().RmsPercent < 1e-6);
    }

    [Fact]
    public void Every_registered_operator_is_probed_fitted_and_checked()
    {
        var names = OperatorRegistry.All.Select(s => s.Name).ToList();
        // A made-up cost per operator (its registry position), attention-like ones growing with the positions they hold.
        double Cost(string key, int width, int positions)
        {
            var spec = OperatorSpec.ParseLatencyKey(key).Operator;
            int index = names.IndexOf(spec.Name);
            return 20e-6 + 5e-6 * index + 0.02e-6 * width * (1 + index % 3) + (spec.CostGrowsWithContext ? 0.01e-6 * positions : 0);
        }
        double Step(HybridConfig c, int batch, int context) =>
            batch * (Overhead(c.HiddenSize) + Keys(c).Sum(k => Cost(k, c.HiddenSize, context + c.NumMemoryTokens)));
        var table = LatencyTable.Build(Template, names, [64, 128], [1], [100, 300], Here, new InterleaveOptions { Passes = 3 },
                                       fitArchitectures: 48, rigs: Rigs(new Machine(_ => 1.0), Step));
        foreach (var spec in OperatorRegistry.All)
            Assert.Equal(spec.CostGrowsWithContext ? 4 : 2, table.Layers.Count(l => l.Operator == spec.Name));   // 2 widths × contexts
        Assert.Contains(table.Layers, l => l.Operator == "hymba" && l.Context == 300);
        Assert.Equal(names.Order(), table.Fits.Single(f => f.Width == 128).PerLayer.Keys.Order());
        var check = table.Check(8, 200, seed: 9, new InterleaveOptions { Passes = 3 }, rigs: Rigs(new Machine(_ => 1.0), Step));
        var overall = check.Summaries.Single(s => s.Predictor == "fit" && s.Width is null && s.Family is null);
        Assert.True(overall.Mape < 1e-3, $"MAPE {overall.Mape} %");
        Assert.Equal(4, check.Summaries.Count(s => s.Predictor == "fit" && s.Family is not null));
    }

    [Fact]
    public void A_table_built_on_a_noisy_machine_fits_in_situ_costs_in_reference_units()
    {
        var jitter = new Random(3);   // swings of up to 40 % over ~120 runs, and ±1 % from run to run
        var table = Build(new Machine(run => (1 + 0.4 * Math.Pow(Math.Sin(run / 40.0), 2)) * (1 + 0.02 * (jitter.NextDouble() - 0.5))),
                          fitArchitectures: 24);
        var fit = table.Fits.Single(f => f.Width == 128);
        double reference = TrueStep(Template.WithShape(["a", "m2", "f"], 64), 1, 100);   // the reference model, by hand
        Assert.Equal(LayerCost("m2", 128, 0) / reference, fit.PerLayer["m2"], 0.02 * LayerCost("m2", 128, 0) / reference);
        Assert.Equal(LayerCost("f", 128, 0) / reference, fit.PerLayer["f"], 0.02 * LayerCost("f", 128, 0) / reference);
        // The overhead shares its column space with the start-up terms (zero here), which the noise moves by ~1 % of a
        // step; whole stacks are what the fit is for: within 1 %.
        foreach (var layers in new[] { new[] { "m2", "f", "m2", "f", "m2", "f" }, ["a", "f", "f", "a", "f", "f"], ["m2", "a", "f", "a"] })
        {
            var config = Template.WithShape(layers, 128);
            double truth = TrueStep(config, 1, 100) / reference;
            Assert.Equal(truth, table.PredictByFit(config, 1, 100)!.Value, 0.01 * truth);
        }
    }

    [Fact]
    public void Windowed_attention_layers_are_priced_by_their_own_entries()
    {
        var table = new LatencyTable(Here, Template, new ReferenceStep(["a", "f"], 64, 100, 1.0),
            [new LayerCost("a", 64, 1, 100, 10e-6), new LayerCost("a", 64, 1, 300, 30e-6), new LayerCost("a:w128", 64, 1, 100, 4e-6),
             new LayerCost("a:w128", 64, 1, 300, 6e-6), new LayerCost("f", 64, 1, 100, 2e-6)],
            [new StepOverhead(64, 1, 7e-6)], [],
            [new FittedCosts(64, 1, 5e-6, new Dictionary<string, double> { ["a"] = 11e-6, ["a:w128"] = 3e-6, ["f"] = 1e-6 }, 20, 0)], 1,
            DateTimeOffset.UnixEpoch);
        var global = Template.WithShape(["a", "a", "f"], 64) with { SlidingWindow = null, GlobalAttnIdx = [] };
        // As the table builds it: layer 0 global, then layer 1 sliding a 128-token window.
        var windowed = Attention.Spec.WithLatencyVariant(Attention.Spec.WithLatencyVariant(global, null, [0]), "w128", [1]);
        Assert.Equal(["a", "a:w128", "f"], Keys(windowed));
        Assert.Equal(7 + 20 + 5 + 2, table.PredictBySum(windowed, 1, 200) * 1e6, 6);
        Assert.Equal(7 + 20 + 20 + 2, table.PredictBySum(global, 1, 200) * 1e6, 6);
        // Fit: overhead 5 + a 11 + a:w128 3 + f 1, plus each attention layer's growth from its first context (10 → 20, 4 → 5).
        Assert.Equal(5 + 11 + 3 + 1 + 10 + 1, table.PredictByFit(windowed, 1, 200)!.Value * 1e6, 6);
        // The search space names windowed attention "swa": its table keys price it apart.
        var space = Wren.Search.SearchSpace.Load("quick") with { Mixers = ["a", "swa"] };
        Assert.Contains($"a:w{space.SlidingWindow}", space.LatencyKeys());
    }
}
