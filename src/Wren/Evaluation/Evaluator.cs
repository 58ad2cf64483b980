using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;
using Wren.Checkpoints;
using Wren.Models;
using Wren.Modules;
using Wren.Tokenization;

namespace Wren.Evaluation;

/// <summary>What to evaluate and how.</summary>
/// <param name="NumFewshot">Examples before each document (null: the task file's <c>num_fewshot</c>, else 0).</param>
/// <param name="Limit">Score only the first N documents of each task.</param>
/// <param name="Seed">Few-shot sampling seed (the harness's default <c>fewshot_random_seed</c> is 1234).</param>
/// <param name="MaxLength">Tokens per forward (default: the model's <c>max_position_embeddings</c>, else 2048).</param>
public sealed record EvalOptions(IReadOnlyList<EvalTask> Tasks, int? NumFewshot = null, int? Limit = null, int BatchSize = 1,
                                 int Seed = 1234, int? MaxLength = null);

/// <summary>Progress of a run: log-likelihood requests answered out of all requests of all tasks.</summary>
public readonly record struct EvalProgress(int Done, int Total);

/// <summary>
/// Zero- and few-shot evaluation as lm-evaluation-harness does it (lm_eval/api/task.py, <c>ConfigurableTask</c>): prompts
/// from each task's templates, log-likelihood requests (<see cref="LoglikelihoodScorer"/>), per-document results
/// (<c>process_results</c>) and aggregated metrics with standard errors (<see cref="Metrics"/>).
/// </summary>
public static partial class Evaluator
{
    /// <summary>Loads the model folder (weights, tokenizer) and evaluates it: the <c>wren eval</c> command.</summary>
    public static EvalReport Run(string modelFolder, EvalOptions options, WeightPrecision weights = WeightPrecision.Float32,
                                 torch.Device? device = null, Action<EvalProgress>? progress = null,
                                 CancellationToken cancellation = default)
    {
        using var model = HybridForCausalLM.FromPretrained(modelFolder, weights, device);
        var tokenizer = TokenizerLoader.ForModel(modelFolder, model.Config);
        return Run(model, tokenizer, options, progress, cancellation) with { Model = modelFolder };
    }

    /// <summary>Evaluates a loaded model (switching it to eval mode); the report's <c>Model</c> is empty (set it).</summary>
    public static EvalReport Run(HybridForCausalLM model, ITextTokenizer tokenizer, EvalOptions options,
                                 Action<EvalProgress>? progress = null, CancellationToken cancellation = default)
    {
        model.eval();
        if (options.Limit is < 1) throw new WrenException($"--limit must be at least 1, got {options.Limit}");
        if (options.NumFewshot is < 0) throw new WrenException($"--num-fewshot must be 0 or more, got {options.NumFewshot}");
        var scorer = new LoglikelihoodScorer(model, tokenizer, options.BatchSize, options.MaxLength);
        var plans = options.Tasks.Select(t => Plan(t, options, scorer)).ToList();
        var requests = plans.SelectMany(p => p.Requests).ToList();
        var clock = Stopwatch.StartNew();
        var results = scorer.Score(requests, done =>
        {
            cancellation.ThrowIfCancellationRequested();
            progress?.Invoke(new EvalProgress(done, requests.Count));
        });
        double seconds = clock.Elapsed.TotalSeconds;
        var tasks = new List<TaskResult>();
        int offset = 0;
        foreach (var plan in plans)
        {
            tasks.Add(plan.Aggregate(results.Skip(offset).Take(plan.Requests.Count).ToList()));
            offset += plan.Requests.Count;
        }
        string dtype = model.LmHeadWeight.dtype.ToString().ToLowerInvariant();
        return new EvalReport("", tokenizer.Name, dtype, options.BatchSize, options.Seed, options.Limit, scorer.MaxLength, seconds,
                              scorer.Forwards, tasks);
    }

    /// <summary>A task's token requests and how to turn their answers into metrics.</summary>
    sealed record TaskPlan(IReadOnlyList<TokenRequest> Requests, Func<IReadOnlyList<LoglikelihoodResult>, TaskResult> Aggregate);

