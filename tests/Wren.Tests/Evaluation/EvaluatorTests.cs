using System.Text.Json;
using Wren.Evaluation;

namespace Wren.Tests.Evaluation;

/// <summary>Prompts, few-shot sampling and metrics of whole tasks, against values worked out separately.</summary>
public class EvaluatorTests
{
    static readonly TableTokenizer Tokenizer = new();

    const string Task = """
        task: fields
        output_type: multiple_choice
        validation_split: validation
        doc_to_text: q
        doc_to_choice: choices
        doc_to_target: label
        metric_list:
          - metric: acc
          - metric: acc_norm
          - metric: acc_bytes
        dataset_kwargs:
          data_files:
            validation: data.jsonl
        """;

    static string Line(string q, string[] choices, int label) => JsonSerializer.Serialize(new { q, choices, label });

    [Fact]
    public void Acc_and_acc_norm_follow_the_log_likelihoods_and_choice_lengths()
    {
        using var model = EvalFixtures.Model(seed: 11);
        var scorer = new LoglikelihoodScorer(model, Tokenizer);
        // Find a short and a long choice whose raw and length-normalized rankings disagree (plain loop, not the evaluator).
        string context = "Pick one:";
        string[] candidates = ["a", "b", "zz", "no", "yes", "the end", "qqqqqqqqqq", "a long answer here", "xy xy xy xy xy", "ok"];
        var lls = candidates.ToDictionary(c => c, c =>
            EvalFixtures.PlainLoop(model, Tokenizer.Encode(context).ToArray(), Tokenizer.Encode(" " + c).ToArray()).LogLikelihood);
        var pair = (from s in candidates
                    from l in candidates
                    where l.Length > s.Length && lls[s] > lls[l] && lls[l] / l.Length > lls[s] / s.Length
                    select (Short: s, Long: l)).First();
        string dir = EvalFixtures.Folder(("task.yaml", Task), ("data.jsonl", string.Join('\n',
            Line(context, [pair.Short, pair.Long], 0), Line(context, [pair.Short, pair.Long], 1),
            Line(context, [pair.Long, pair.Short], 0))));
        var task = EvalFixtures.Task(dir);
        var report = Evaluator.Run(model, Tokenizer, new EvalOptions([task]));
        var metrics = Assert.Single(report.Tasks).Metrics.ToDictionary(m => m.Name);
        // acc picks the short choice: right in document 1 only; acc_norm picks the long one: right in documents 2 and 3.
        Assert.Equal(1.0 / 3, metrics["acc"].Value, 12);
        Assert.Equal(2.0 / 3, metrics["acc_norm"].Value, 12);
        Assert.Equal(2.0 / 3, metrics["acc_bytes"].Value, 12);   // ASCII: bytes = characters
        // mean_stderr: sample standard deviation (ddof 1) over √n; for values {1, 0, 0}: √(1/3) / √3 = 1/3.
        Assert.Equal(1.0 / 3, metrics["acc"].StandardError!.Value, 12);
        Assert.Equal(6, report.Tasks[0].Requests);
    }

    [Fact]
    public void Few_shot_examples_are_seeded_never_the_document_itself_and_joined_as_the_harness_joins_them()
    {
        var lines = Enumerable.Range(0, 12).Select(i => Line($"question {i}", ["x", "y"], i % 2));
        string dir = EvalFixtures.Folder(("task.yaml", Task + "\nfewshot_split: validation\ndescription: \"Answer well.\\n\\n\"\n"),
                                         ("data.jsonl", string.Join('\n', lines)));
        var task = EvalFixtures.Task(dir);
        var first = Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: 3, Seed: 5));
        var again = Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: 3, Seed: 5));
        var other = Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: 3, Seed: 6));
        var limited = Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: 3, Seed: 5, Limit: 4));
        Assert.Equal(first.Select(p => p.Requests[0].Context), again.Select(p => p.Requests[0].Context));
        Assert.Equal(first.Take(4).Select(p => p.Requests[0].Context), limited.Select(p => p.Requests[0].Context));
        Assert.NotEqual(first.Select(p => p.Requests[0].Context), other.Select(p => p.Requests[0].Context));
        for (int d = 0; d < first.Count; d++)
        {
            string context = first[d].Requests[0].Context;
            Assert.StartsWith("Answer well.\n\n", context);
            Assert.EndsWith($"\n\nquestion {d}", context);
            var examples = context["Answer well.\n\n".Length..^$"question {d}".Length].Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(3, examples.Length);
            Assert.Equal(3, examples.Distinct().Count());
            foreach (var example in examples)
            {
                int k = int.Parse(example["question ".Length..example.IndexOf(' ', "question ".Length)]);
                Assert.NotEqual(d, k);
                Assert.Equal($"question {k} {(k % 2 == 0 ? "x" : "y")}", example);   // text + " " + gold choice
            }
        }
    }

    [Fact]
    public void Winogrande_scores_the_rest_of_the_sentence_after_each_filled_in_option()
    {
        var task = Assert.Single(TaskFiles.Resolve(["tiny/tiny_winogrande"]));
        var prompts = Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: 1, Limit: 2));
        // "The trophy did not fit in the suitcase because the _ was too big." answer "1".
        var first = prompts[0];
        Assert.EndsWith("because the trophy", first.Requests[0].Context);
        Assert.EndsWith("because the suitcase", first.Requests[1].Context);
        Assert.All(first.Requests, r => Assert.Equal(" was too big.", r.Continuation));
        Assert.Equal([0L], first.Gold);
        // A few-shot example is its gold context, the target delimiter and its continuation: the sentence with the blank
        // filled by the right option.
        using var stream = new TaskPath("tiny/winogrande.jsonl", true).Open();
        var filled = TaskDocuments.Read(stream, "winogrande.jsonl")
            .Select(d => ((string)d["sentence"]!).Replace("_", (string)d[(string)d["answer"]! == "1" ? "option1" : "option2"]!)).ToList();
        string example = first.Requests[0].Context[..first.Requests[0].Context.IndexOf("\n\n", StringComparison.Ordinal)];
        Assert.Contains(example, filled.Skip(1));
    }
}
