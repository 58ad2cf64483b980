using System.CommandLine;
using System.Text;
using System.Text.Json;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Data;
using Wren.Models;
using Wren.Evaluation;
using Wren.Profiling;
using Wren.Search;

namespace Wren.Cli.Commands;

/// <summary><c>wren search run|worker|report|validate</c>: the latency-constrained evolutionary search, on one machine or many.</summary>
internal static class SearchCommands
{
    public static Command Create()
    {
        var command = new Command("search", "Latency-constrained evolutionary architecture search (aging evolution on short-training proxies)");
        command.Add(RunCommand());
        command.Add(WorkerCommand());
        command.Add(ReportCommand());
        command.Add(ValidateCommand());
        return command;
    }

    sealed class StudyOptions
    {
        public Option<string?> Storage { get; } = new("--storage") { Description = "SQLite file (default .wren/search/<study>.db) or postgresql://user:password@host:port/db" };
        public Option<string?> Study { get; } = new("--study") { Description = "study name (default: the space's name)" };

        public StudyOptions(Command command) { command.Add(Storage); command.Add(Study); }

        public string StudyName(ParseResult r, string? fallback = null) =>
            r.GetValue(Study) ?? fallback ?? throw new WrenException("give --study NAME");

        public string StorageOf(ParseResult r, string study) => r.GetValue(Storage) ?? Path.Combine(".wren", "search", study + ".db");

        /// <summary>Opens the store and an existing study: the store (caller disposes), the study, its space and its local folder.</summary>
        public (StudyStore Store, Study Study, SearchSpace Space, string Folder) OpenExisting(ParseResult r)
        {
            string name = StudyName(r), storage = StorageOf(r, name);
            var store = StudyStore.Open(storage);
            try
            {
                var (study, space) = OpenStudy(store, name);
                return (store, study, space, LocalFolder(storage, name));
            }
            catch
            {
                store.Dispose();
                throw;
            }
        }
    }

