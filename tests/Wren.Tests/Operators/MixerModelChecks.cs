using TorchSharp;
using Wren.Data;
using Wren.Inference;
using Wren.Models;
using Wren.Modules;
using Wren.Profiling;
using Wren.Search;
using Wren.Serving;
using Wren.Tests.Data;
using Wren.Tokenization;
using Wren.Training;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// The model-level checks every new mixer passes (as CacheConsistencyTests, FusedDecodeTests, TrainerTests,
/// OperatorRegistryTests and EngineTests hold the first five operators to them), for a config whose layers include it.
/// </summary>
internal static class MixerModelChecks
{
    /// <summary>Prefill L0 tokens then decode token by token == the full forward at every position (batch 3, meta tokens).</summary>
    public static void PrefillThenDecodeEqualsFullForward(HybridConfig config)
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel(config, seed: 3);
        var tokens = RandomTokens(3, 23, config.VocabSize, 1);
        var full = Scoring.Logits(model, tokens);
        foreach (var prefill in new[] { 0, 1, 9, 23 })
            AssertClose(Scoring.Logits(model, tokens, prefill), full, 1e-4, $"prefill {prefill}");
    }

    /// <summary>A left-padded batch (prefill, then 4 decode steps) gives each row what it gives alone.</summary>
    public static void LeftPaddedRowsEqualEachRowAlone(HybridConfig config)
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel(config, seed: 8);
        var rows = new[] { RandomTokens(1, 9, 97, 10), RandomTokens(1, 3, 97, 11), RandomTokens(1, 6, 97, 12) };
        var pads = rows.Select(r => 9 - r.shape[1]).ToArray();
        var batch = cat(rows.Select((r, i) => cat([zeros([1, pads[i]], ScalarType.Int64), r], 1)).ToArray(), 0);
        using var cache = model.NewCache(3, 9 + 4, (int)pads.Max());
        using var noGrad = no_grad();
        var prefill = model.forward(new LMInput(batch, cache, tensor(pads))).Logits;
        var next = RandomTokens(3, 4, 97, 13);
        var decoded = Enumerable.Range(0, 4).Select(t => model.forward(new LMInput(next.narrow(1, t, 1), cache)).Logits).ToArray();
        for (int b = 0; b < 3; b++)
        {
            var alone = Scoring.Logits(model, cat([rows[b], next.narrow(0, b, 1)], 1));
            long n = rows[b].shape[1];
            AssertClose(prefill.narrow(0, b, 1).narrow(1, pads[b], n), alone.narrow(1, 0, n), 1e-4, $"row {b} prompt");
            for (int t = 0; t < 4; t++)
                AssertClose(decoded[t].narrow(0, b, 1), alone.narrow(1, n + t, 1), 1e-4, $"row {b} decode {t}");
        }
    }

    /// <summary>
    /// The fused decode (fused layers and the mixer's fused step) against the libtorch-op decode within 1e-5, and against
    /// the cache-free forward, with fp32, bf16 and int8 weights.
    /// </summary>
    public static void FusedDecodeEqualsTheOpFormInEveryPrecision(HybridConfig config)
    {
        foreach (var precision in Enum.GetValues<WeightPrecision>())
        {
            using var scope = NewDisposeScope();
            using var fp32 = RandomModel(config, seed: 5);
            using var packed = precision == WeightPrecision.Float32 ? null : WeightPacking.Pack(fp32, precision);
            var model = packed ?? fp32;
            var tokens = RandomTokens(3, 9, config.VocabSize, 7);
            var fused = Scoring.Logits(model, tokens, prefill: 4);
            model.FusedDecode = false;
            var reference = Scoring.Logits(model, tokens, prefill: 4);
            model.FusedDecode = true;
            AssertClose(fused, reference, 1e-5, $"{precision}: fused vs libtorch-op decode");
            if (precision != WeightPrecision.Int8)
                AssertClose(fused, Scoring.Logits(model, tokens), 1e-4, $"{precision}: fused decode vs cache-free forward");
        }
    }

    /// <summary>Seven training steps straight, and a run stopped after step 4 then resumed from its step-3 checkpoint: identical
    /// losses, gradient norms and weights; the loss falls.</summary>
    public static void TrainsAndResumesExactly(HybridConfig config)
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        config = config with { VocabSize = 320 };
        var options = new TrainingOptions
        {
            Steps = 7, BatchSize = 2, SeqLen = 32, LearningRate = 3e-3, WarmupSteps = 2,
            EvalEvery = 1000, EvalWindows = 4, CheckpointEvery = 3, LogEvery = 1, Seed = 5,
        };
        string straight = TempDir(), interrupted = TempDir();
        using (var trainer = Trainer.Open(straight, data, new NewRun(config, options))) trainer.Run();
        using (var trainer = Trainer.Open(interrupted, data, new NewRun(config, options)))
        {
            using var stop = new CancellationTokenSource();
            Assert.Throws<OperationCanceledException>(() =>
                trainer.Run(new Callback(s => { if (s.Step == 4) stop.Cancel(); }), stop.Token));
        }
        using (var trainer = Trainer.Open(interrupted, data, null, resume: true))
        {
            Assert.Equal(3, trainer.State.Step);
            trainer.Run();
        }
        static List<(long, double?, double?)> Losses(string run) =>
            MetricsLog.Read(Path.Combine(run, MetricsLog.FileName)).Where(e => e.Loss is not null).Select(e => (e.Step, e.Loss, e.GradNorm))
                .ToList();
        var expected = Losses(straight);
        Assert.Equal(7, expected.Count);
        Assert.True(expected[^1].Item2 < expected[0].Item2, "the loss did not fall");
        Assert.Equal(expected, Losses(interrupted));
        using var a = HybridForCausalLM.FromPretrained(Path.Combine(straight, Trainer.ModelFolder));
        using var b = HybridForCausalLM.FromPretrained(Path.Combine(interrupted, Trainer.ModelFolder));
        var bWeights = b.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in a.named_parameters()) Assert.True(p.equal(bWeights[name]).all().item<bool>(), name);
    }

    sealed class Callback(Action<TrainingStatus> action) : IProgress<TrainingStatus>
    {
        public void Report(TrainingStatus value) => action(value);
    }

    /// <summary>
    /// The layer type is searchable (a space names it; an architecture maps to it), priced (its own latency key; a table
    /// built and checked over it), sized (the footprint equals what its states allocate) and budgeted (the server's slots
    /// fit the memory given, and serve).
    /// </summary>
    public static async Task SearchablePricedSizedAndBudgeted(string layerType, HybridConfig template)
    {
        var space = SearchSpace.Load("quick") with { Mixers = [layerType, "m2"], Seeds = [] };
        space.Validate();
        Assert.Contains(layerType, SearchSpace.KnownMixers);
        Assert.Contains(layerType, space.LatencyKeys());
        var architecture = Architecture.Parse($"{layerType} 0:1 ffn1 x2 | m2 0:1 ffn0 x1 | {layerType} 0:1 ffn0 x1", space);
        Assert.Equal([layerType, "f", layerType, "f", "m2", layerType], space.Config(architecture, 128).LayerTypes);

        var config = template with { LayerTypes = [layerType, "f", layerType], NumMemoryTokens = 2 };
        Assert.Equal(layerType, OperatorRegistry.Of(config, 0).LatencyKey(config, 0));
        var options = new InterleaveOptions { Passes = 3, DecodeTokens = 2 };
        var table = LatencyTable.Build(template with { NumMemoryTokens = 0 }, [layerType, "f"], [64], [1], [16],
                                       DeviceIdentity.Current(CPU), options, fitArchitectures: 4);
        Assert.Contains(table.Layers, l => l.Operator == layerType && l.DecodeStep > 0);
        Assert.NotEmpty(table.Check(1, 16, seed: 5, options).Checks);

        using var model = RandomModel(config, seed: 2);
        var footprint = ModelFootprint.Of(config);
        foreach (var (batch, tokens) in new[] { (1, 1), (3, 40) })
        {
            using var cache = model.NewCache(batch, tokens);
            Assert.Equal(footprint.CacheBytes(batch, tokens), cache.Bytes);
        }
        Assert.Equal(footprint.Parameters, model.parameters().Sum(p => p.NumberOfElements));
        long perSlot = footprint.CacheBytes(1, 64);
        var engineOptions = new EngineOptions
        {
            MaxBatch = 64, PrefillChunk = 8, MaxBatchedTokens = 8, MaxContext = 64, PrefixCacheBytes = 0,
            MaxMemoryBytes = footprint.WeightBytes + 4 * perSlot,                      // 3 slots + one staging slot (one chunk a step)
        };
        using var engine = new InferenceEngine(model, new ByteTokenizer(97), engineOptions);
        Assert.Equal(3, engine.Slots);
        var prompt = RandomTokens(1, 11, 97, 3).data<long>().Select(i => (int)i).ToArray();
        var steps = new List<GenerationStep>();
        await foreach (var step in engine.Submit(new EngineRequest(prompt, new SamplingOptions { Temperature = 0, MaxNewTokens = 5 }))
                           .Steps.ReadAllAsync()) steps.Add(step);
        var all = prompt.Concat(steps.Select(s => s.TokenId)).Select(i => (long)i).ToArray();
        using var scope = NewDisposeScope();
        var reference = Scoring.Logits(model, tensor(all, [1, all.Length]))[0];
        for (int i = 0; i < steps.Count; i++) Assert.Equal(reference[prompt.Length - 1 + i].argmax().item<long>(), steps[i].TokenId);
    }
}
