using System.Text.Json;
using System.Text.Json.Serialization;
using Parquet.Serialization;
using Wren.Evaluation;

namespace Wren.Tests.Evaluation;

/// <summary>The shipped descriptions pointed at small files written in the public datasets' layouts, and the tiny tasks.</summary>
public class ShippedTaskTests
{
    static readonly TableTokenizer Tokenizer = new();

    static DocumentPrompt FirstPrompt(string name, string file, int shots = 0)
    {
        var task = Assert.Single(TaskFiles.Resolve([name], [DataOverride.Parse($"{name}={file}")]));
        return Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: shots))[0];
    }

    [Fact]
    public void Piqa_reads_goal_solutions_and_label()
    {
        string dir = EvalFixtures.Folder(("valid.jsonl", string.Join('\n',
            JsonSerializer.Serialize(new
            {
                goal = "Open a tight jar", sol1 = "Twist the lid with a dry towel.", sol2 = "Shake the jar hard.", label = 0,
            }),
            JsonSerializer.Serialize(new
            {
                goal = "Dry a wet phone", sol1 = "Charge it at once.", sol2 = "Let it dry off for a day.", label = 1,
            }))));
        var prompt = FirstPrompt("piqa", Path.Combine(dir, "valid.jsonl"));
        const string question = "Question: Open a tight jar\nAnswer:";
        Assert.Equal([(question, " Twist the lid with a dry towel."), (question, " Shake the jar hard.")],
                     prompt.Requests);
        Assert.Equal([0L], prompt.Gold);
    }

    sealed class ArcChoices
    {
        [JsonPropertyName("text")] public List<string> Text { get; set; } = [];
        [JsonPropertyName("label")] public List<string> Label { get; set; } = [];
    }

    sealed class ArcRow
    {
        [JsonPropertyName("id")] public string Id { get; set; } = "";
        [JsonPropertyName("question")] public string Question { get; set; } = "";
        [JsonPropertyName("choices")] public ArcChoices Choices { get; set; } = new();
        [JsonPropertyName("answerKey")] public string AnswerKey { get; set; } = "";
    }

    [Fact]
    public async Task Arc_reads_nested_choices_from_parquet_as_the_hub_stores_them()
    {
        string file = Path.Combine(TestSupport.TempDir(), "test-00000-of-00001.parquet");
        var rows = new List<ArcRow>
        {
            new() { Id = "q1", Question = "Which tool measures mass?", AnswerKey = "C",
                    Choices = new() { Text = ["a ruler", "a clock", "a balance", "a compass"], Label = ["A", "B", "C", "D"] } },
            new() { Id = "q2", Question = "What melts ice?", AnswerKey = "2",
                    Choices = new() { Text = ["cold", "heat", "salt water"], Label = ["1", "2", "3"] } },
        };
        await ParquetSerializer.SerializeAsync(rows, file);
        foreach (var name in new[] { "arc_easy", "arc_challenge" })
        {
            var task = Assert.Single(TaskFiles.Resolve([name], [DataOverride.Parse($"{name}={file}")]));
            var prompts = Evaluator.Prompts(task, new EvalOptions([task]));
            Assert.Equal(4, prompts[0].Requests.Count);
            Assert.Equal(("Question: Which tool measures mass?\nAnswer:", " a balance"), prompts[0].Requests[2]);
            Assert.Equal([2L], prompts[0].Gold);
            Assert.Equal(["cold", "heat", "salt water"], prompts[1].Choices);
            Assert.Equal([1L], prompts[1].Gold);
        }
    }

    [Fact]
    public void Hellaswag_preprocesses_the_context_and_endings_as_the_harness_does()
    {
        string dir = EvalFixtures.Folder(("validation.jsonl", JsonSerializer.Serialize(new
        {
            ind = 4, activity_label = "Home and Garden", ctx_a = "[header] How to fold a shirt [title] Lay the shirt flat.",
            ctx_b = "[step] THEN", ctx = "", endings = new[] { "fold the sleeves in [substeps] neatly.", " Throw it  away. ", "x", "y" },
            source_id = "wikihow~1", split = "val", split_type = "indomain", label = "0",
        })));
        var prompt = FirstPrompt("hellaswag", Path.Combine(dir, "validation.jsonl"));
        // preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()): capitalize lowers "THEN" after "[",
        // " [title]" → ". ", brackets dropped, "  " → " ".
        Assert.Equal("Home and Garden: How to fold a shirt. Lay the shirt flat. then", prompt.Requests[0].Context);
        Assert.Equal(["fold the sleeves in neatly.", "Throw it away.", "x", "y"], prompt.Choices);
        Assert.Equal(" fold the sleeves in neatly.", prompt.Requests[0].Continuation);
        Assert.Equal([0L], prompt.Gold);
    }

    [Fact]
    public void Every_tiny_task_runs_and_reports_metrics_with_standard_errors()
    {
        using var model = EvalFixtures.Model();
        var tasks = TaskFiles.Resolve(["tiny"]);
        Assert.Equal(["tiny_arc_easy", "tiny_hellaswag", "tiny_lambada_openai", "tiny_mmlu", "tiny_openbookqa", "tiny_piqa", "tiny_text",
            "tiny_winogrande"],
                     tasks.Select(t => t.Name).Order());
        var report = Evaluator.Run(model, Tokenizer, new EvalOptions(tasks, Limit: 4, BatchSize: 4));
        foreach (var task in report.Tasks)
        {
            Assert.Equal(task.Task == "tiny_text" ? 1 : 4, task.Documents);
            Assert.All(task.Metrics, m => Assert.True(double.IsFinite(m.Value), $"{task.Task} {m.Name} = {m.Value}"));
        }
        var mmlu = report.Tasks.Single(t => t.Task == "tiny_mmlu");
        Assert.Equal(5, mmlu.NumFewshot);
        Assert.NotNull(mmlu.Metrics.Single(m => m.Name == "acc").StandardError);
        var lambada = report.Tasks.Single(t => t.Task == "tiny_lambada_openai");
        Assert.Equal(["perplexity", "acc"], lambada.Metrics.Select(m => m.Name));
        var text = report.Tasks.Single(t => t.Task == "tiny_text");
        Assert.Equal(["word_perplexity", "byte_perplexity", "bits_per_byte"], text.Metrics.Select(m => m.Name));
        Assert.Contains("| tiny_piqa | 0 | acc |", report.ToMarkdown());
        Assert.Equal(report.Tasks.Count, JsonDocument.Parse(report.ToJson()).RootElement.GetProperty("tasks").GetArrayLength());
    }

    [Fact]
    public void Mmlu_takes_the_first_dev_examples_of_the_same_subject()
    {
        var task = Assert.Single(TaskFiles.Resolve(["tiny/tiny_mmlu"]));
        var prompts = Evaluator.Prompts(task, new EvalOptions([task]));
        string context = prompts[0].Requests[0].Context;
        Assert.StartsWith("The following are multiple choice questions (with answers) about elementary mathematics.\n\n" +
                          "What is 7 + 8?\nA. 14", context);
        Assert.Equal(6, context.Split("\nAnswer:").Length - 1);   // five examples and the question
        Assert.Contains("\nAnswer: B\n\n", context);
        Assert.DoesNotContain("Tokyo", context);
        Assert.Equal(" A", prompts[0].Requests[0].Continuation);
    }

    [Fact]
    public void Template_errors_name_the_task_and_key()
    {
        string dir = EvalFixtures.Folder(("task.yaml", """
            task: broken
            output_type: multiple_choice
            validation_split: validation
            doc_to_text: "{{ question"
            doc_to_choice: ["a", "b"]
            doc_to_target: 0
            """));
        var e = Assert.Throws<WrenException>(() => EvalFixtures.Task(dir));
        Assert.Contains("task broken", e.Message);
        Assert.Contains("doc_to_text: template line 1", e.Message);
    }
}
