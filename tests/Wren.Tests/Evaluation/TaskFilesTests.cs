using Wren.Evaluation;

namespace Wren.Tests.Evaluation;

/// <summary>Reading harness task files: keys, include, data files, and a clear one-line error for each malformed input.</summary>
public class TaskFilesTests
{
    const string Valid = """
        task: mini
        output_type: multiple_choice
        validation_split: validation
        doc_to_text: goal
        doc_to_choice: choices
        doc_to_target: label
        dataset_kwargs:
          data_files:
            validation: data.jsonl
        """;

    static string Error(string yaml, string data = """{"goal": "g", "choices": ["a", "b"], "label": 0}""")
    {
        string dir = EvalFixtures.Folder(("task.yaml", yaml), ("data.jsonl", data));
        var e = Assert.Throws<WrenException>(() =>
        {
            var task = EvalFixtures.Task(dir);
            Evaluator.Prompts(task, new EvalOptions([task]));
        });
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void Reads_keys_include_and_data_files_relative_to_the_task_file()
    {
        string dir = EvalFixtures.Folder(("_base.yaml", Valid.Replace("task: mini", "task: base")),
            ("task.yaml", "include: _base.yaml\ntask: mini\ntarget_delimiter: \"\"\nfewshot_delimiter: \"\\n\"\nnum_fewshot: 2\n"),
            ("data.jsonl", """{"goal": "g", "choices": ["a", "b"], "label": 1}""" + "\n\n"));
        var task = EvalFixtures.Task(dir);
        Assert.Equal("mini", task.Name);
        Assert.Equal("", task.TargetDelimiter);
        Assert.Equal("\n", task.FewshotDelimiter);
        Assert.Equal(2, task.NumFewshot);
        Assert.Equal(["acc", "acc_norm"], task.Metrics);   // the harness's defaults for multiple_choice
        Assert.Equal(Path.Combine(dir, "data.jsonl"), task.DataFiles["validation"][0].Path);
        var prompt = Assert.Single(Evaluator.Prompts(task, new EvalOptions([task], NumFewshot: 0)));
        Assert.Equal([("g", "a"), ("g", "b")], prompt.Requests);
        Assert.Equal([1L], prompt.Gold);
    }

    [Fact]
    public void Malformed_task_files_give_clear_errors()
    {
        Assert.Contains("no 'task' name", Error(Valid.Replace("task: mini\n", "")));
        Assert.Contains("invalid YAML at line", Error(Valid + "\n  bad: [unclosed"));
        Assert.Contains("output_type 'generate_until' is not supported", Error(Valid.Replace("multiple_choice", "generate_until")));
        Assert.Contains("multiple_choice needs doc_to_choice", Error(Valid.Replace("doc_to_choice: choices\n", "")));
        Assert.Contains("metric 'bleu' is not available", Error(Valid + "\nmetric_list:\n  - metric: bleu\n"));
        Assert.Contains("include: ", Error("include: missing.yaml\n" + Valid));
        var function = Error(Valid + "\nprocess_docs: !function utils.process_docs\n");
        Assert.Contains("task mini", function);
        Assert.Contains("process_docs: !function utils.process_docs is Python code", function);
        Assert.Contains("hellaswag.process_docs", function);
        Assert.Contains("doc_to_text: !function utils.make_text is Python code", Error(Valid.Replace("doc_to_text: goal",
            "doc_to_text: !function utils.make_text")));
        Assert.Contains("no data for split 'test'", Error(Valid + "\ntest_split: test\n"));
        Assert.Contains("data.jsonl:2: invalid JSON", Error(Valid, "{\"goal\": \"g\", \"choices\": [\"a\"], \"label\": 0}\n{oops"));
        Assert.Contains("expected a list of choices", Error(Valid, """{"goal": "g", "choices": 3, "label": 0}"""));
        Assert.Contains("key 'use_prompt' is not supported", Error(Valid + "\nuse_prompt: promptsource:x\n"));
        Assert.Contains("fewshot_config.samples is not supported", Error(Valid + "\nfewshot_config:\n  samples: []\n"));
        Assert.Contains("expected TASK=FILE", Assert.Throws<WrenException>(() => DataOverride.Parse("piqa")).Message);
        Assert.Contains("not a task file, a folder, or a shipped task", Assert.Throws<WrenException>(() =>
            TaskFiles.Resolve(["nonesuch"])).Message);
    }

    [Fact]
    public void Data_given_on_the_command_line_replaces_the_evaluated_split()
    {
        string dir = EvalFixtures.Folder(("other.jsonl",
            """{"sentence": "I fed the _ my lunch.", "option1": "dog", "option2": "stone", "answer": "1"}"""));
        var task = Assert.Single(TaskFiles.Resolve(["winogrande"], [DataOverride.Parse($"winogrande={Path.Combine(dir, "other.jsonl")}")]));
        var prompt = Assert.Single(Evaluator.Prompts(task, new EvalOptions([task])));
        Assert.Equal([("I fed the dog", " my lunch."), ("I fed the stone", " my lunch.")], prompt.Requests);
        Assert.Equal([0L], prompt.Gold);
        Assert.Contains("--data nope=", Assert.Throws<WrenException>(() => TaskFiles.Resolve(["winogrande"],
            [DataOverride.Parse("nope=x.jsonl")])).Message);
    }

    [Fact]
    public void Python_literals_read_as_the_harness_reads_rendered_lists()
    {
        Assert.Equal(new List<object?> { "it's", "b\n", 3L, null }, PythonLiteral.Parse("[\"it's\", 'b\\n', 3, None]"));
        Assert.Equal(new List<object?> { "x", "y" }, PythonLiteral.Parse("""["x", "y"]"""));
        Assert.Throws<FormatException>(() => PythonLiteral.Parse("[1, 2"));
    }
}
