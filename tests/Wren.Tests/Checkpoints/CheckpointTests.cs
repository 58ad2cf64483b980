using System.Text;
using System.Text.Json.Nodes;
using TorchSharp;
using Wren.Checkpoints;
using Wren.Inference;
using Wren.Models;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Checkpoints;

public class CheckpointTests
{
    static HybridConfig FlashSmall => Config("deltanet", "f", "m2", "f", "a", "gdn") with { NumMemoryTokens = 4 };

    [Theory]
    [InlineData(ScalarType.Float32, 0)]
    [InlineData(ScalarType.Float16, 0)]
    [InlineData(ScalarType.BFloat16, 0)]
    [InlineData(ScalarType.Float32, 60_000)]
    [InlineData(ScalarType.BFloat16, 30_000)]
    public void Write_then_read_round_trips(ScalarType dtype, long maxShardBytes)
    {
        using var scope = NewDisposeScope();
        string dir = TempDir();
        using var model = RandomModel(FlashSmall, seed: 2);
        model.SavePretrained(dir, dtype, maxShardBytes);
        Assert.Equal(maxShardBytes > 0, File.Exists(Path.Combine(dir, CheckpointFiles.IndexFile)));
        if (maxShardBytes > 0) Assert.True(Directory.GetFiles(dir, "model-*-of-*.safetensors").Length > 1);
        using var loaded = HybridForCausalLM.FromPretrained(dir);
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in loaded.named_parameters())
        {
            var expected = original[name].to(dtype).to(ScalarType.Float32);   // exactly what the file holds
            Assert.True(torch.equal(p, expected).all().item<bool>(), $"{name} differs after {dtype} round trip");
        }
        using var reloaded = HybridForCausalLM.FromPretrained(dir, ScalarType.BFloat16);
        Assert.All(reloaded.named_parameters(), p => Assert.True(p.parameter.dtype is ScalarType.BFloat16 or ScalarType.Float32));
    }

    [Fact]
    public void Raw_safetensors_round_trip_keeps_dtype_shape_metadata_and_bytes()
    {
        using var scope = NewDisposeScope();
        string path = Path.Combine(TempDir(), "t.safetensors");
        var tensors = new (string, Tensor)[]
        {
            ("a", randn([3, 5])), ("b", randn([7]).to(ScalarType.Float16)), ("c", randn([2, 2, 2]).to(ScalarType.BFloat16)),
            ("d", arange(6L).reshape(2, 3)), ("empty", zeros([0, 4])),
        };
        SafeTensorsFile.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "x" });
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal("x", file.Metadata["note"]);
        foreach (var (name, t) in tensors)
        {
            var read = file.Read(name);
            Assert.Equal(t.dtype, read.dtype);
            Assert.Equal(t.shape, read.shape);
            Assert.True(torch.equal(read, t).all().item<bool>(), name);
        }
        // The header is 8-byte aligned, as the reference writer makes it.
        Assert.Equal(0UL, BitConverter.ToUInt64(File.ReadAllBytes(path), 0) % 8);
    }

    [Fact]
    public void Tied_embeddings_store_only_embed_tokens_and_tolerate_an_extra_lm_head()
    {
        using var scope = NewDisposeScope();
        var config = FlashSmall with { TieWordEmbeddings = true };
        using var model = RandomModel(config, seed: 3);
        string dir = TempDir();
        model.SavePretrained(dir);
        using (var file = SafeTensorsFile.Open(Path.Combine(dir, CheckpointFiles.SingleFile)))
            Assert.DoesNotContain("lm_head.weight", file.Tensors.Keys);
        // Add a stray lm_head.weight: the tie wins.
        var names = model.named_parameters().Select(p =>
            (p.name, (Tensor)p.parameter)).Append(("lm_head.weight", randn([97, 64]))).ToList();
        SafeTensorsFile.Write(Path.Combine(dir, CheckpointFiles.SingleFile), names);
        using var loaded = HybridForCausalLM.FromPretrained(dir);
        var tokens = RandomTokens(1, 8, 97, 1);
        AssertClose(Scoring.Logits(loaded, tokens), Scoring.Logits(model, tokens), 1e-6);
    }

    [Fact]
    public void State_dict_names_and_shapes_match_the_checkpoint_layout_snapshot()
    {
        // A Flash-pattern config with every optional tensor: meta tokens, q/k norm, untied head, SwiGLU, FFN inside mixer layers.
        var config = Config("deltanet", "f", "m2", "f", "a",
                            "gdn") with
        { NumMemoryTokens = 4, IntermediateSize = 96, FfnExpandRatio = null };
        using var model = new HybridForCausalLM(config, new Wren.Modules.Placement(ScalarType.Float32, new Device("meta")));
        var actual = string.Join("\n", model.named_parameters().Select(p => $"{p.name} [{string.Join(", ", p.parameter.shape)}]")) + "\n";
        string snapshot = Path.Combine(RepoRoot, "tests", "Wren.Tests", "Snapshots", "flash-small.state_dict.txt");
        Assert.Equal(File.ReadAllText(snapshot), actual);
    }
}

