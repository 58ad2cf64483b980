using System.Text.RegularExpressions;
using Wren.Data;
using Wren.Models;
using Wren.Training;
using static TorchSharp.torch;

namespace Wren.Tests.Training;

/// <summary>
/// A checkpoint called good is good (tests/fixtures/cases/nan-checkpoint): after a divergence, the checkpoint the error names
/// has finite weights and finite logits on a validation batch, and the advised resume with a lower learning rate works.
/// </summary>
[Collection("cli")]
public class DivergenceTests
{
    static string Data => Path.Combine(TestSupport.Case("nan-checkpoint"), "data");

    static (int Code, string Error) Train(string run, params string[] flags) =>
        TestSupport.Cli(["train", "--data", Data, "--out", run, "--batch-size", "4", "--seq-len", "64", "--grad-clip", "0",
                         "--checkpoint-every", "1", "--keep-checkpoints", "50", "--eval-every", "100", .. flags]);

    static void AssertHealthy(string checkpoint)
    {
        using var scope = NewDisposeScope();
        using var model = TrainingCheckpoint.LoadModel(checkpoint);
        Assert.All(model.parameters(), p => Assert.True(p.isfinite().all().item<bool>(), $"{checkpoint}: non-finite weights"));
        using var data = TokenDataset.Open(Data);
        var window = new long[65];
        data.Validation.Read(0, window);
        using var _ = no_grad();
        var logits = model.forward(new LMInput(tensor(window[..64], [1, 64]))).Logits;
        Assert.True(logits.isfinite().all().item<bool>(), $"{checkpoint}: non-finite validation logits");
    }

    [Fact]
    public void The_named_checkpoint_is_finite_and_resumes_with_a_lower_learning_rate()
    {
        string run = Path.Combine(TestSupport.TempDir(), "run");
        var config = Path.Combine(TestSupport.Case("nan-checkpoint"), "config.json");
        var diverged = Train(run, "--config", config, "--lr", "100", "--warmup", "12", "--steps", "12");
        Assert.Equal(2, diverged.Code);
        var named = Regex.Match(diverged.Error, @"last good checkpoint \(step (\d+)\) is kept in (\S+);");
        Assert.True(named.Success, diverged.Error);
        foreach (var (path, _) in TrainingCheckpoint.List(run)) AssertHealthy(path);
        Assert.Equal(named.Groups[2].Value, TrainingCheckpoint.List(run)[^1].Path);

        var resumed = Train(run, "--resume", "--lr", "1e-3");
        Assert.True(resumed.Code == 0, resumed.Error);
        Assert.Equal(12, TrainingCheckpoint.List(run)[^1].Step);
        Assert.Equal(1e-3, TrainingOptions.Load(Path.Combine(run, Trainer.OptionsFile)).LearningRate);
    }

    [Fact]
    public void A_diverged_validation_ends_in_one_line_and_keeps_its_metrics()
    {
        // The tester's command (issue 10): a huge learning rate drives the validation loss past exp's range at step 5.
        string run = Path.Combine(TestSupport.TempDir(), "run");
        var config = Path.Combine(TestSupport.Case("nan-checkpoint"), "config.json");
        var (code, error) = TestSupport.Cli("train", "--config", config, "--data", Data, "--out", run, "--lr", "300", "--warmup", "20",
            "--grad-clip", "0", "--checkpoint-every", "1", "--steps", "40", "--batch-size", "2", "--seq-len", "32", "--eval-every", "5",
            "--eval-windows", "2");
        Assert.Equal(2, code);
        Assert.Single(error.Trim().Split('\n'));
        Assert.Contains(MetricsLog.Read(Path.Combine(run, MetricsLog.FileName)), e => e.Step == 5 && e.ValPpl is not null);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    public void A_non_finite_gradient_norm_stops_the_step_before_the_update(double clip)
    {
        var (folder, _) = Wren.Tests.Data.Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        var options = new TrainingOptions { Steps = 3, BatchSize = 2, SeqLen = 16, GradClip = clip, EvalWindows = 2, Seed = 1 };
        using var trainer = Trainer.Open(TestSupport.TempDir(), data, new NewRun(TestSupport.Config("f", "a"), options));
        var model = trainer.Model;
        // Logits near 1e20 keep the loss finite (float32 reaches 3.4e38), but the squared gradients overflow its norm.
        using (no_grad()) model.Backbone.FinalNorm.Weight.fill_(1e20f);
        var before = model.parameters().Select(p => p.detach().clone()).ToList();
        var error = Assert.Throws<WrenException>(() => trainer.Run());
        Assert.Contains("the gradient norm became", error.Message);
        Assert.All(model.parameters().Zip(before),
                   pair => Assert.True(pair.First.equal(pair.Second).all().item<bool>(), "a weight changed"));
    }

    [Fact]
    public void A_divergence_in_the_first_step_writes_no_checkpoint_and_says_to_start_again()
    {
        string run = Path.Combine(TestSupport.TempDir(), "run");
        var config = Path.Combine(TestSupport.Case("nan-checkpoint"), "config.json");
        var diverged = Train(run, "--config", config, "--lr", "1e4", "--warmup", "0", "--steps", "5");
        Assert.Equal(2, diverged.Code);
        Assert.Contains("no checkpoint was written yet", diverged.Error);
        Assert.Empty(TrainingCheckpoint.List(run));
        var again = Train(run, "--config", config, "--lr", "1e-3", "--warmup", "0", "--steps", "2");
        Assert.True(again.Code == 0, again.Error);
    }
}
