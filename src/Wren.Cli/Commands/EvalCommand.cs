using System.CommandLine;
using Spectre.Console;
using Wren.Common;
using Wren.Evaluation;

namespace Wren.Cli.Commands;

/// <summary><c>wren eval</c>: zero- and few-shot accuracy and perplexity as lm-evaluation-harness scores them.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var command = new Command("eval",
            "Score a model on lm-evaluation-harness tasks (multiple choice, LAMBADA, perplexity) from local files");
        var model = new Option<string>("--model") { Description = "model folder", Required = true };
        var tasks = new Option<string[]>("--tasks")
        {
            Description = $"task YAML files, folders of them, or shipped tasks ({string.Join(", ", TaskFiles.ShippedNames)})",
            Required = true, AllowMultipleArgumentsPerToken = true,
        };
        var data = new Option<string[]>("--data")
        {
            Description = "data for a task: TASK=FILE (its evaluated split) or TASK:SPLIT=FILE; repeatable",
        };
        var shots = new Option<int?>("--num-fewshot") { Description = "examples before each document (default: the task file's, else 0)" };
        var limit = new Option<int?>("--limit") { Description = "score only the first N documents of each task" };
        var batch = new Option<int>("--batch-size") { Description = "requests per forward", DefaultValueFactory = _ => 1 };
        var seed = new Option<int>("--seed") { Description = "few-shot sampling seed", DefaultValueFactory = _ => 1234 };
        var maxLength = new Option<int?>("--max-length")
        {
            Description = "tokens per forward (default: max_position_embeddings, else 2048)",
        };
        var output = new Option<string?>("--out") { Description = "write the results as JSON to this file" };
        foreach (var o in new Option[] { model, tasks, data, shots, limit, batch, seed, maxLength, output }) command.Add(o);
        var common = new CommonOptions(command);
        command.SetAction((result, cancellation) =>
        {
            var device = common.Initialize(result);
            var overrides = (result.GetValue(data) ?? []).Select(DataOverride.Parse).ToList();
            var options = new EvalOptions(TaskFiles.Resolve(result.GetValue(tasks)!, overrides), result.GetValue(shots),
                                          result.GetValue(limit), result.GetValue(batch), result.GetValue(seed),
                                          result.GetValue(maxLength));
            EvalReport? report = null;
            AnsiConsole.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                         new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(context =>
                {
                    var bar = context.AddTask($"{options.Tasks.Count} task(s)", maxValue: 1);
                    report = Evaluator.Run(result.GetValue(model)!, options, common.Precision(result), device, p =>
                    {
                        bar.MaxValue = Math.Max(1, p.Total);
                        bar.Value = p.Done;
                        bar.Description = $"{options.Tasks.Count} task(s): {p.Done}/{p.Total} requests";
                    }, cancellation);
                });
            Console.WriteLine(report!.ToMarkdown());
            Console.Error.WriteLine($"{report.Tasks.Sum(t => t.Requests)} requests in {report.Seconds:F1} s ({report.Forwards} forwards, " +
                                    $"batch {report.BatchSize}, max length {report.MaxLength}); tokenizer: {report.Tokenizer}");
            if (result.GetValue(output) is { } path)
            {
                AtomicFile.WriteAllText(path, report.ToJson());
                Console.Error.WriteLine($"results: {path}");
            }
            return Task.FromResult(0);
        });
        return command;
    }
}