/// <summary>Bad inputs: each gives a clear message and exit code 2 from the real CLI, never a crash.</summary>
[Collection("cli")]
public class BadInputTests
{
    static (int Code, string Error) Run(params string[] args)
    {
        var error = new StringWriter();
        int code = Wren.Cli.WrenCli.RunAsync(args, error).GetAwaiter().GetResult();
        return (code, error.ToString());
    }

    /// <summary>A valid model folder and tokens file; the test then breaks one thing.</summary>
    static (string Dir, string Tokens) ValidModel()
    {
        string dir = TempDir();
        using var model = RandomModel(Config("a", "m2", "deltanet", "f"), seed: 1);
        model.SavePretrained(dir);
        string tokens = Path.Combine(dir, "tokens.json");
        File.WriteAllText(tokens, "[[1, 2, 3], [4, 5, 6]]");
        return (dir, tokens);
    }

    static void AssertFails(string dir, string tokens, string expectedMessage)
    {
        var (code, error) = Run("logits", "--model", dir, "--tokens", tokens, "--out", Path.Combine(dir, "out.npy"));
        Assert.Equal(2, code);
        Assert.Contains(expectedMessage, error);
        Assert.DoesNotContain("   at ", error);   // no stack trace
    }

    static string Weights(string dir) => Path.Combine(dir, CheckpointFiles.SingleFile);