    /// <summary>
    /// The prompts of a task's documents (after <see cref="EvalOptions.Limit"/>), in text: what <see cref="Run"/> scores.
    /// Few-shot examples are drawn with <see cref="EvalOptions.Seed"/>.
    /// </summary>
    public static IReadOnlyList<DocumentPrompt> Prompts(EvalTask task, EvalOptions options)
    {
        string split = task.EvaluationSplit;
        var all = Documents(task, split);
        var docs = options.Limit is { } limit ? all.Take(limit).ToList() : all;
        if (docs.Count == 0) throw new WrenException($"task {task.Name}: split '{split}' has no documents");
        int shots = Shots(task, options);
        var prompt = new PromptBuilder(task, shots, options.Seed, shots > 0 ? ExampleDocuments(task, split, all) : []);
        return docs.Select((doc, d) => task.OutputType == OutputTypes.LoglikelihoodRolling
            ? new DocumentPrompt([], [], [], prompt.TargetText(doc))
            : prompt.Requests(doc, d)).ToList();
    }

    /// <summary>Examples per document; none for loglikelihood_rolling, whose request is the whole text (the harness builds a
    /// few-shot context for it and never uses it).</summary>
    static int Shots(EvalTask task, EvalOptions options) =>
        task.OutputType == OutputTypes.LoglikelihoodRolling ? 0 : options.NumFewshot ?? task.NumFewshot ?? 0;

    static TaskPlan Plan(EvalTask task, EvalOptions options, LoglikelihoodScorer scorer)
    {
        var perDoc = Prompts(task, options);
        int shots = Shots(task, options);
        var requests = new List<TokenRequest>();
        var requestCounts = new List<int>();
        foreach (var doc in perDoc)
        {
            var tokens = doc.Text is { } text ? scorer.RollingWindows(text)
                : doc.Requests.Select(r => scorer.EncodePair(r.Context, r.Continuation)).ToList();
            requests.AddRange(tokens);
            requestCounts.Add(tokens.Count);
        }
        return new TaskPlan(requests, results =>
        {
            var perDocResults = new List<IReadOnlyList<LoglikelihoodResult>>();
            int at = 0;
            foreach (int count in requestCounts)
            {
                perDocResults.Add(results.Skip(at).Take(count).ToList());
                at += count;
            }
            var metrics = task.OutputType switch
            {
                OutputTypes.MultipleChoice => MultipleChoiceMetrics(task, perDoc, perDocResults),
                OutputTypes.Loglikelihood => LoglikelihoodMetrics(task, perDocResults),
                _ => RollingMetrics(task, perDoc, perDocResults),
            };
            return new TaskResult(task.Name, task.OutputType, shots, perDoc.Count, requests.Count, metrics, task.Origin);
        });
    }

    /// <summary>A split's documents, through the task's built-in document processor if it names one.</summary>
    static List<Dictionary<string, object?>> Documents(EvalTask task, string split)
    {
        if (!task.DataFiles.TryGetValue(split, out var files))
            throw new WrenException($"task {task.Name}: no data for split '{split}' (from {task.Origin}); give --data {task.Name}=FILE " +
                                    $"or dataset_kwargs: {{data_files: {{{split}: FILE}}}} in the task file" +
                                    (task.DataFiles.Count > 0 ? $" (splits given: {string.Join(", ", task.DataFiles.Keys)})" : ""));
        var docs = new List<Dictionary<string, object?>>();
        foreach (var file in files)
        {
            using var stream = file.Open();
            docs.AddRange(TaskDocuments.Read(stream, file.ToString()));
        }
        if (task.ProcessDocs is { } name)
        {
            var process = BuiltInFunctions.DocProcessors[name];
            docs = docs.Select(process).ToList();
        }
        return docs;
    }

    /// <summary>Few-shot candidates: the example split's documents (<paramref name="evaluated"/> itself when it is the evaluated
    /// split; a document is then never its own example).</summary>
    static List<Dictionary<string, object?>> ExampleDocuments(EvalTask task, string split, List<Dictionary<string, object?>> evaluated)
    {
        string examples = task.ExampleSplit ?? throw new WrenException($"task {task.Name}: few-shot needs a split to draw examples from");
        return examples == split ? evaluated : Documents(task, examples);
    }

