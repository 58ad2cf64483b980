using System.Diagnostics;
using Wren.Checkpoints;
using Wren.Data;
using Wren.Scaling;
using Wren.Search;
using Wren.Tests.Data;
using Wren.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Wren.Tests.Distributed;

/// <summary>
/// Data-parallel training under Open MPI's mpirun (two ranks, one thread each) against one process with the same global
/// batch. Needs mpirun: <c>./test.sh</c> installs Debian's openmpi-bin when it is missing; without it these tests fail in
/// CI (the CI variable set) and pass with a note on a developer machine.
/// </summary>
[Collection("mpi")]
public class DistributedTrainingTests(ITestOutputHelper output)
{
    const double Tolerance = 1e-5;
    static readonly Lazy<(string Data, string Config)> Inputs = new(() =>
    {
        var (data, _) = Corpus.Prepared();
        string config = Path.Combine(TestSupport.TempDir(), "tiny.json");
        // meta tokens on; every mixer family of the hybrid
        File.WriteAllText(config, (TestSupport.Config("deltanet", "f", "m2", "a") with { VocabSize = 320, NumMemoryTokens = 4 }).ToJson());
        return (data, config);
    });

    static string Cli => Path.Combine(AppContext.BaseDirectory, "Wren.Cli.dll");

    /// <summary>Global batch 2 × 3 = 6 sequences: with two ranks each computes 3, so a rank's share splits a micro-batch.</summary>
    static string[] Train(string run, int steps, string lr = "3e-3", int batch = 2) =>
    [
        Cli, "train", "--config", Inputs.Value.Config, "--data", Inputs.Value.Data, "--out", run, "--steps", steps.ToString(),
        "--batch-size", batch.ToString(), "--grad-accum", "3", "--seq-len", "32", "--weight-norm", "--lr", lr, "--warmup", "2",
        "--log-every", "1", "--eval-every", "1000", "--eval-windows", "4", "--checkpoint-every", "2", "--checksum-every", "5",
        "--threads", "1", "--seed", "5",
    ];

    static string[] Resume(string run) => [Cli, "train", "--data", Inputs.Value.Data, "--out", run, "--resume", "--threads", "1"];

    static readonly string[] Mpirun = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"];