    /// <summary>The study folder for local artifacts (latency table, report, scratch runs): beside a SQLite file, else under .wren/search.</summary>
    static string LocalFolder(string storage, string study) =>
        storage.Contains("://") ? Path.Combine(".wren", "search", study) : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(storage.Replace("sqlite:", "")))!, study);

    static (Study Study, SearchSpace Space) OpenStudy(StudyStore store, string name)
    {
        var study = store.GetStudy(name) ?? throw new WrenException($"no study '{name}' in {store.Location} (studies: {string.Join(", ", store.Studies())}); start one with wren search run");
        return (study, SearchSpace.Parse(study.Space, $"study {name}"));
    }

    static ITrialEvaluator Evaluator(SearchSpace space, string data, string scratch, out TokenDataset? dataset, double stepsFactor = 1)
    {
        dataset = null;
        if (space.Proxy.Fitness == "synthetic") return new SyntheticFitness(space);
        dataset = TokenDataset.Open(data);
        return new ProxyTrainer(space, dataset, scratch, stepsFactor);
    }

    static HybridConfig Template(SearchSpace space, string data)
    {
        var template = space.TemplateConfig();
        if (space.Proxy.Fitness == "synthetic" || !File.Exists(Path.Combine(data, DataManifest.FileName))) return template;
        return DataManifest.Load(data).ModelConfig(template);
    }

    /// <summary>The predictor: the space's table, the study's own, or a new one measured here for the space's operators and widths.</summary>
    static LatencyTable Table(SearchSpace space, HybridConfig template, string? path, string folder, TorchSharp.torch.Device device)
    {
        string file = path ?? space.Latency.Table ?? Path.Combine(folder, "latency-table.json");
        if (File.Exists(file))
        {
            var loaded = LatencyTable.Load(file);
            loaded.EnsureDevice(DeviceIdentity.Current(device));
            return loaded;
        }
        var operators = space.Mixers.Select(m => m == "swa" ? "a" : m).Append("f").Distinct().ToList();
        int context = space.Latency.Prompt + space.Latency.DecodeTokens;
        LatencyTable table = null!;
        AnsiConsole.Status().Start("measuring a latency table for this space", status => table = LatencyTable.Build(template, operators, space.Widths,
            [space.Latency.Batch], [Math.Max(16, space.Latency.Prompt), context], DeviceIdentity.Current(device), repeats: 3, calibrationArchitectures: 4,
            progress: new StatusProgress(status)));
        Directory.CreateDirectory(folder);
        table.Save(file);
        AnsiConsole.MarkupLine($"latency table saved to {Markup.Escape(file)}");
        return table;
    }

    static Command RunCommand()
    {
        var command = new Command("run", "Run (or resume) a study: propose, evaluate, evolve; then write the report");
        var spaceOption = new Option<string>("--space") { Description = "search space JSON file, or quick / default", DefaultValueFactory = _ => "quick" };
        var data = new Option<string>("--data") { Description = "prepared dataset folder for the proxy training", Required = true };
        var table = new Option<string?>("--table") { Description = "latency table (default: the space's, else measured once and kept with the study)" };
        var cycles = new Option<int?>("--until-cycle") { Description = "stop after this cycle (1-based); run again to continue" };
        var noLocal = new Option<bool>("--no-local-worker") { Description = "only propose and wait: let `wren search worker` processes evaluate" };
        var measure = new Option<int>("--measure-front") { Description = "re-measure the latency of up to N front trials for real at the end", DefaultValueFactory = _ => 6 };
        foreach (var o in new Option[] { spaceOption, data, table, cycles, noLocal, measure }) command.Add(o);
        var studyOptions = new StudyOptions(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            var device = common.Initialize(result);
            var space = SearchSpace.Load(result.GetValue(spaceOption)!);
            string name = studyOptions.StudyName(result, space.Name), storage = studyOptions.StorageOf(result, name);
            string dataPath = Path.GetFullPath(result.GetValue(data)!);
            using var store = StudyStore.Open(storage);
            store.CreateStudy(name, space.ToJson(), dataPath);
            string folder = LocalFolder(storage, name);
            var template = Template(space, dataPath);
            var predictor = Table(space, template, result.GetValue(table), folder, device);
            var placer = new CandidatePlacer(space, c => predictor.PredictDecode(c, space.Latency.Batch, space.Latency.Prompt, space.Latency.DecodeTokens) * 1e3, template);
            var evaluator = Evaluator(space, dataPath, Path.Combine(folder, "scratch"), out var dataset);
            using (dataset)
            {
                var worker = result.GetValue(noLocal) ? null : new SearchWorker(store, name, evaluator);
                var driver = new SearchDriver(store, name, space, new AgingEvolution(space, placer), worker);
                AnsiConsole.MarkupLine($"study [bold]{Markup.Escape(name)}[/] in {Markup.Escape(store.Location)}: " +
                                       $"{space.Evolution.Population} + {space.Evolution.Cycles} × {space.Evolution.ChildrenPerCycle} trials");
                int? until = result.GetValue(cycles) is { } c ? c - 1 : null;
                var trials = driver.Run(until, new Callback<string>(message => AnsiConsole.MarkupLine(Markup.Escape(message))), cancellation);
                MeasureFront(store, name, space, template, trials, result.GetValue(measure));
                var outcome = SearchReport.Write(store.Trials(name), space, template, name, folder);
                AnsiConsole.MarkupLine($"report: [bold]{Markup.Escape(Path.Combine(folder, "report.md"))}[/]; winner: {Markup.Escape(outcome.Winner?.Architecture ?? "none")} " +
                                       $"@ {outcome.Winner?.Width} (proxy loss {outcome.Winner?.ProxyLoss:F4})");
            }
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The front's latency measured for real (random weights; the same decode the predictor models).</summary>
    static void MeasureFront(StudyStore store, string study, SearchSpace space, HybridConfig template, IReadOnlyList<Trial> trials, int count)
    {
        var done = trials.Where(t => t.Status == "done" && t.ProxyLoss is not null).ToList();
        var front = Pareto.Front(done, t => t.ProxyLoss!.Value, t => t.PredictedLatencyMs).Where(t => t.MeasuredLatencyMs is null).OrderBy(t => t.ProxyLoss).Take(count).ToList();
        foreach (var trial in front)
        {
            AnsiConsole.MarkupLine($"measuring trial #{trial.Number} for real");
            var config = space.Config(Architecture.Parse(trial.Architecture, space), trial.Width, template);
            int context = space.Latency.Prompt + space.Latency.DecodeTokens / 2;
            double step = LatencyTable.MeasureDecodeStep(config, space.Latency.Batch, context, tokens: 16, repeats: 3, seed: 0);
            store.SetMeasuredLatency(trial.Id, step * space.Latency.DecodeTokens * 1e3);
        }
    }

    static Command WorkerCommand()
    {
        var command = new Command("worker", "Evaluate pending trials of a study (run one per machine; many may share a PostgreSQL study)");
        var data = new Option<string?>("--data") { Description = "dataset folder on this machine (default: the path the study recorded)" };
        var idle = new Option<double>("--idle-exit") { Description = "exit after this many seconds with nothing to claim", DefaultValueFactory = _ => 600 };
        var lease = new Option<double>("--lease") { Description = "lease seconds; a trial whose worker stops renewing it is reclaimed after this", DefaultValueFactory = _ => 120 };
        foreach (var o in new Option[] { data, idle, lease }) command.Add(o);
        var studyOptions = new StudyOptions(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            var (store, study, space, folder) = studyOptions.OpenExisting(result);
            using var _ = store;
            string name = study.Name;
            var evaluator = Evaluator(space, result.GetValue(data) ?? study.Data, Path.Combine(folder, "scratch"), out var dataset);
            using (dataset)
            {
                var worker = new SearchWorker(store, name, evaluator, lease: TimeSpan.FromSeconds(result.GetValue(lease)));
                Console.WriteLine($"worker {worker.Name} serving study {name} in {store.Location}");
                int count = worker.Serve(TimeSpan.FromSeconds(result.GetValue(idle)), cancellation,
                    started: t => Console.WriteLine($"trial #{t.Number}: {t.Architecture} @ {t.Width}"),
                    finished: t => Console.WriteLine(t.Status == "done" ? $"trial #{t.Number}: proxy loss {t.ProxyLoss:F4}" : $"trial #{t.Number} failed: {t.Error}"));
                Console.WriteLine($"worker {worker.Name}: {count} trial(s) evaluated");
            }
            return Task.FromResult(0);
        });
        return command;
    }

    static Command ReportCommand()
    {
        var command = new Command("report", "Write the study's report: front, best per budget, trajectory, plots, winner config");
        var output = new Option<string?>("--out") { Description = "report folder (default: beside the study)" };
        var models = new Option<string[]>("--eval-models")
        {
            Description = "trained model folders (e.g. the winner trained from winner.config.json, and baselines) to score on --eval-tasks",
            AllowMultipleArgumentsPerToken = true,
        };
        command.Add(output);
        command.Add(models);
        var studyOptions = new StudyOptions(command);
        var evaluation = new EvalTaskOptions(command);
        command.SetAction(result =>
        {
            var (store, study, space, folder) = studyOptions.OpenExisting(result);
            using var _ = store;
            var outcome = SearchReport.Write(store.Trials(study.Name), space, Template(space, study.Data), study.Name, result.GetValue(output) ?? folder);
            Console.WriteLine(outcome.Markdown);
            if (evaluation.Read(result) is { } evalOptions)
            {
                var folders = result.GetValue(models) is { Length: > 0 } given ? given
                    : throw new WrenException("--eval-tasks needs --eval-models DIR...");
                var reports = folders.Select(m => Wren.Evaluation.Evaluator.Run(m, evalOptions) with { Model = m }).ToList();
                string table = EvalReport.Comparison(reports);
                Checkpoint.WriteAtomically(Path.Combine(result.GetValue(output) ?? folder, "accuracy.md"), table);
                Console.WriteLine(table);
            }
            return 0;
        });
        return command;
    }

    sealed record Validation(int Number, string Architecture, int Width, double ShortLoss, double LongLoss);

    static Command ValidateCommand()
    {
        var command = new Command("validate", "Retrain the top trials and a random sample for longer; rank correlation of short- vs long-budget losses");
        var top = new Option<int>("--top") { Description = "best trials to retrain", DefaultValueFactory = _ => 4 };
        var sample = new Option<int>("--random") { Description = "random other trials to retrain", DefaultValueFactory = _ => 4 };
        var factor = new Option<double>("--factor") { Description = "long budget ÷ proxy budget", DefaultValueFactory = _ => 4 };
        var seed = new Option<int>("--seed") { Description = "seed of the random sample", DefaultValueFactory = _ => 0 };
        var data = new Option<string?>("--data") { Description = "dataset folder (default: the study's)" };
        foreach (var o in new Option[] { top, sample, factor, seed, data }) command.Add(o);
        var studyOptions = new StudyOptions(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            var (store, study, space, folder) = studyOptions.OpenExisting(result);
            using var _ = store;
            string name = study.Name;
            var done = store.Trials(name).Where(t => t.Status == "done" && t.ProxyLoss is not null).OrderBy(t => t.ProxyLoss).ToList();
            var random = new Random(result.GetValue(seed));
            var chosen = done.Take(result.GetValue(top)).Concat(done.Skip(result.GetValue(top)).OrderBy(_ => random.Next()).Take(result.GetValue(sample))).ToList();
            if (chosen.Count < 3) throw new WrenException($"study '{name}' has {done.Count} finished trial(s); validation needs at least 3");
            string path = Path.Combine(folder, "validation.json");
            Directory.CreateDirectory(folder);
            var results = File.Exists(path) ? JsonSerializer.Deserialize<List<Validation>>(File.ReadAllText(path))! : [];
            var evaluator = Evaluator(space, result.GetValue(data) ?? study.Data, Path.Combine(folder, "scratch"), out var dataset, result.GetValue(factor));
            using (dataset)
                foreach (var trial in chosen.Where(t => results.All(r => r.Number != t.Number)))
                {
                    AnsiConsole.MarkupLine($"retraining trial #{trial.Number} for {result.GetValue(factor)}× the proxy budget");
                    results.Add(new Validation(trial.Number, trial.Architecture, trial.Width, trial.ProxyLoss!.Value, evaluator.Evaluate(trial, cancellation)));
                    Checkpoint.WriteAtomically(path, JsonSerializer.Serialize(results));
                }
            var used = results.Where(r => chosen.Any(t => t.Number == r.Number)).ToList();
            double spearman = RankCorrelation.Spearman(used.Select(r => r.ShortLoss).ToList(), used.Select(r => r.LongLoss).ToList());
            double kendall = RankCorrelation.Kendall(used.Select(r => r.ShortLoss).ToList(), used.Select(r => r.LongLoss).ToList());
            var text = new StringBuilder($"# Ranking validation: {name}\n\n{used.Count} trials retrained at {result.GetValue(factor)}× the proxy budget " +
                                         $"({space.Proxy.Steps} → {Math.Round(space.Proxy.Steps * result.GetValue(factor))} steps).\n\n" +
                                         "| trial | architecture | width | short-budget loss | long-budget loss |\n|---|---|---|---|---|\n");
            foreach (var r in used.OrderBy(r => r.LongLoss)) text.AppendLine($"| #{r.Number} | `{r.Architecture}` | {r.Width} | {r.ShortLoss:F4} | {r.LongLoss:F4} |");
            text.AppendLine($"\nSpearman ρ = {spearman:F3}, Kendall τ = {kendall:F3} (the method reports Spearman 0.888 between 10B- and 100B-token proxies).");
            Checkpoint.WriteAtomically(Path.Combine(folder, "validation.md"), text.ToString());
            Console.WriteLine(text);
            return Task.FromResult(0);
        });
        return command;
    }
}