    static IReadOnlyList<MetricValue> MultipleChoiceMetrics(EvalTask task, IReadOnlyList<DocumentPrompt> docs,
                                                            List<IReadOnlyList<LoglikelihoodResult>> results)
    {
        var values = task.Metrics.ToDictionary(m => m, _ => new List<double>());
        for (int d = 0; d < docs.Count; d++)
        {
            var lls = results[d].Select(r => r.LogLikelihood).ToArray();
            var choices = docs[d].Choices;
            // lm_eval/api/task.py process_results: acc_norm divides by len(choice) (characters), acc_bytes by UTF-8 bytes.
            int pred = Metrics.ArgMax(lls);
            int predNorm = Metrics.ArgMax(lls.Select((ll, i) => ll / choices[i].EnumerateRunes().Count()).ToArray());
            int predBytes = Metrics.ArgMax(lls.Select((ll, i) => ll / Encoding.UTF8.GetByteCount(choices[i])).ToArray());
            var gold = docs[d].Gold;
            foreach (var (metric, list) in values)
                list.Add(gold.Contains(metric switch { "acc" => pred, "acc_norm" => predNorm, _ => predBytes }) ? 1.0 : 0.0);
        }
        return task.Metrics.Select(m => new MetricValue(m, Metrics.Mean(values[m]), Metrics.MeanStandardError(values[m]), true)).ToList();
    }

    static IReadOnlyList<MetricValue> LoglikelihoodMetrics(EvalTask task, List<IReadOnlyList<LoglikelihoodResult>> results)
    {
        var lls = results.Select(r => r[0].LogLikelihood).ToList();
        var greedy = results.Select(r => r[0].IsGreedy ? 1.0 : 0.0).ToList();
        return task.Metrics.Select(m => m == "perplexity"
            ? new MetricValue(m, Metrics.Perplexity(lls), Metrics.BootstrapStandardError(Metrics.Perplexity, lls), false)
            : new MetricValue(m, Metrics.Mean(greedy), Metrics.MeanStandardError(greedy), true)).ToList();
    }

