using System.Text.Json.Nodes;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Cli;
using Wren.Interop;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;

namespace Wren.Tests.Cli;

/// <summary>Argument arrays through the real root command.</summary>
[Collection("cli")]
public class CliTests
{
    internal static int Run(params string[] args) => WrenCli.RunAsync(args, new StringWriter()).GetAwaiter().GetResult();

    /// <summary>Runs the CLI with standard output (plain and Spectre's) captured: exit code and the printed text.</summary>
    internal static (int Code, string Output) RunCaptured(params string[] args)
    {
        var output = new StringWriter();
        var (plain, fancy) = (Console.Out, AnsiConsole.Console);
        Console.SetOut(output);
        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Out = new AnsiConsoleOutput(output),
        });
        AnsiConsole.Console.Profile.Width = 240;
        try { return (Run(args), output.ToString()); }
        finally { Console.SetOut(plain); AnsiConsole.Console = fancy; }
    }

    /// <summary>Greedy continuation by full forwards over the whole sequence (no cache): the slow reference.</summary>
    static string GreedyReference(HybridForCausalLM model, ITextTokenizer tokenizer, string prompt, int tokens)
    {
        var ids = tokenizer.Encode(prompt).Select(i => (long)i).ToList();
        using var _ = no_grad();
        for (int n = 0; n < tokens; n++)
        {
            using var scope = NewDisposeScope();
            var logits = model.forward(new LMInput(tensor(ids.ToArray(), [1, ids.Count]))).Logits;
            ids.Add(logits[0, -1].argmax().item<long>());
        }
        return tokenizer.Decode(ids.Select(i => (int)i));
    }

    [Fact]
    public void Init_inspect_logits_generate_end_to_end()
    {
        string dir = Path.Combine(TestSupport.TempDir(), "model");
        string config = Path.Combine(TestSupport.RepoRoot, "configs", "flash-tiny.json");
        Assert.Equal(0, Run("init", "--config", config, "--out", dir, "--seed", "3", "--max-shard-mb", "4"));
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        var (inspected, summary) = RunCaptured("inspect", dir);
        Assert.Equal(0, inspected);
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model.safetensors.index.json")))!;
        long parameters = index["metadata"]!["total_size"]!.GetValue<long>() / sizeof(float);   // fp32 weights as written
        Assert.Contains($"layers (24): {string.Join(" ", HybridConfig.Load(config).LayerTypes)}", summary);
        Assert.Matches($@"total\s*│\s*24\s*│\s*{parameters:N0}\s*│", summary);
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
        Assert.Equal(0, Run("generate", "--model", dir, "--prompt", "Hi", "--prompt", "Hello there", "--max-new-tokens", "5", "--seed",
                            "1", "--stop", "zz"));

        // Greedy: the streamed text (one prompt) and each row of a left-padded batch equal the cache-free reference.
        // A 128-id vocabulary keeps every byte-tokenizer id ASCII, so all generated text is printable as it comes.
        string ascii = Path.Combine(TestSupport.TempDir(), "ascii");
        var asciiConfig = JsonNode.Parse(File.ReadAllText(config))!;
        asciiConfig["vocab_size"] = 128;
        string asciiConfigPath = Path.Combine(TestSupport.TempDir(), "config.json");
        File.WriteAllText(asciiConfigPath, asciiConfig.ToJsonString());
        Assert.Equal(0, Run("init", "--config", asciiConfigPath, "--out", ascii, "--seed", "5"));
        dir = ascii;
        using var model = HybridForCausalLM.FromPretrained(dir);
        var tokenizer = TokenizerLoader.ForModel(dir, model.Config);
        string[] prompts = ["Hi", "Hello there"];
        var expected = prompts.Select(p => GreedyReference(model, tokenizer, p, 5)).ToArray();
        var (single, streamed) = RunCaptured("generate", "--model", dir, "--prompt", "Hi", "--max-new-tokens", "5", "--temperature", "0");
        Assert.Equal(0, single);
        Assert.StartsWith(expected[0] + "\n", streamed);
        var (batch, rows) = RunCaptured("generate", "--model", dir, "--prompt", prompts[0], "--prompt", prompts[1], "--max-new-tokens", "5",
                                        "--temperature", "0");
        Assert.Equal(0, batch);
        Assert.Contains($"[0] {expected[0]}\n", rows);
        Assert.Contains($"[1] {expected[1]}\n", rows);
    }
}

/// <summary>A cancelled long command says the exact command that resumes it.</summary>
public class ResumableTests
{
    [Fact]
    public void Cancellation_names_the_command_that_resumes()
    {
        var error = Assert.Throws<Wren.Cli.Commands.ResumableCancellation>(() =>
            Wren.Cli.Commands.Resumable.Run<int>(
                Wren.Cli.Commands.Resumable.Command(["train", "--data", "my data", "--out", "runs/a", "--resume"]),
                () => throw new OperationCanceledException()));
        Assert.Equal("cancelled; to resume, run: wren train --data 'my data' --out runs/a --resume", error.Message);
        var typed = Wren.Cli.WrenCli.Build().Parse(["search", "run", "--data", "d", "--study", "it's"]);
        Assert.Equal("wren search run --data d --study 'it'\\''s'", Wren.Cli.Commands.Resumable.SameCommand(typed));
    }
}