    /// <summary>mpirun on PATH, or null after saying why the test does nothing (never in CI).</summary>
    bool MpiAvailable()
    {
        bool found = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "mpirun")));
        Assert.True(found || string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI")),
                    "mpirun is missing in CI: ./test.sh installs Open MPI (openmpi-bin, libopenmpi-dev)");
        if (!found) output.WriteLine("skipped: mpirun (Open MPI) is not installed; ./test.sh installs it");
        return found;
    }

    static Process Start(string program, IEnumerable<string> args, StringWriter log, params (string, string)[] environment)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { lock (log) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (log) log.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    static (int Code, string Output) Run(string program, IEnumerable<string> args, params (string, string)[] environment)
    {
        var log = new StringWriter();
        using var process = Start(program, args, log, environment);
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
            lock (log) Assert.Fail($"{program} did not finish: {log}");   // the handlers still write: read the log under its lock
        process.WaitForExit();
        lock (log) return (process.ExitCode, log.ToString());
    }

    static (int Code, string Output) Ranks(int n, string[] command, params string[] mpiOptions) =>
        Run("mpirun", [.. Mpirun, .. mpiOptions, "-np", n.ToString(), "dotnet", .. command]);

    static (int Code, string Output) OneProcess(string[] command) => Run("dotnet", command);

    static Dictionary<long, double> Losses(string run) =>
        MetricsLog.Read(Path.Combine(run, MetricsLog.FileName)).Where(e => e.Loss is not null)
            .ToDictionary(e => e.Step, e => e.Loss!.Value);

    static void SameCurve(string expected, string actual, int steps)
    {
        var (a, b) = (Losses(expected), Losses(actual));
        Assert.Equal(Enumerable.Range(1, steps).Select(s => (long)s), b.Keys.Order());
        foreach (var step in a.Keys)
            Assert.True(Math.Abs(a[step] - b[step]) <= Tolerance, $"step {step}: loss {b[step]:R} vs one process {a[step]:R}");
    }

    static void SameWeights(string expected, string actual)
    {
        using var a = SafeTensorsFile.Open(Path.Combine(expected, "model", "model.safetensors"));
        using var b = SafeTensorsFile.Open(Path.Combine(actual, "model", "model.safetensors"));
        Assert.Equal(a.Tensors.Keys.Order(), b.Tensors.Keys.Order());
        foreach (var name in a.Tensors.Keys)
        {
            using var x = a.Read(name);
            using var y = b.Read(name);
            double difference = (x - y).abs().max().item<float>();
            Assert.True(difference <= Tolerance, $"{name}: max |Δ| = {difference:E2}");
        }
    }

    [Fact]
    public void A_share_of_a_batch_is_the_same_rows_of_the_whole_batch()
    {
        using var data = TokenDataset.Open(Inputs.Value.Data);
        var sampler = new WindowSampler(data.Train, 5, 8, 7);
        var whole = sampler.Batch(3);
        Assert.Equal(whole[(2 * 9)..(4 * 9)], sampler.Batch(3, 2, 2));
        Assert.Equal(whole, sampler.Batch(3, 0, 3).Concat(sampler.Batch(3, 3, 2)));
        Assert.NotEqual(whole[..9], sampler.Batch(4, 0, 1));
    }

    [Theory]
    [InlineData("shared memory")]
    [InlineData("tcp")]
    public void Two_ranks_train_the_same_losses_and_weights_as_one_process(string transport)
    {
        if (!MpiAvailable()) return;
        string single = TestSupport.TempDir(), ranks = TestSupport.TempDir();
        var one = OneProcess(Train(single, 20));
        Assert.True(one.Code == 0, one.Output);
        var two = Ranks(2, Train(ranks, 20), transport == "tcp" ? ["--mca", "btl", "tcp,self"] : []);
        Assert.True(two.Code == 0, two.Output);
        SameCurve(single, ranks, 20);
        SameWeights(single, ranks);
        var options = TrainingOptions.Load(Path.Combine(ranks, Trainer.OptionsFile));
        Assert.Equal(2, options.WorldSize);
        Assert.Contains("rank 1 of 2", File.ReadAllText(RankLog.PathFor(ranks, 1)));
        Assert.Contains("step 20/20", File.ReadAllText(RankLog.PathFor(ranks, 1)));
        Assert.False(Directory.Exists(Path.Combine(ranks, "logs", "rank-2.log")));
    }

    [Fact]
    public void A_killed_rank_ends_the_job_naming_it_and_the_run_resumes_with_two_or_one_ranks_on_the_same_curve()
    {
        if (!MpiAvailable()) return;
        const int steps = 14;
        string straight = TestSupport.TempDir(), killed = TestSupport.TempDir();
        Assert.Equal(0, OneProcess(Train(straight, steps)).Code);

        int at = Random.Shared.Next(3, 10);
        var log = new StringWriter();
        using (var job = Start("mpirun", [.. Mpirun, "-np", "2", "dotnet", .. Train(killed, steps)], log))
        {
            string rankLog = RankLog.PathFor(killed, 1);
            var clock = Stopwatch.StartNew();
            while (!(File.Exists(rankLog) && File.ReadAllText(rankLog).Contains($"step {at}/")) && !job.HasExited &&
                   clock.Elapsed < TimeSpan.FromMinutes(3)) Thread.Sleep(20);
            Assert.False(job.HasExited, $"the job ended before step {at}: {log}");
            int pid = int.Parse(File.ReadLines(rankLog).First().Split("pid ")[1].Split(' ')[0]);
            using (var rank = Process.GetProcessById(pid)) rank.Kill();   // SIGKILL
            clock.Restart();
            Assert.True(job.WaitForExit(TimeSpan.FromSeconds(30)), $"the job still runs 30 s after rank 1 was killed at step {at}");
            job.WaitForExit();
            Assert.NotEqual(0, job.ExitCode);
            lock (log) Assert.Contains("rank 1", log.ToString());
        }
        long from = TrainingCheckpoint.List(killed)[^1].Step;
        Assert.InRange(from, 2, steps - 1);
        string copy = TestSupport.TempDir();
        foreach (var file in Directory.GetFiles(killed, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(copy, Path.GetRelativePath(killed, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        var two = Ranks(2, Resume(killed));
        Assert.True(two.Code == 0, two.Output);
        SameCurve(straight, killed, steps);
        // a finished run resumed again trains nothing; every rank must agree on that (and on the last validation loss)
        var again = Ranks(2, [.. Resume(killed), "--mpi-timeout", "60"]);
        Assert.True(again.Code == 0, again.Output);
        Assert.Contains("nothing to train", again.Output);
        var one = OneProcess(Resume(copy));
        Assert.True(one.Code == 0, one.Output);
        SameCurve(straight, copy, steps);
        Assert.Equal(1, TrainingOptions.Load(Path.Combine(copy, Trainer.OptionsFile)).WorldSize);
    }

    [Fact]
    public void Bad_setups_stop_before_training_with_their_error_and_exit_code_2()
    {
        if (!MpiAvailable()) return;
        var odd = Ranks(2, Train(TestSupport.TempDir(), 4, batch: 3));
        Assert.Equal(2, odd.Code);
        Assert.Contains("the world size 2 does not divide the global batch of 9 sequences", odd.Output);

        string run = TestSupport.TempDir();
        var mismatch = Run("mpirun", [.. Mpirun, "-np", "1", "dotnet", .. Train(run, 4), ":", "-np", "1", "dotnet",
                                      .. Train(run, 4, lr: "1e-3")]);
        Assert.Equal(2, mismatch.Code);
        Assert.Contains("rank 1 has other training options than rank 0", mismatch.Output);
        Assert.Empty(TrainingCheckpoint.List(run));

        var unreachable = Ranks(2, Train(TestSupport.TempDir(), 4), "-x", "WREN_MPI_LIBRARY=/nonexistent/libmpi.so.40");
        Assert.Equal(2, unreachable.Code);
        Assert.Contains("cannot load the MPI library /nonexistent/libmpi.so.40", unreachable.Output);
    }

    [Fact]
    public void A_search_worker_under_mpirun_trains_each_trial_across_the_ranks_to_the_loss_one_process_records()
    {
        if (!MpiAvailable()) return;
        var space = SearchSpace.Load("quick") with
        {
            Name = "ranks",
            Proxy = new ProxySettings { Steps = 3, BatchSize = 2, SeqLen = 32, EvalWindows = 2, WarmupSteps = 1 },
        };
        string Study()
        {
            string storage = Path.Combine(TestSupport.TempDir(), "studies.db");
            using var store = StudyStore.Open(storage);
            store.CreateStudy(space.Name, space.ToJson(), Inputs.Value.Data);
            store.AddTrials(space.Name, [new NewTrial(0, -1, space.Seeds[3], "", "seed", 128, 1, true, 0),
                                         new NewTrial(1, -1, space.Seeds[2], "", "seed", 128, 1, true, 0)]);
            return storage;
        }
        string[] Worker(string storage) =>
            [Cli, "search", "worker", "--storage", storage, "--study", space.Name, "--idle-exit", "0", "--threads", "1"];
        IReadOnlyList<Trial> Trials(string storage)
        {
            using var store = StudyStore.Open(storage);
            return store.Trials(space.Name);
        }

        string alone = Study(), ranks = Study();
        var one = OneProcess(Worker(alone));
        Assert.True(one.Code == 0, one.Output);
        var two = Ranks(2, Worker(ranks));
        Assert.True(two.Code == 0, two.Output);
        Assert.Contains("with 2 ranks", two.Output);
        Assert.Contains("2 trial(s) evaluated", two.Output);
        var (expected, actual) = (Trials(alone), Trials(ranks));
        Assert.All(expected.Concat(actual), t => Assert.Equal("done", t.Status));
        Assert.Single(actual.Select(t => t.Worker).Distinct());   // rank 0 alone records
        foreach (var (a, b) in expected.Zip(actual))
            Assert.True(Math.Abs(a.ProxyLoss!.Value - b.ProxyLoss!.Value) <= Tolerance,
                        $"trial #{b.Number}: proxy loss {b.ProxyLoss:R} with 2 ranks vs {a.ProxyLoss:R} in one process");
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Path.GetDirectoryName(ranks)!, space.Name, "scratch")));

        var unreachable = Ranks(2, Worker(Study()), "-x", "WREN_MPI_LIBRARY=/nonexistent/libmpi.so.40");
        Assert.Equal(2, unreachable.Code);
        Assert.Contains("cannot load the MPI library /nonexistent/libmpi.so.40", unreachable.Output);
    }

    [Fact]
    public void A_scaling_sweep_under_mpirun_trains_each_shape_across_the_ranks_to_the_losses_of_one_process()
    {
        if (!MpiAvailable()) return;
        string[] Sweep(string folder) =>
        [
            Cli, "scaling", "sweep", "--config", "flash-quick", "--pattern", "a f", "--depths", "1,2,3", "--widths", "64,128,192",
            "--data", Inputs.Value.Data, "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--decode-tokens", "4", "--out", folder,
            "--budget-ms", "1000", "--threads", "1",
        ];
        string alone = TestSupport.TempDir(), ranks = TestSupport.TempDir();
        var one = OneProcess(Sweep(alone));
        Assert.True(one.Code == 0, one.Output);
        var two = Ranks(2, Sweep(ranks));
        Assert.True(two.Code == 0, two.Output);
        var expected = DepthWidthSweep.Load(Path.Combine(alone, "sweep.json"));
        var actual = DepthWidthSweep.Load(Path.Combine(ranks, "sweep.json"));
        Assert.Equal(expected.Select(p => (p.Depth, p.Width)), actual.Select(p => (p.Depth, p.Width)));
        foreach (var (a, b) in expected.Zip(actual))
            Assert.True(Math.Abs(a.ValLoss - b.ValLoss) <= Tolerance,
                        $"depth {b.Depth} × width {b.Width}: validation loss {b.ValLoss:R} with 2 ranks vs {a.ValLoss:R} in one process");
        Assert.All(actual, p => Assert.True(p.DecodeMsPerToken > 0));   // rank 0 timed every shape
        Assert.True(File.Exists(Path.Combine(ranks, "report.md")));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(ranks, "runs")));
    }
}
