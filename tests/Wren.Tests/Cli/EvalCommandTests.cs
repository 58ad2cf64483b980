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
        var (code, error) = TestSupport.Cli("eval", "--model", model, "--tasks", "tiny/tiny_piqa", "tiny/tiny_winogrande", "--limit", "3",
                                            "--batch-size", "4", "--num-fewshot", "1", "--out", results, "--threads", "1");
        Assert.True(code == 0, error);
        var json = JsonDocument.Parse(File.ReadAllText(results)).RootElement;
        Assert.Equal(["tiny_piqa", "tiny_winogrande"], json.GetProperty("tasks").EnumerateArray().Select(t =>
            t.GetProperty("task").GetString()));
        Assert.All(json.GetProperty("tasks").EnumerateArray(), t => Assert.Equal(3, t.GetProperty("documents").GetInt32()));

        string broken = Path.Combine(dir, "broken.yaml");
        File.WriteAllText(broken, "task: broken\noutput_type: multiple_choice\ndoc_to_text: x\ndoc_to_target: 0\n");
        (code, error) = TestSupport.Cli("eval", "--model", model, "--tasks", broken);
        Assert.Equal(2, code);
        Assert.Contains("task broken", error);
        Assert.Equal(2, TestSupport.Cli("eval", "--model", model, "--tasks", "piqa").Code);   // no data given: a clear error
        Assert.Equal(1, TestSupport.Cli("eval", "--model", model).Code);                      // --tasks missing
    }
}
