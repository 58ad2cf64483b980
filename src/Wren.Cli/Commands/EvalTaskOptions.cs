using System.CommandLine;
using Wren.Evaluation;

namespace Wren.Cli.Commands;

/// <summary>Accuracy next to validation loss in the design-loop commands (off unless <c>--eval-tasks</c> is given).</summary>
internal sealed class EvalTaskOptions
{
    readonly Option<string[]> tasks = new("--eval-tasks")
    {
        Description = "also score these tasks (as wren eval --tasks; off by default: it costs time)", AllowMultipleArgumentsPerToken = true,
    };
    readonly Option<string[]> data = new("--eval-data") { Description = "data for an evaluation task: TASK=FILE or TASK:SPLIT=FILE" };
    readonly Option<int?> limit = new("--eval-limit") { Description = "evaluation documents per task" };
    readonly Option<int?> shots = new("--eval-fewshot") { Description = "few-shot examples (default: each task file's)" };

    public EvalTaskOptions(Command command)
    {
        foreach (var o in new Option[] { tasks, data, limit, shots }) command.Add(o);
    }

    /// <summary>The evaluation to run, or null when no tasks are given.</summary>
    public EvalOptions? Read(ParseResult result) => result.GetValue(tasks) is { Length: > 0 } names
        ? new EvalOptions(TaskFiles.Resolve(names, (result.GetValue(data) ?? []).Select(DataOverride.Parse).ToList()),
                          result.GetValue(shots), result.GetValue(limit), BatchSize: 4)
        : null;
}
