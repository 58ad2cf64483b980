using Wren.Inference;

namespace Wren.Tests.Inference;

[Collection("cli")]
public class AccuracyCommandTests
{
    [Fact]
    public void Accuracy_command_compares_each_precision_and_writes_json()
    {
        string json = Path.Combine(TestSupport.TempDir(), "accuracy.json");
        var (code, error) = TestSupport.Cli("accuracy", "--config", "flash-tiny", "--greedy-tokens", "8", "--json", json);
        Assert.True(code == 0, error);
        var report = System.Text.Json.JsonSerializer.Deserialize<PrecisionAccuracyReport>(File.ReadAllText(json))!;
        Assert.Equal(["bfloat16", "int8", "q4", "q4k"], report.Rows.Select(r => r.Precision));
        Assert.All(report.Rows, r => Assert.Equal(8, r.GreedyTokens));
        Assert.Equal(2, TestSupport.Cli("accuracy", "--config", "flash-tiny", "--model", "x").Code);
    }
}
