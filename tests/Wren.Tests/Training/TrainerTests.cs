using TorchSharp;
using Wren.Data;
using Wren.Models;
using Wren.Tests.Data;
using Wren.Training;
using static TorchSharp.torch;

namespace Wren.Tests.Training;

[Collection("cli")]
public class TrainerTests
{
    static HybridConfig SmallHybrid(int metaTokens = 4, string layers = "deltanet f m2 a") => TestSupport.Config(layers.Split(' ')) with
    { VocabSize = 320, NumMemoryTokens = metaTokens };

    static TrainingOptions Options(long steps) => new()
    {
        Steps = steps, BatchSize = 2, SeqLen = 32, LearningRate = 3e-3, WarmupSteps = 2,
        EvalEvery = 1000, EvalWindows = 4, CheckpointEvery = 3, LogEvery = 1, Seed = 5,
    };

    static HybridForCausalLM NewModel(HybridConfig config, long seed = 5)
    {
        var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed);
        return model;
    }

    [Fact]
    public void Loss_falls_on_a_small_corpus_and_the_model_folder_generates()
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        string run = TestSupport.TempDir();
        using var trainer = Trainer.Open(run, data, new NewRun(SmallHybrid(), Options(40) with { LearningRate = 1e-2, EvalEvery = 20 }));
        double before = trainer.Evaluate();
        var result = trainer.Run();
        Assert.True(result.ValLoss < before - 2, $"validation loss {before:F2} → {result.ValLoss:F2}");
        Assert.Equal(40, MetricsLog.Read(Path.Combine(run, MetricsLog.FileName)).Count(e => e.Loss is not null));
        Assert.True(File.Exists(Path.Combine(run, "loss.png")));
        Assert.Equal(0, TestSupport.Cli("generate", "--model", result.ModelFolder, "--prompt", "The quick", "--max-new-tokens", "8",
                                        "--seed", "1").Code);
    }

    [Theory]
    [InlineData("deltanet f m2 a")]
    [InlineData("mamba1 f a")]
    public void Resume_after_an_interruption_reproduces_the_uninterrupted_run_exactly(string layers)
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        var options = Options(7) with { GradAccumulation = 2, WeightNorm = true };

        string straight = TestSupport.TempDir();
        using (var trainer = Trainer.Open(straight, data, new NewRun(SmallHybrid(layers: layers), options)))
            trainer.Run();

        string interrupted = TestSupport.TempDir();
        using (var trainer = Trainer.Open(interrupted, data, new NewRun(SmallHybrid(layers: layers), options)))
        {
            using var stop = new CancellationTokenSource();
            Assert.Throws<OperationCanceledException>(() =>
                trainer.Run(new Callback(s => { if (s.Step == 4) stop.Cancel(); }), stop.Token));
        }
        Assert.Equal(3, TrainingCheckpoint.List(interrupted)[^1].Step);   // the kill lands after step 4; step 3 is the last checkpoint
        // A different new run is offered: resuming ignores it and takes the run's own config, options and weights.
        using (var trainer = Trainer.Open(interrupted, data, new NewRun(SmallHybrid(metaTokens: 0), options with { Seed = 99 }),
                                          resume: true))
        {
            Assert.Equal(3, trainer.State.Step);
            Assert.Equal(new RunOrigin(true, 3, 7), trainer.Origin);
            trainer.Run();
        }

        var expected = MetricsLog.Read(Path.Combine(straight, MetricsLog.FileName)).Where(e => e.Loss is not null).Select(e =>
            (e.Step, e.Loss, e.GradNorm)).ToList();
        var actual = MetricsLog.Read(Path.Combine(interrupted, MetricsLog.FileName)).Where(e => e.Loss is not null).Select(e =>
            (e.Step, e.Loss, e.GradNorm)).ToList();
        Assert.Equal(expected, actual);   // bit-identical losses and gradient norms, steps 1–7
        File.AppendAllText(Path.Combine(interrupted, MetricsLog.FileName), "{\"step\": 8, \"los");   // a line torn by a crash mid-append
        Assert.Equal(actual.Count, MetricsLog.Read(Path.Combine(interrupted, MetricsLog.FileName)).Count(e => e.Loss is not null));
        using var a = HybridForCausalLM.FromPretrained(Path.Combine(straight, Trainer.ModelFolder));
        using var b = HybridForCausalLM.FromPretrained(Path.Combine(interrupted, Trainer.ModelFolder));
        var bWeights = b.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in a.named_parameters()) Assert.True(p.equal(bWeights[name]).all().item<bool>(), name);
    }

    [Fact]
    public void A_training_process_killed_with_sigkill_resumes_to_the_same_losses()
    {
        var (folder, _) = Corpus.Prepared();
        string config = Path.Combine(TestSupport.TempDir(), "config.json");
        File.WriteAllText(config, SmallHybrid().ToJson());
        string[] Args(string run) =>
            ["train", "--config", config, "--data", folder, "--out", run, "--steps", "12", "--batch-size", "2", "--seq-len", "32",
             "--checkpoint-every", "2", "--log-every", "1", "--eval-every", "100", "--eval-windows", "4", "--threads", "1"];
        string straight = TestSupport.TempDir(), killed = TestSupport.TempDir();
        Assert.Equal(0, TestSupport.Cli(Args(straight)).Code);

        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Wren.Cli.dll") }.Concat(Args(killed))) start.ArgumentList.Add(a);
        using (var process = System.Diagnostics.Process.Start(start)!)
        {
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (TrainingCheckpoint.List(killed).LastOrDefault().Step < 4 && !process.HasExited
                && clock.Elapsed < TimeSpan.FromSeconds(120)) Thread.Sleep(20);
            Assert.False(process.HasExited, "the run finished before it could be killed");
            process.Kill();   // SIGKILL, mid-run
            process.WaitForExit();
        }
        long resumedFrom = TrainingCheckpoint.List(killed)[^1].Step;
        Assert.InRange(resumedFrom, 4, 11);
        Assert.Equal(0, TestSupport.Cli(["train", "--data", folder, "--out", killed, "--resume", "--threads", "1"]).Code);
        var expected = MetricsLog.Read(Path.Combine(straight, MetricsLog.FileName)).Where(e => e.Loss is not null).Select(e =>
            (e.Step, e.Loss)).ToList();
        var actual = MetricsLog.Read(Path.Combine(killed, MetricsLog.FileName)).Where(e => e.Loss is not null).Select(e =>
            (e.Step, e.Loss)).ToList();
        Assert.Equal(expected, actual);
    }

    sealed class Callback(Action<TrainingStatus> action) : IProgress<TrainingStatus>
    {
        public void Report(TrainingStatus value) => action(value);
    }

    [Fact]
    public void Weight_normalization_keeps_targets_on_the_unit_sphere_and_leaves_the_rest()
    {
        using var fresh = NewModel(SmallHybrid() with { TieWordEmbeddings = false });
        var model = fresh;
        var targets = WeightNormalization.Targets(model);
        var names = targets.ToDictionary(t => t.Name, t => t.Axis);
        Assert.Equal(NormalizedAxis.Rows, names["model.layers.0.gla.q_proj.weight"]);
        Assert.Equal(NormalizedAxis.Rows, names["model.layers.0.gla.b_proj.weight"]);
        Assert.Equal(NormalizedAxis.Columns, names["model.layers.0.gla.o_proj.weight"]);
        Assert.Equal(NormalizedAxis.Rows, names["model.layers.1.ffn.up_proj.weight"]);
        Assert.Equal(NormalizedAxis.Columns, names["model.layers.1.ffn.down_proj.weight"]);
        Assert.Equal(NormalizedAxis.Rows, names["model.layers.2.mamba.in_proj.weight"]);
        Assert.Equal(NormalizedAxis.Columns, names["model.layers.2.mamba.out_proj.weight"]);
        Assert.Equal(NormalizedAxis.Columns, names["model.layers.3.self_attn.o_proj.weight"]);
        Assert.Equal(NormalizedAxis.Rows, names["lm_head.weight"]);
        Assert.Equal(NormalizedAxis.Rows, names["model.embed_tokens.weight"]);
        Assert.DoesNotContain(names.Keys, n => n.Contains("norm") || n.Contains("conv1d") || n.Contains("A_log")
            || n.Contains("memory_tokens"));

        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        var options = Options(1) with { WeightNorm = true, CheckpointEvery = 100 };
        using var trainer = Trainer.Open(TestSupport.TempDir(), data,
                                         new NewRun(SmallHybrid() with { TieWordEmbeddings = false }, options));
        model = trainer.Model;
        targets = trainer.NormalizedMatrices;
        var others = model.named_parameters().Where(p => !names.ContainsKey(p.name)).ToDictionary(p => p.name, p =>
            p.parameter.detach().clone());
        trainer.Run();
        foreach (var target in targets)
        {
            var norms = target.Norms();
            Assert.True((norms - 1).abs().max().item<float>() <= 1e-5,
                        $"{target.Name}: norms {norms.min().item<float>()}…{norms.max().item<float>()}");
        }
        // The projection itself touches nothing else.
        var before = model.named_parameters().Where(p => !names.ContainsKey(p.name)).ToDictionary(p => p.name, p =>
            p.parameter.detach().clone());
        WeightNormalization.Apply(targets);
        foreach (var (name, p) in model.named_parameters().Where(p => !names.ContainsKey(p.name)))
            Assert.True(p.equal(before[name]).all().item<bool>(), name);
        Assert.Contains(others, kv => !kv.Value.equal(before[kv.Key]).all().item<bool>());   // …while the optimizer did move them
    }

    [Fact]
    public void Weight_decay_skips_vectors_and_meta_tokens()
    {
        using var model = NewModel(SmallHybrid());
        var decayed = model.named_parameters().Where(p => Trainer.Decays(p.name, p.parameter)).Select(p => p.name).ToList();
        Assert.Contains("model.layers.0.gla.q_proj.weight", decayed);
        Assert.DoesNotContain(decayed, n => n.EndsWith("A_log") || n.EndsWith(".D") || n.EndsWith("dt_bias") || n.Contains("norm")
            || n.EndsWith("memory_tokens") || n.EndsWith("bias"));
        Assert.Equal(0, (Options(1) with { WeightNorm = true }).EffectiveWeightDecay);
    }

    [Fact]
    public void Schedules_warm_up_and_decay_to_the_floor()
    {
        var cosine = new TrainingOptions { Steps = 100, WarmupSteps = 10, LearningRate = 1e-3, MinLrRatio = 0.1 };
        Assert.Equal(1e-4, LearningRateSchedule.At(cosine, 0), 12);
        Assert.Equal(1e-3, LearningRateSchedule.At(cosine, 9), 12);
        Assert.Equal(1e-3, LearningRateSchedule.At(cosine, 10), 12);
        Assert.Equal(1e-4, LearningRateSchedule.At(cosine, 99), 12);
        Assert.InRange(LearningRateSchedule.At(cosine, 54), 0.55e-3, 0.57e-3);   // half-way: (peak + floor) / 2 = 0.55e-3
        var wsd = cosine with { Schedule = "wsd", DecayFraction = 0.2 };
        Assert.Equal(1e-3, LearningRateSchedule.At(wsd, 81), 12);   // stable until the last 18 steps
        Assert.True(LearningRateSchedule.At(wsd, 90) < 1e-3);
        Assert.Equal(1e-4, LearningRateSchedule.At(wsd, 99), 12);
        Assert.Throws<WrenException>(() => (cosine with { Schedule = "linear" }).Validate());
        Assert.Throws<WrenException>(() => new TrainingOptions().Validate());
    }

    [Fact]
    public void A_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint()
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        string run = TestSupport.TempDir();
        using (var trainer = Trainer.Open(run, data, new NewRun(SmallHybrid(), Options(3)))) trainer.Run();
        using var again = Trainer.Open(run, data, null, resume: true, new RunLength(Steps: 6));
        using (no_grad()) again.Model.Backbone.EmbedTokens.Weight.fill_(float.NaN);   // poison the resumed weights
        var error = Assert.Throws<WrenException>(() => again.Run());
        Assert.Contains("became NaN at step 4", error.Message);
        Assert.Contains("last good checkpoint (step 3)", error.Message);
        Assert.Equal(3, TrainingCheckpoint.List(run)[^1].Step);
    }

    [Fact]
    public void Cli_train_checks_its_arguments()
    {
        var (folder, _) = Corpus.Prepared();
        string run = TestSupport.TempDir();
        var error = new StringWriter();
        int Run(params string[] args)
        {
            var (code, message) = TestSupport.Cli(args);
            error.Write(message);
            return code;
        }
        Assert.Equal(2, Run("train", "--data", folder, "--out", run, "--steps", "2"));
        Assert.Contains("give --config", error.ToString());
        Assert.Equal(2, Run("train", "--config", "flash-tiny", "--data", folder, "--out", run));
        Assert.Contains("--steps N or --tokens N", error.ToString());
        Assert.Equal(2, Run("train", "--config", "flash-tiny", "--data", folder + "-missing", "--out", run, "--steps", "2"));
        Assert.Contains("dataset folder not found", error.ToString());
        Assert.Equal(0, Run("train", "--config", "flash-tiny", "--data", folder, "--out", run, "--steps", "2", "--batch-size", "2",
                            "--seq-len", "16", "--eval-windows", "2"));
        Assert.Equal(2, Run("train", "--config", "flash-tiny", "--data", folder, "--out", run, "--steps", "2"));
        Assert.Contains("already holds a run", error.ToString());
        Assert.Equal(0, Run("train", "--data", folder, "--out", run, "--resume", "--steps", "3"));   // extends the finished run
        Assert.Equal(3, TrainingCheckpoint.List(run)[^1].Step);
    }
}