    static IReadOnlyList<MetricValue> RollingMetrics(EvalTask task, IReadOnlyList<DocumentPrompt> docs,
                                                     List<IReadOnlyList<LoglikelihoodResult>> results)
    {
        // lm_eval/api/task.py count_words: len(re.split(r"\s+", doc)); count_bytes: len(doc.encode("utf-8")).
        var lls = results.Select(r => r.Sum(w => w.LogLikelihood)).ToList();
        var words = docs.Select((d, i) => (lls[i], (double)Whitespace().Split(d.Text!).Length)).ToList();
        var bytes = docs.Select((d, i) => (lls[i], (double)Encoding.UTF8.GetByteCount(d.Text!))).ToList();
        return task.Metrics.Select(m => m switch
        {
            "word_perplexity" => new MetricValue(m, Metrics.WeightedPerplexity(words), null, false),
            "byte_perplexity" => new MetricValue(m, Metrics.WeightedPerplexity(bytes), null, false),
            _ => new MetricValue(m, Metrics.BitsPerByte(bytes), null, false),
        }).ToList();
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    /// <summary>
    /// Builds prompts as the harness does (<c>fewshot_context</c>, <c>build_qa_turn</c>, <c>construct_requests</c>):
    /// description, then per example <c>text + target_delimiter + answer + fewshot_delimiter</c>, then the document's text;
    /// each choice is scored as <c>target_delimiter + choice</c>. When <c>doc_to_text</c> gives an index (Winogrande),
    /// every choice is a context and the target is the scored continuation.
    /// </summary>
    sealed class PromptBuilder(EvalTask task, int shots, int seed, List<Dictionary<string, object?>> examples)
    {
        string Where(string key) => $"task {task.Name}: {key}";

        public DocumentPrompt Requests(Dictionary<string, object?> doc, int index)
        {
            string prefix = Description(doc) + string.Concat(Examples(doc, index).Select(Example));
            var text = Text(doc);
            if (task.OutputType == OutputTypes.Loglikelihood)
                return new DocumentPrompt([(prefix + AsString(text, "doc_to_text"), TargetText(doc))], [], [], null);
            var choices = Choices(doc);
            if (text is long gold)   // multiple inputs: one context per choice, the target is the continuation
            {
                string continuation = task.TargetDelimiter + TargetText(doc);
                return new DocumentPrompt(choices.Select(c => (prefix + c, continuation)).ToList(), choices, [gold], null);
            }
            string context = prefix + AsString(text, "doc_to_text");
            var golds = Target(doc) switch
            {
                long i => [i],
                string s => [(long)choices.IndexOf(s)],
                List<object?> list => list.Select(g => g is string s ? choices.IndexOf(s) : Index(g)).ToList(),
                var other => throw new WrenException($"{Where("doc_to_target")}: expected an index or a choice, got {other ?? "nothing"}"),
            };
            return new DocumentPrompt(choices.Select(c => (context, task.TargetDelimiter + c)).ToList(), choices, golds, null);
        }

        static long Index(object? value) => Convert.ToInt64(value, CultureInfo.InvariantCulture);

        string Description(Dictionary<string, object?> doc) => task.Description is null ? ""
            : Convert.ToString(task.Description.Raw(doc, Where("description")).Value, CultureInfo.InvariantCulture) ?? "";

        /// <summary>One example: text + target delimiter + answer + few-shot delimiter (a multiple-input example's text is
        /// its gold choice).</summary>
        string Example(Dictionary<string, object?> doc)
        {
            var text = Text(doc);
            var target = Target(doc);
            List<string>? choices = task.DocToChoice is null ? null : Choices(doc);
            string question;
            if (text is long index && choices is not null)
            {
                question = choices[(int)index];
                choices = null;
            }
            else question = AsString(text, "doc_to_text");
            if (target is null || target is "") return question;
            string answer = target switch
            {
                long i when choices is not null => choices[(int)i],
                List<object?> list when list.Count > 0 =>
                    list[0] is long i && choices is not null ? choices[(int)i] : AsString(list[0], "doc_to_target"),
                _ => AsString(target, "doc_to_target"),
            };
            return question + task.TargetDelimiter + answer + task.FewshotDelimiter;
        }

        /// <summary>Seeded few-shot examples for document <paramref name="index"/> (independent of --limit and of the other
        /// documents): <c>first_n</c> takes the first K, the default sampler K at random without replacement; the
        /// document itself is never its own example.</summary>
        IEnumerable<Dictionary<string, object?>> Examples(Dictionary<string, object?> doc, int index)
        {
            if (shots == 0) return [];
            var pool = examples.Where(e => !ReferenceEquals(e, doc)).ToList();
            if (task.FewshotMatchField is { } field)
                pool = pool.Where(e => Equals(e.GetValueOrDefault(field), doc.GetValueOrDefault(field))).ToList();
            if (pool.Count < shots)
                throw new WrenException($"task {task.Name}: {shots}-shot needs {shots} examples but split '{task.ExampleSplit}' " +
                                        $"offers {pool.Count}" +
                                        (task.FewshotMatchField is { } f ? $" with the same {f}" : ""));
            if (task.FewshotSampler == "first_n") return pool.Take(shots);
            var random = new Random(HashCode.Combine(seed, index) & int.MaxValue);
            var order = Enumerable.Range(0, pool.Count).ToArray();
            for (int i = 0; i < shots; i++)   // partial Fisher–Yates: K distinct picks in draw order
            {
                int j = i + random.Next(order.Length - i);
                (order[i], order[j]) = (order[j], order[i]);
            }
            return order.Take(shots).Select(i => pool[i]);
        }

        object? Text(Dictionary<string, object?> doc)
        {
            var (value, rendered) = task.DocToText.Raw(doc, Where("doc_to_text"));
            bool index = rendered && value is string s && task.DocToChoice is not null && DocField.IsIndex(s);
            return index ? Index(value) : value;
        }

        object? Target(Dictionary<string, object?> doc)
        {
            var (value, rendered) = task.DocToTarget.Raw(doc, Where("doc_to_target"));
            if (!rendered || value is not string s) return value;
            if (task.DocToChoice is not null && DocField.IsIndex(s)) return long.Parse(s, CultureInfo.InvariantCulture);
            if (s.Length >= 2 && s[0] == '[' && s[^1] == ']')
                try { return PythonLiteral.Parse(s); }
                catch (FormatException) { return s; }
            return s;
        }

        public string TargetText(Dictionary<string, object?> doc) => AsString(Target(doc), "doc_to_target");

        List<string> Choices(Dictionary<string, object?> doc)
        {
            var (value, rendered) = task.DocToChoice!.Raw(doc, Where("doc_to_choice"));
            if (rendered && value is string s)
                try { value = PythonLiteral.Parse(s); }
                catch (FormatException e)
                { throw new WrenException($"{Where("doc_to_choice")}: rendered '{s}', not a list ({e.Message})", e); }
            return value switch
            {
                List<object?> list => list.Select(Text).ToList(),
                Dictionary<string, object?> dict => dict.Values.Select(Text).ToList(),
                _ => throw new WrenException($"{Where("doc_to_choice")}: expected a list of choices, got {value ?? "nothing"}"),
            };
        }

        static string Text(object? value) => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "";

        string AsString(object? value, string key) => value switch
        {
            string s => s,
            long or double or bool => Convert.ToString(value, CultureInfo.InvariantCulture)!,
            _ => throw new WrenException($"{Where(key)}: expected text, got {(value is null ? "nothing" : value.GetType().Name)}"),
        };
    }
}
