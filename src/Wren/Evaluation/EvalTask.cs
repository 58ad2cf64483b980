namespace Wren.Evaluation;

/// <summary>The kinds of requests a task makes (the harness's <c>output_type</c>).</summary>
public static class OutputTypes
{
    public const string MultipleChoice = "multiple_choice";
    public const string Loglikelihood = "loglikelihood";
    public const string LoglikelihoodRolling = "loglikelihood_rolling";

    /// <summary>The metrics each output type can report, the first ones being the harness's defaults
    /// (lm_eval/api/registry.py, DEFAULT_METRIC_REGISTRY).</summary>
    public static IReadOnlyDictionary<string, (string[] Defaults, string[] Allowed)> Metrics { get; } =
        new Dictionary<string, (string[], string[])>
        {
            [MultipleChoice] = (["acc", "acc_norm"], ["acc", "acc_norm", "acc_bytes"]),
            [Loglikelihood] = (["perplexity", "acc"], ["perplexity", "acc"]),
            [LoglikelihoodRolling] = (["word_perplexity", "byte_perplexity", "bits_per_byte"],
                                      ["word_perplexity", "byte_perplexity", "bits_per_byte"]),
        };
}

/// <summary>
/// One evaluation task as read from an lm-evaluation-harness YAML file (lm_eval/config/task.py, <c>TaskConfig</c>), with
/// its data pointed at local files.
/// </summary>
/// <param name="Name">The <c>task</c> key.</param>
/// <param name="OutputType">See <see cref="OutputTypes"/>.</param>
/// <param name="DataFiles">Split name → data files (JSONL, JSON or Parquet), from <c>dataset_kwargs.data_files</c>,
/// Wren's <c>data_files</c> key or the command line.</param>
/// <param name="FewshotSplit">Split the few-shot examples come from (null: training, else validation, else test split).</param>
/// <param name="FewshotSampler"><c>default</c> (seeded random choice) or <c>first_n</c> (the first K, as MMLU).</param>
/// <param name="FewshotMatchField">Wren's <c>fewshot_match</c>: few-shot examples share this field's value with the document
/// (one file holding all MMLU subjects gives each subject its own examples, as the harness's per-subject tasks do).</param>
/// <param name="Description">Template rendered per document and put before the few-shot examples.</param>
/// <param name="ProcessDocs">A built-in document processor (<see cref="BuiltInFunctions.DocProcessors"/>), or null.</param>
/// <param name="NumFewshot">The task file's <c>num_fewshot</c>, used when the command line gives none.</param>
/// <param name="Origin">The file the task came from (error messages, results).</param>
public sealed record EvalTask(
    string Name,
    string OutputType,
    IReadOnlyDictionary<string, IReadOnlyList<TaskPath>> DataFiles,
    string? TrainingSplit,
    string? ValidationSplit,
    string? TestSplit,
    string? FewshotSplit,
    string FewshotSampler,
    string? FewshotMatchField,
    DocField DocToText,
    DocField DocToTarget,
    DocField? DocToChoice,
    string TargetDelimiter,
    string FewshotDelimiter,
    DocField? Description,
    IReadOnlyList<string> Metrics,
    string? ProcessDocs,
    int? NumFewshot,
    string Origin)
{
    /// <summary>The split that is scored: the test split if the task has one, else validation (the harness's eval_docs).</summary>
    public string EvaluationSplit => TestSplit ?? ValidationSplit
        ?? throw new WrenException($"task {Name}: no test_split or validation_split to evaluate");

    /// <summary>The split few-shot examples come from: fewshot_split, else training, validation, test (the harness's order).</summary>
    public string? ExampleSplit => FewshotSplit ?? TrainingSplit ?? ValidationSplit ?? TestSplit;
}