[Collection("cli")]
public class QuickstartTests
{
    [Fact]
    public void Quickstart_runs_end_to_end_on_a_given_corpus_and_reuses_its_work()
    {
        string root = TestSupport.TempDir();
        string corpus = Path.Combine(root, "corpus.jsonl");
        File.WriteAllLines(corpus,
                           Corpus.Documents(2000, seed: 2).Select(t => System.Text.Json.JsonSerializer.Serialize(new { text = t })));
        string folder = Path.Combine(root, "qs");
        string[] args = ["quickstart", "--corpus", corpus, "--out", folder, "--steps", "3", "--vocab-size", "300", "--prompt", "The quick"];
        var (code, error) = TestSupport.Cli(args);
        Assert.True(code == 0, error);
        Assert.True(File.Exists(Path.Combine(folder, "run", "model", "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(folder, "run", "model", "tokenizer.json")));
        var tokenizerWritten = File.GetLastWriteTimeUtc(Path.Combine(folder, "tokenizer.json"));
        Assert.Equal(0, TestSupport.Cli(args).Code);   // second run: tokenizer and data reused, finished training resumed as a no-op
        Assert.Equal(tokenizerWritten, File.GetLastWriteTimeUtc(Path.Combine(folder, "tokenizer.json")));
        Assert.Equal(3, TrainingCheckpoint.List(Path.Combine(folder, "run"))[^1].Step);
    }
}
