using System.CommandLine;
using System.Text;
using System.Text.Json;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Data;
using Wren.Models;
using Wren.Profiling;
using Wren.Search;

namespace Wren.Cli.Commands;

/// <summary><c>wren search run|worker|report|validate</c>: the latency-constrained evolutionary search, on one machine or many.</summary>
internal static class SearchCommands
{
    public static Command Create()
    {
        var command = new Command("search",
                                  "Latency-constrained evolutionary architecture search (aging evolution on short-training proxies)");
        command.Add(RunCommand());
        command.Add(WorkerCommand());
        command.Add(ReportCommand());
        command.Add(ValidateCommand());
        return command;
    }

    sealed class StudyOptions
    {
        public Option<string?> Storage { get; } = new("--storage")
        {
            Description = "SQLite file (default .wren/search/<study>.db) or postgresql://user:password@host:port/db",
        };
        public Option<string?> Study { get; } = new("--study") { Description = "study name (default: the space's name)" };

        public StudyOptions(Command command) { command.Add(Storage); command.Add(Study); }

        /// <summary>Opens the store and an existing study (the caller disposes the handle).</summary>
        public StudyHandle OpenExisting(ParseResult r) =>
            SearchStudy.OpenExisting(r.GetValue(Study) ?? throw new WrenException("give --study NAME"), r.GetValue(Storage));
    }

    static Command RunCommand()
    {
        var command = new Command("run", "Run (or resume) a study: propose, evaluate, evolve; then write the report");
        var spaceOption = new Option<string>("--space")
        {
            Description = "search space JSON file, or quick / default / all-operators",
            DefaultValueFactory = _ => "quick",
        };
        var data = new Option<string>("--data") { Description = "prepared dataset folder for the proxy training", Required = true };
        var table = new Option<string?>("--table")
        {
            Description = "latency table (default: the space's, else measured once and kept with the study)",
        };
        var cycles = new Option<int?>("--until-cycle") { Description = "stop after this cycle (1-based); run again to continue" };
        var noLocal = new Option<bool>("--no-local-worker")
        {
            Description = "only propose and wait: let `wren search worker` processes evaluate",
        };
        var measure = new Option<int>("--measure-front")
        {
            Description = "re-measure the latency of up to N front trials for real at the end",
            DefaultValueFactory = _ => 6,
        };
        foreach (var o in new Option[] { spaceOption, data, table, cycles, noLocal, measure }) command.Add(o);
        var studyOptions = new StudyOptions(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            var device = common.Initialize(result);
            var options = new SearchRunOptions(SearchSpace.Load(result.GetValue(spaceOption)!), result.GetValue(data)!,
                                               result.GetValue(studyOptions.Study),
                                               result.GetValue(studyOptions.Storage), result.GetValue(table), result.GetValue(cycles),
                                               !result.GetValue(noLocal), result.GetValue(measure));
            var outcome = Resumable.Run(Resumable.SameCommand(result),
                () => SearchStudy.Run(options, device, new Callback<string>(m => AnsiConsole.MarkupLine(Markup.Escape(m))), cancellation));
            var winner = outcome.Winner;
            AnsiConsole.MarkupLine($"report: [bold]{Markup.Escape(outcome.ReportFile)}[/]; winner: " +
                                   $"{Markup.Escape(winner?.Architecture ?? "none")} " +
                                   $"@ {winner?.Width} (proxy loss {winner?.ProxyLoss:F4})");
            return Task.FromResult(0);
        });
        return command;
    }

    static Command WorkerCommand()
    {
        var command = new Command("worker", "Evaluate pending trials of a study (run one per machine; many may share a PostgreSQL study)");
        var data = new Option<string?>("--data") { Description = "dataset folder on this machine (default: the path the study recorded)" };
        var idle = new Option<double>("--idle-exit")
        {
            Description = "exit after this many seconds with nothing to claim",
            DefaultValueFactory = _ => 600,
        };
        var lease = new Option<double>("--lease")
        {
            Description = "lease seconds; a trial whose worker stops renewing it is reclaimed after this",
            DefaultValueFactory = _ => 120,
        };
        foreach (var o in new Option[] { data, idle, lease }) command.Add(o);
        var studyOptions = new StudyOptions(command);
        var common = new CommonOptions(command, withDType: false);
        var launch = new MpiLaunch(command);
        command.SetAction((result, cancellation) => Task.FromResult(launch.Run(result, group =>
        {
            common.Initialize(result);
            using var handle = group.IsRoot ? studyOptions.OpenExisting(result) : null;   // rank 0 alone talks to the store
            var (study, space, folder) = SearchStudy.Share(group, handle);
            var (evaluator, dataset) = SearchStudy.Evaluation(space, result.GetValue(data) ?? study.Data, Path.Combine(folder, "scratch"),
                                                              group: group);
            using (dataset)
            {
                if (!group.IsRoot)
                {
                    SearchWorker.Follow(group, evaluator, cancellation);
                    return 0;
                }
                var worker = new SearchWorker(handle!.Store, study.Name, evaluator, lease: TimeSpan.FromSeconds(result.GetValue(lease)),
                                              group: group);
                Console.WriteLine($"worker {worker.Name} serving study {study.Name} in {handle.Store.Location}" +
                                  (group.Size > 1 ? $" with {group.Size} ranks" : ""));
                int count = worker.Serve(TimeSpan.FromSeconds(result.GetValue(idle)), cancellation,
                    started: t => Console.WriteLine($"trial #{t.Number}: {t.Architecture} @ {t.Width}"),
                    finished: t => Console.WriteLine(t.Status == "done" ? $"trial #{t.Number}: proxy loss " +
                                                                          $"{t.ProxyLoss:F4}" : $"trial #{t.Number} failed: {t.Error}"));
                Console.WriteLine($"worker {worker.Name}: {count} trial(s) evaluated");
            }
            return 0;
        })));
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
        command.SetAction((result, cancellation) =>
        {
            using var handle = studyOptions.OpenExisting(result);
            var outcome = SearchReport.Write(handle.Store.Trials(handle.Study.Name), handle.Space,
                                             SearchStudy.Template(handle.Space, handle.Study.Data),
                                             handle.Study.Name, result.GetValue(output) ?? handle.Folder,
                                             evaluation.Read(result), result.GetValue(models), cancellation);
            Console.WriteLine(outcome.Markdown);
            return Task.FromResult(0);
        });
        return command;
    }

    static Command ValidateCommand()
    {
        var command = new Command("validate",
                                  "Retrain the top trials and a random sample for longer; rank correlation of short- vs long-budget " +
                                  "losses");
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
            using var handle = studyOptions.OpenExisting(result);
            double times = result.GetValue(factor);
            var (longBudget, dataset) = SearchStudy.Evaluation(handle.Space, result.GetValue(data) ?? handle.Study.Data,
                                                               Path.Combine(handle.Folder, "scratch"),
                                                               times);
            using (dataset)
            {
                var report = Resumable.Run(Resumable.SameCommand(result),
                    () => RankingValidation.Run(handle, longBudget, result.GetValue(top), result.GetValue(sample), times,
                                                result.GetValue(seed),
                                                new Callback<string>(m => AnsiConsole.MarkupLine(Markup.Escape(m))), cancellation));
                Console.WriteLine(report.ToMarkdown());
            }
            return Task.FromResult(0);
        });
        return command;
    }
}
