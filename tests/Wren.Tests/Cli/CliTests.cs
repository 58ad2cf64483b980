using Wren.Cli;
using Wren.Interop;

namespace Wren.Tests.Cli;

/// <summary>Argument arrays through the real root command.</summary>
[Collection("cli")]
public class CliTests
{
    static int Run(params string[] args) => WrenCli.RunAsync(args, new StringWriter()).GetAwaiter().GetResult();

    [Fact]
    public void Init_inspect_logits_generate_end_to_end()
    {
        string dir = Path.Combine(TestSupport.TempDir(), "model");
        string config = Path.Combine(TestSupport.RepoRoot, "configs", "flash-tiny.json");
        Assert.Equal(0, Run("init", "--config", config, "--out", dir, "--seed", "3", "--max-shard-mb", "4"));
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        Assert.Equal(0, Run("inspect", dir));
        string tokens = Path.Combine(dir, "tokens.json");
        File.WriteAllText(tokens, "[[1, 2, 3, 4, 5, 6]]");
        string full = Path.Combine(dir, "full.npy"), stepped = Path.Combine(dir, "stepped.json");
        Assert.Equal(0, Run("logits", "--model", dir, "--tokens", tokens, "--out", full, "--threads", "1"));
        Assert.Equal(0, Run("logits", "--model", dir, "--tokens", tokens, "--out", stepped, "--prefill", "2"));
        var (data, shape) = Npy.ReadFloat32(full);
        Assert.Equal([1L, 6L, 512L], shape);
        var json = System.Text.Json.JsonSerializer.Deserialize<float[][][]>(File.ReadAllText(stepped))!;
        float maxDiff = 0;
        for (int t = 0; t < 6; t++) for (int v = 0; v < 512; v++) maxDiff = Math.Max(maxDiff, Math.Abs(json[0][t][v] - data[t * 512 + v]));
        Assert.True(maxDiff < 1e-4, $"prefill+decode differs from the full forward by {maxDiff}");
        Assert.Equal(0, Run("generate", "--model", dir, "--prompt", "Hi", "--prompt", "Hello there", "--max-new-tokens", "5", "--seed", "1", "--stop", "zz"));
    }
}
