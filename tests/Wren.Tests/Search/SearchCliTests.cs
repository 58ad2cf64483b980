using Wren.Data;
using Wren.Search;
using Wren.Tests.Data;

namespace Wren.Tests.Search;

[Collection("cli")]
public class SearchCliTests
{
    [Fact]
    public void Proxy_training_scores_a_trial_and_cleans_up()
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        var space = SearchSpace.Load("quick") with { Proxy = new ProxySettings { Steps = 2, BatchSize = 2, SeqLen = 32, EvalWindows = 2 } };
        string scratch = TestSupport.TempDir();
        var trial = new Trial { Number = 7, Architecture = space.Seeds[3], Width = 128 };
        double loss = new ProxyTrainer(space, data, scratch).Evaluate(trial, CancellationToken.None);
        Assert.InRange(loss, 1, 10);
        Assert.Empty(Directory.GetFileSystemEntries(scratch));
    }

    [Fact]
    public void Search_run_report_and_training_the_winner_work_from_the_cli()
    {
        var (data, _) = Corpus.Prepared();
        string root = TestSupport.TempDir();
        var space = SearchSpace.Load("quick") with
        {
            Name = "cli",
            Widths = [128, 256],
            Latency = new LatencySettings { TargetMs = 1e6, DecodeTokens = 32 },
            Proxy = new ProxySettings { Fitness = "synthetic" },
            Evolution = new EvolutionSettings { Population = 4, Sample = 2, ChildrenPerCycle = 2, Cycles = 2 },
        };
        string spacePath = Path.Combine(root, "space.json");
        File.WriteAllText(spacePath, space.ToJson());
        string storage = Path.Combine(root, "studies.db");
        var (code, error) = TestSupport.Cli("search", "run", "--space", spacePath, "--data", data, "--storage", storage,
                                            "--until-cycle", "1", "--measure-front", "1");
        Assert.True(code == 0, error);
        using (var store = StudyStore.Open(storage)) Assert.Equal(6, store.Trials("cli").Count);   // stopped after cycle 1
        (code, error) = TestSupport.Cli("search", "run", "--space", spacePath, "--data", data, "--storage", storage,
                                        "--measure-front", "1");
        Assert.True(code == 0, error);
        using (var store = StudyStore.Open(storage))
        {
            var trials = store.Trials("cli");
            Assert.Equal(8, trials.Count);
            Assert.All(trials, t => Assert.Equal("done", t.Status));
            Assert.Contains(trials, t => t.MeasuredLatencyMs is > 0);
            var seeds = space.Seeds.Take(4).Select(s => Architecture.Parse(s, space).ToString()).ToHashSet();
            Assert.All(trials.Where(t => t.Cycle < 0 && seeds.Contains(t.Architecture)), t => Assert.True(t.MeasuredLatencyMs > 0,
                $"seeded trial #{t.Number} was not measured"));   // the baselines are compared by measured latency
            Assert.Equal("finished", store.GetStudy("cli")!.State);
        }
        Assert.Equal(0, TestSupport.Cli("search", "report", "--storage", storage, "--study", "cli").Code);
        string folder = Path.Combine(root, "cli");
        foreach (var file in new[] { "report.md", "front.png", "trajectory.svg", "winner.config.json", "latency-table.json" })
            Assert.True(File.Exists(Path.Combine(folder, file)), file);
        (code, error) = TestSupport.Cli("train", "--config", Path.Combine(folder, "winner.config.json"), "--data", data,
                                        "--out", Path.Combine(root, "winner"),
                                        "--steps", "1", "--batch-size", "1", "--seq-len", "16", "--eval-windows", "1");
        Assert.True(code == 0, error);

        (code, error) = TestSupport.Cli("search", "run", "--space", Path.Combine(root, "missing.json"), "--data", data);
        Assert.Equal(2, code);
        Assert.Contains("search space not found", error);
    }
}