    static void RewriteHeader(string dir, Func<JsonObject, JsonObject> change)
    {
        var bytes = File.ReadAllBytes(Weights(dir));
        int length = (int)BitConverter.ToUInt64(bytes, 0);
        var header = (JsonObject)JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, length))!;
        var newHeader = Encoding.UTF8.GetBytes(change(header).ToJsonString());
        using var stream = File.Create(Weights(dir));
        stream.Write(BitConverter.GetBytes((ulong)newHeader.Length));
        stream.Write(newHeader);
        stream.Write(bytes, 8 + length, bytes.Length - 8 - length);
    }

    [Fact]
    public void Truncated_file()
    {
        var (dir, tokens) = ValidModel();
        var bytes = File.ReadAllBytes(Weights(dir));
        File.WriteAllBytes(Weights(dir), bytes[..(bytes.Length - 100)]);
        AssertFails(dir, tokens, "past the end of the data");
        File.WriteAllBytes(Weights(dir), bytes[..5]);
        AssertFails(dir, tokens, "fewer than the 8-byte header length");
    }

    [Fact]
    public void Header_length_past_end_of_file()
    {
        var (dir, tokens) = ValidModel();
        var bytes = File.ReadAllBytes(Weights(dir));
        BitConverter.GetBytes((ulong)bytes.Length).CopyTo(bytes, 0);
        File.WriteAllBytes(Weights(dir), bytes);
        AssertFails(dir, tokens, "runs past the end of the file");
    }

    [Fact]
    public void Overlapping_offsets()
    {
        var (dir, tokens) = ValidModel();
        RewriteHeader(dir, h =>
        {
            var second = h.Where(kv => kv.Key != "__metadata__").Skip(1).First().Value!;
            var offsets = second["data_offsets"]!.AsArray();
            long length = (long)offsets[1]! - (long)offsets[0]!;
            second["data_offsets"] = new JsonArray(JsonValue.Create((long)offsets[0]! - 4),
                                                   JsonValue.Create((long)offsets[0]! - 4 + length));
            return h;
        });
        AssertFails(dir, tokens, "overlap");
    }

    [Fact]
    public void Out_of_range_offsets()
    {
        var (dir, tokens) = ValidModel();
        RewriteHeader(dir, h =>
        {
            var first = h.Where(kv => kv.Key != "__metadata__").First().Value!;
            first["data_offsets"] = new JsonArray(JsonValue.Create(1L << 40), JsonValue.Create((1L << 40) + 16));
            return h;
        });
        AssertFails(dir, tokens, "past the end of the data");
    }

    [Fact]
    public void Dtype_and_shape_mismatch()
    {
        var (dir, tokens) = ValidModel();
        RewriteHeader(dir, h => { h["model.final_layernorm.weight"]!["dtype"] = "F16"; return h; });
        AssertFails(dir, tokens, "needs 128 bytes but data_offsets span 256");
        (dir, tokens) = ValidModel();
        RewriteHeader(dir, h => { h["model.final_layernorm.weight"]!["shape"] = new JsonArray(32, 2); return h; });
        AssertFails(dir, tokens, "has shape [32, 2] but the model expects [64]");
        (dir, tokens) = ValidModel();
        RewriteHeader(dir, h => { h["model.final_layernorm.weight"]!["dtype"] = "Q4"; return h; });
        AssertFails(dir, tokens, "unknown dtype 'Q4'");
    }

    [Fact]
    public void Missing_and_unexpected_tensors()
    {
        var (dir, tokens) = ValidModel();
        RewriteHeader(dir, h => { h.Remove("model.layers.1.mamba.A_log"); return h; });
        AssertFails(dir, tokens, "missing 1 tensor(s): model.layers.1.mamba.A_log");
        (dir, tokens) = ValidModel();
        RewriteHeader(dir, h =>
        {
            h["model.layers.9.extra"] = new JsonObject
            {
                ["dtype"] = "F32", ["shape"] = new JsonArray(0), ["data_offsets"] = new JsonArray(0, 0),
            };
            return h;
        });
        AssertFails(dir, tokens, "unexpected 1 tensor(s): model.layers.9.extra");
    }

    [Fact]
    public void Unknown_layer_type_and_invalid_config_json()
    {
        var (dir, tokens) = ValidModel();
        string config = Path.Combine(dir, Checkpoint.ConfigFile);
        string original = File.ReadAllText(config);
        File.WriteAllText(config, original.Replace("\"m2\"", "\"mamba3\""));
        AssertFails(dir, tokens, "layer_types[1] = 'mamba3' is not a known layer type");
        File.WriteAllText(config, original[..(original.Length / 2)]);
        AssertFails(dir, tokens, "invalid JSON");
        File.WriteAllText(config, original.Replace("\"hidden_size\"", "\"hidden_sizes\""));
        AssertFails(dir, tokens, "missing required key 'hidden_size'");
    }

    [Fact]
    public void Invalid_header_json_and_bad_tokens()
    {
        var (dir, tokens) = ValidModel();
        var bytes = File.ReadAllBytes(Weights(dir));
        bytes[9] = (byte)'!';
        File.WriteAllBytes(Weights(dir), bytes);
        AssertFails(dir, tokens, "header is not valid JSON");
        (dir, tokens) = ValidModel();
        File.WriteAllText(tokens, "[[1, 2, 3], [4, 5]]");
        AssertFails(dir, tokens, "rows must have equal length");
        File.WriteAllText(tokens, "[[1, 2, 300]]");
        AssertFails(dir, tokens, "outside the vocabulary");
        File.WriteAllText(tokens, "{\"ids\": 1}");
        AssertFails(dir, tokens, "expected a JSON list of lists");
    }

    [Fact]
    public void Bad_arguments_exit_nonzero_with_a_message()
    {
        var (dir, tokens) = ValidModel();
        Assert.Equal(2, Run("logits", "--model", dir, "--tokens", tokens, "--out", Path.Combine(dir, "x.csv")).Code);
        Assert.Equal(2, Run("logits", "--model", dir, "--tokens", tokens, "--out", Path.Combine(dir, "x.npy"), "--prefill", "9").Code);
        Assert.Equal(2, Run("logits", "--model", dir, "--tokens", tokens, "--out", Path.Combine(dir, "x.npy"), "--device", "tpu").Code);
        Assert.NotEqual(0, Run("logits", "--model", dir).Code);
        Assert.NotEqual(0, Run("generate", "--model", dir, "--prompt", "x", "--max-new-tokens", "lots").Code);
        Assert.Equal(2, Run("generate", "--model", dir, "--prompt", "x", "--top-p", "0").Code);
    }
}
