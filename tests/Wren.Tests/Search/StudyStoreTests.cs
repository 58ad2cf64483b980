using System.Diagnostics;
using Wren.Search;

namespace Wren.Tests.Search;

/// <summary>
/// The study store under real concurrency: worker processes (the CLI's <c>search worker</c>) share one study, in
/// SQLite and in PostgreSQL; one worker is killed mid-trial and its trial is reclaimed after the lease.
/// </summary>
public class StudyStoreTests
{
    const int Trials = 12;

    static SearchSpace Space() => SearchSpace.Load("quick") with
    {
        Name = "workers-" + Guid.NewGuid().ToString("N")[..8],
        Proxy = new ProxySettings { Fitness = "synthetic", SyntheticSeconds = 0.8 },
        Latency = new LatencySettings { TargetMs = 1e9 },
        Evolution = new EvolutionSettings { Population = Trials, Sample = 3, ChildrenPerCycle = 2, Cycles = 0 },
        Seeds = [],
    };

    static Process Worker(string storage, string study, string lease = "2")
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Wren.Cli.dll"), "search", "worker", "--storage", storage,
                                  "--study", study, "--lease", lease, "--idle-exit", "6" })
            start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    static void WorkersShareAStudy(string storage)
    {
        var space = Space();
        string study = space.Name;
        using (var store = StudyStore.Open(storage))
        {
            store.CreateStudy(study, space.ToJson(), "none");
            store.AddTrials(study, new AgingEvolution(space, new CandidatePlacer(space, EvolutionTests.Latency)).Initial());
            store.AddTrials(study, new AgingEvolution(space, new CandidatePlacer(space, EvolutionTests.Latency)).Initial());   // idempotent
            Assert.Equal(Trials, store.Trials(study).Count);
        }

        using var victim = Worker(storage, study);
        using (var store = StudyStore.Open(storage))
        {
            var clock = Stopwatch.StartNew();
            while (!store.Trials(study).Any(t => t.Status == "running" && t.Worker!.Contains($":{victim.Id}:")))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the first worker never claimed a trial");
                Thread.Sleep(50);
            }
        }
        victim.Kill();   // SIGKILL: no cleanup, its lease just stops being renewed
        victim.WaitForExit();

        Trial killed;
        using (var store = StudyStore.Open(storage))
            killed = store.Trials(study).Single(t => t.Status == "running" && t.Worker!.Contains($":{victim.Id}:"));

        var workers = Enumerable.Range(0, 3).Select(_ => Worker(storage, study)).ToList();
        foreach (var w in workers)
        {
            Assert.True(w.WaitForExit(TimeSpan.FromSeconds(120)), "a worker did not finish");
            Assert.Equal(0, w.ExitCode);
            w.Dispose();
        }

        using (var store = StudyStore.Open(storage))
        {
            var trials = store.Trials(study);
            Assert.Equal(Trials, trials.Count);
            Assert.All(trials, t => Assert.Equal("done", t.Status));
            Assert.All(trials, t => Assert.NotNull(t.ProxyLoss));
            var reclaimed = trials.Single(t => t.Id == killed.Id);
            Assert.Equal(2, reclaimed.Attempts);
            Assert.DoesNotContain($":{victim.Id}:", reclaimed.Worker);
            Assert.All(trials.Where(t => t.Id != killed.Id), t => Assert.Equal(1, t.Attempts));   // nothing else was evaluated twice
            Assert.True(trials.Select(t => t.Worker).Distinct().Count() >= 2, "the workers shared the trials");
            // A late result from a worker that lost its lease is refused.
            Assert.False(store.Complete(killed.Id, killed.Worker!, 0.0, 1));
        }
    }

    [Fact]
    public void Sqlite_workers_in_separate_processes_share_a_study_and_reclaim_a_killed_workers_trial() =>
        WorkersShareAStudy(Path.Combine(TestSupport.TempDir(), "study.db"));

    /// <summary>
    /// Needs a PostgreSQL server: <c>./test.sh</c> (and so CI) starts a private one and sets WREN_TEST_POSTGRES. Unset, it fails;
    /// <c>skip</c> skips it on a developer machine only: CI (the CI variable set, as .ci/run does) refuses to skip.
    /// </summary>
    [Fact]
    public void Postgres_workers_in_separate_processes_share_a_study_and_reclaim_a_killed_workers_trial()
    {
        string? uri = Environment.GetEnvironmentVariable("WREN_TEST_POSTGRES");
        Assert.False(string.IsNullOrEmpty(uri), "WREN_TEST_POSTGRES is not set: run the tests with ./test.sh, which starts PostgreSQL, " +
                                                 "or set it to a postgresql://user:password@host:port/db URI (or 'skip' to skip this " +
                                                 "test)");
        bool inCi = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"));
        Assert.False(inCi && uri == "skip", "WREN_TEST_POSTGRES=skip in CI: the PostgreSQL store must be tested there");
        if (uri == "skip") return;
        WorkersShareAStudy(uri!);
    }

    [Fact]
    public void Bad_storage_gives_clear_errors()
    {
        var error = Assert.Throws<WrenException>(() => StudyStore.Open("postgresql://nobody:secret@127.0.0.1:1/none"));
        Assert.Contains("cannot connect to PostgreSQL", error.Message);
        Assert.DoesNotContain("secret", error.Message);
        string storage = Path.Combine(TestSupport.TempDir(), "s.db");
        using var store = StudyStore.Open(storage);
        store.CreateStudy("a", "{}", "data");
        Assert.Contains("another search space", Assert.Throws<WrenException>(() => store.CreateStudy("a", "{\"x\":1}", "data")).Message);
        var (code, message) = TestSupport.Cli("search", "report", "--storage", storage, "--study", "missing");
        Assert.Equal(2, code);
        Assert.Contains("no study 'missing'", message);
    }

    [Fact]
    public void Reporting_a_study_whose_store_does_not_exist_creates_no_store()
    {
        string storage = Path.Combine(TestSupport.TempDir(), "nosuch.db");
        var (code, message) = TestSupport.Cli("search", "report", "--storage", storage, "--study", "nosuch");
        Assert.Equal(2, code);
        Assert.Single(message.Trim().Split('\n'));
        Assert.Contains($"no study 'nosuch': {storage} does not exist", message);
        Assert.False(File.Exists(storage));
    }
}
