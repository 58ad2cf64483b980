using System.Diagnostics;

namespace Wren.Tests.Cli;

/// <summary>Option mistakes give one line and exit code 1; output to a file is not wrapped.</summary>
[Collection("cli")]
public class OptionErrorTests
{
    static void AssertOneLine(string error, params string[] parts)
    {
        Assert.Single(error.Trim().Split('\n'));
        foreach (var part in parts) Assert.Contains(part, error);
    }

    [Fact]
    public void A_misspelled_option_gives_one_suggestion_line()
    {
        var (code, error) = TestSupport.Cli("train", "--stepz", "5", "--data", "x", "--out", "y");
        Assert.Equal(1, code);
        AssertOneLine(error, "unknown option '--stepz'", "did you mean --steps?");
    }

    [Fact]
    public void An_option_prefix_is_not_taken_for_a_corpus_path()
    {
        string output = Path.Combine(TestSupport.TempDir(), "t.json");
        var (code, error) = TestSupport.Cli("tokenizer", "train", TestSupport.RepoRoot, "--vocab", "2048", "--out", output);
        Assert.Equal(1, code);
        AssertOneLine(error, "unknown option '--vocab'", "did you mean --vocab-size?");
    }

    [Theory]
    [InlineData("train", "--data", "x", "--out", "y", "--steps", "-5")]
    [InlineData("generate", "--model", "x", "--prompt", "A", "--max-new-tokens", "-5")]
    public void Negative_lengths_say_the_value_must_be_positive(params string[] args)
    {
        var (code, error) = TestSupport.Cli(args);
        Assert.Equal(1, code);
        AssertOneLine(error, $"{args[^2]} must be positive, got -5");
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("100000")]
    public void Threads_outside_zero_to_1024_are_refused_before_any_model_work(string threads)
    {
        string[][] commands = [["generate", "--prompt", "A"], ["logits", "--tokens", "1", "--out", "y.npy"], ["serve"]];
        foreach (var command in commands)
        {
            var (code, error) = TestSupport.Cli([.. command, "--model", "x", "--threads", threads]);
            Assert.Equal(1, code);
            AssertOneLine(error, $"--threads must be 0 (one per core) to 1024, got {threads}");
        }
    }

    [Theory]
    [InlineData("--max-new-tokens", "2147483647", "maximum context length is 4096 tokens; the prompt has 1 and max new tokens")]
    [InlineData("--max-new-tokens", "4096", "maximum context length is 4096 tokens; the prompt has 1 and max new tokens")]
    [InlineData("--stop", "", "stop strings must not be empty")]
    [InlineData("--stop-token", "256", "stop token id 256 is outside the model's vocabulary of 256")]
    [InlineData("--stop-token", "-3", "stop token id -3 is outside the model's vocabulary of 256")]
    public void Generation_past_the_context_or_with_impossible_stops_is_refused_before_it_starts(string option, string value,
                                                                                                string message)
    {
        // The fixture's config: max_position_embeddings 4096, vocab_size 256; "A" is one byte-level token.
        string model = Path.Combine(TestSupport.Case("tiny-temperature"), "model");
        var (code, error) = TestSupport.Cli("generate", "--model", model, "--prompt", "A", option, value);
        Assert.Equal(2, code);
        AssertOneLine(error, message);
    }

    [Theory]
    [InlineData("generate", "--seed", "abc", "--seed expects a non-negative integer, got 'abc'")]
    [InlineData("generate", "--max-new-tokens", "abc", "--max-new-tokens expects an integer, got 'abc'")]
    [InlineData("generate", "--temperature", "warm", "--temperature expects a number, got 'warm'")]
    [InlineData("generate", "--dtype", "float8", "--dtype must be one of 'float32', 'bfloat16', 'int8', 'q4', 'q4k', got 'float8'")]
    public void Unparsable_values_name_the_option_and_the_kind_of_value_not_a_dotnet_type(string command, string option, string value,
                                                                                         string message)
    {
        var (code, error) = TestSupport.Cli(command, "--model", "x", "--prompt", "A", option, value);
        Assert.Equal(1, code);
        AssertOneLine(error, message);
        Assert.DoesNotContain("System.", error);
    }

    [Theory]
    [InlineData("--prefix-cache")]
    [InlineData("--max-memory")]
    public void A_bad_byte_size_names_its_own_option(string option)
    {
        string model = Path.Combine(TestSupport.Case("tiny-temperature"), "model");
        var (code, error) = TestSupport.Cli("serve", "--model", model, "--port", "0", option, "lots");
        Assert.Equal(2, code);
        AssertOneLine(error, $"{option} must look like 4GB, 512MB or 1.5G, got 'lots'");
    }

    [Fact]
    public void An_output_in_a_missing_folder_names_the_users_path()
    {
        string model = Path.Combine(TestSupport.Case("tiny-temperature"), "model");
        string tokens = Path.Combine(TestSupport.Case("safetensors-duplicate-tensor"), "tokens.json");
        string output = Path.Combine(TestSupport.TempDir(), "absent", "x.npy");
        var (code, error) = TestSupport.Cli("logits", "--model", model, "--tokens", tokens, "--out", output);
        Assert.Equal(2, code);
        AssertOneLine(error, $"cannot write {output}: the folder");
        Assert.DoesNotContain("wren-tmp", error);
    }

    [Fact]
    public void A_model_file_where_a_folder_is_expected_says_so()
    {
        string file = Path.Combine(TestSupport.Case("tiny-temperature"), "model", "model.safetensors");
        var (code, error) = TestSupport.Cli("generate", "--model", file, "--prompt", "A");
        Assert.Equal(2, code);
        AssertOneLine(error, "is a file; give the model folder");
        (code, error) = TestSupport.Cli("inspect", file);
        Assert.Equal(2, code);
        AssertOneLine(error, "is a weights file; give the model folder");
        string manifest = Path.Combine(TestSupport.Case("nan-checkpoint"), "data", "manifest.json");
        (code, error) = TestSupport.Cli("train", "--data", manifest, "--out", TestSupport.TempDir(), "--steps", "1");
        Assert.Equal(2, code);
        AssertOneLine(error, "is a file; give the dataset folder");
    }

    [Fact]
    public void Output_to_a_file_is_not_wrapped()
    {
        // A long path (deep folders) printed by `tokenizer train` must stay on one line when stdout is redirected.
        string deep = Path.Combine(TestSupport.TempDir(), string.Join('/', Enumerable.Repeat("a-rather-long-folder-name", 9)));
        Directory.CreateDirectory(deep);
        File.WriteAllText(Path.Combine(deep, "corpus.txt"), string.Join("\n", Wren.Tests.Data.Corpus.Documents(50)));
        string output = Path.Combine(deep, "tokenizer.json");
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "Wren.Cli.dll"), "tokenizer", "train", deep,
                                                    "--vocab-size", "300", "--out", output])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["COLUMNS"] = "200";
        using var process = Process.Start(start)!;
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, process.StandardError.ReadToEnd());
        Assert.True(output.Length > 200);
        Assert.Contains(stdout.Split('\n'), line => line.StartsWith(output, StringComparison.Ordinal));
    }
}
