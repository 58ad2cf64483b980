using System.Text.Json;

namespace Wren.Tests.Cli;

/// <summary><c>wren eval</c> through the real root command.</summary>
[Collection("cli")]
public class EvalCommandTests
{
    [Fact]
    public void Eval_scores_shipped_tasks_writes_json_and_refuses_bad_input()
    {
        string dir = TestSupport.TempDir();
        string model = Path.Combine(dir, "model"), results = Path.Combine(dir, "results.json");
        Assert.Equal(0, TestSupport.Cli("init", "--config", "flash-tiny", "--out", model, "--seed", "2").Code);
        var (code, error) = TestSupport.Cli("eval", "--model", model, "--tasks", "tiny/tiny_piqa", "tiny/tiny_winogrande", "tiny/tiny_text",
                                            "--limit", "3", "--batch-size", "4", "--num-fewshot", "1", "--out", results, "--threads", "1");
        Assert.True(code == 0, error);
        var json = JsonDocument.Parse(File.ReadAllText(results)).RootElement;
        var tasks = json.GetProperty("tasks").EnumerateArray().ToList();
        Assert.Equal(["tiny_piqa", "tiny_winogrande", "tiny_text"], tasks.Select(t => t.GetProperty("task").GetString()));
        Assert.Equal([3, 3, 1], tasks.Select(t => t.GetProperty("documents").GetInt32()));
        Assert.Equal([1, 1, 0], tasks.Select(t => t.GetProperty("num_fewshot").GetInt32()));   // a whole text takes no examples

        string broken = Path.Combine(dir, "broken.yaml");
        File.WriteAllText(broken, "task: broken\noutput_type: multiple_choice\ndoc_to_text: x\ndoc_to_target: 0\n");
        (code, error) = TestSupport.Cli("eval", "--model", model, "--tasks", broken);
        Assert.Equal(2, code);
        Assert.Contains("task broken", error);
        Assert.Equal(2, TestSupport.Cli("eval", "--model", model, "--tasks", "piqa").Code);   // no data given: a clear error
        Assert.Equal(1, TestSupport.Cli("eval", "--model", model).Code);                      // --tasks missing
    }
}
