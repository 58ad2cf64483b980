using Wren.Evaluation;
using Wren.Models;
using Wren.Scaling;
using Wren.Search;
using Wren.Training;

namespace Wren.Tests.Evaluation;

/// <summary>Accuracy next to validation loss in the design-loop commands, when asked for.</summary>
[Collection("cli")]
public class DesignLoopEvaluationTests
{
    [Fact]
    public void Sweep_and_experiment_add_accuracy_on_chosen_tasks()
    {
        var (data, _) = Wren.Tests.Data.Corpus.Prepared();
        string folder = TestSupport.TempDir();
        string[] eval = ["--eval-tasks", "tiny/tiny_piqa", "tiny/tiny_arc_easy", "--eval-limit", "2"];
        var (code, error) = TestSupport.Cli(["scaling", "sweep", "--config", "flash-quick", "--pattern", "a f", "--depths", "1,2,3",
            "--widths", "64,128,192",
                                             "--data", data, "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--decode-tokens", "2",
                                             "--out", folder, .. eval]);
        Assert.True(code == 0, error);
        var points = DepthWidthSweep.Load(Path.Combine(folder, "sweep.json"));
        Assert.All(points, p => Assert.InRange(p.Accuracy!.Value, 0, 1));
        Assert.Contains("mean acc", File.ReadAllText(Path.Combine(folder, "report.md")));

        string experiment = TestSupport.TempDir();
        (code, error) = TestSupport.Cli(["experiment", "meta-tokens", "--data", data, "--out", experiment, "--steps", "2",
            "--batch-size", "2",
                                         "--seq-len", "16", "--eval-every", "1", .. eval]);
        Assert.True(code == 0, error);
        string report = File.ReadAllText(Path.Combine(experiment, "report.md"));
        Assert.Contains("Accuracy, meta-tokens on: tiny_piqa acc", report);
        Assert.Contains("Accuracy, meta-tokens off: tiny_piqa acc", report);
    }

    [Fact]
    public void Search_report_scores_trained_models_side_by_side()
    {
        var (data, _) = Wren.Tests.Data.Corpus.Prepared();
        string root = TestSupport.TempDir();
        var space = SearchSpace.Load("quick") with
        {
            Name = "acc",
            Widths = [128],
            Latency = new LatencySettings { TargetMs = 1e6, DecodeTokens = 8 },
            Proxy = new ProxySettings { Fitness = "synthetic" },
            Evolution = new EvolutionSettings { Population = 2, Sample = 1, ChildrenPerCycle = 1, Cycles = 1 },
        };
        string spacePath = Path.Combine(root, "space.json"), storage = Path.Combine(root, "studies.db");
        File.WriteAllText(spacePath, space.ToJson());
        var (code, error) = TestSupport.Cli("search", "run", "--space", spacePath, "--data", data, "--storage", storage,
            "--measure-front", "1");
        Assert.True(code == 0, error);
        string modelA = Path.Combine(root, "a"), modelB = Path.Combine(root, "b"), output = Path.Combine(root, "report");
        Assert.Equal(0, TestSupport.Cli("init", "--config", "flash-tiny", "--out", modelA, "--seed", "1").Code);
        Assert.Equal(0, TestSupport.Cli("init", "--config", "flash-tiny", "--out", modelB, "--seed", "2").Code);
        (code, error) = TestSupport.Cli("search", "report", "--storage", storage, "--study", "acc", "--out", output,
                                        "--eval-models", modelA, modelB, "--eval-tasks", "tiny/tiny_piqa", "--eval-limit", "2");
        Assert.True(code == 0, error);
        var rows = File.ReadAllLines(Path.Combine(output, "accuracy.md"));
        Assert.StartsWith("| model | tiny_piqa acc | tiny_piqa acc_norm | mean acc |", rows[0]);
        Assert.StartsWith($"| {modelA} |", rows[2]);
        Assert.StartsWith($"| {modelB} |", rows[3]);
    }

    [Fact]
    public void Report_printers_show_accuracy_only_where_it_was_measured()
    {
        var accuracy = new EvalReport("winner", "bytes", "float32", 1, 1234, null, 512, 1, 1,
            [new TaskResult("tiny_piqa", "multiple_choice", 0, 4, 8, [new MetricValue("acc", 0.75, 0.25, true)], "shipped")]);
        var space = SearchSpace.Load("quick");
        var summary = SearchSummary.Of([], space, "t");
        Assert.DoesNotContain("Accuracy", SearchReport.Markdown(summary, space, null));
        string search = SearchReport.Markdown(summary with { Accuracy = [accuracy] }, space, null);
        Assert.Contains("| model | tiny_piqa acc | mean acc |", search);
        Assert.Contains("| winner | 0.7500 ± 0.2500 | 0.7500 |", search);

        var options = new TrainingOptions();
        var result = new TrainingResult(1, 16, 5.0, 5.5, 244.7, "model", 1);
        var arms = new List<ArmResult>
        {
            new(new AblationArm("off", HybridConfig.Load("flash-tiny"), options), result, 1, 1, 1, 100),
            new(new AblationArm("on", HybridConfig.Load("flash-tiny"), options), result, 1, 1, 1, 100, accuracy),
        };
        string ablation = new AblationReport("weight-norm", "data", arms).ToMarkdown();
        Assert.Contains("Accuracy, weight-norm on: tiny_piqa acc 0.7500 ± 0.2500.", ablation);
        Assert.DoesNotContain("Accuracy, weight-norm off", ablation);
    }
}
