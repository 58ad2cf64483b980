using System.Text;
using System.Text.Json.Nodes;
using Wren.Checkpoints;
using Wren.Models;

namespace Wren.Tests.Checkpoints;

/// <summary>
/// Mutated safetensors headers and config.json files through the loading code the CLI uses
/// (<see cref="HybridForCausalLM.FromPretrained"/>): each either loads a valid model or fails with a
/// <see cref="WrenException"/> with a one-line message; nothing else (no other exception, no native abort). A model that loads holds no
/// more parameter bytes than its file implies. Seeded, so every run checks the same inputs.
/// </summary>
public class LoadFuzzTests
{
    const int ConfigCases = 5000, HeaderCases = 5000;

    static readonly string[] Replacements =
    [
        "0", "-1", "1e308", "-1e308", "1e999", "9223372036854775807", "9223372036854775808", "18446744073709551616", "2147483648",
        "0.5", "\"text\"", "\"\"", "null", "true", "[]", "{}", "[null]", "[1,2,3]", "{\"a\":1}", "\"\\ud800\"", "NaN",
    ];

    /// <summary>One random mutation of a JSON object's text: truncation, bit flips, a repeated, removed or retyped key, nesting.</summary>
    static string Mutate(JsonObject original, string text, Random random)
    {
        var keys = original.Select(kv => kv.Key).ToList();
        string Member(string key, string value) => $"{System.Text.Json.JsonSerializer.Serialize(key)}:{value}";
        string Rebuild(Func<string, string?> valueOf) =>
            "{" + string.Join(",", keys.Select(k => valueOf(k) is { } v ? Member(k, v) : null).Where(m => m is not null)) + "}";
        string key = keys[random.Next(keys.Count)];
        string Value(string k) => original[k]?.ToJsonString() ?? "null";
        switch (random.Next(8))
        {
            case 0: return text[..random.Next(text.Length)];
            case 1:
            {
                var bytes = Encoding.UTF8.GetBytes(text);
                for (int i = 0, n = 1 + random.Next(3); i < n; i++) bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                return Encoding.UTF8.GetString(bytes);
            }
            case 2: return Rebuild(k => k == key ? Value(k) + "," + Member(k, Value(k)) : Value(k));   // duplicated key
            case 3: return Rebuild(k => k == key ? null : Value(k));                                    // removed key
            case 4: return Rebuild(k => k == key ? Replacements[random.Next(Replacements.Length)] : Value(k));
            case 5:
            {
                int depth = random.Next(2) == 0 ? 70 : 2000;
                return Rebuild(k => k == key ? new string('[', depth) + Value(k) + new string(']', depth) : Value(k));
            }
            case 6:
            {
                // a nested field of an object or array value gets another value
                var node = original[key]?.DeepClone();
                if (node is JsonObject inner && inner.Count > 0)
                    inner[inner.ElementAt(random.Next(inner.Count)).Key] = JsonNode.Parse(Replacements[random.Next(4, 14)]);
                else if (node is JsonArray array && array.Count > 0)
                    array[random.Next(array.Count)] = JsonNode.Parse(Replacements[random.Next(14)]);
                else node = JsonNode.Parse(Replacements[random.Next(Replacements.Length - 2)]);
                return Rebuild(k => k == key ? node?.ToJsonString() ?? "null" : Value(k));
            }
            default: return text.Insert(random.Next(text.Length), Replacements[random.Next(Replacements.Length)]);
        }
    }

    static void Check(string folder, long weightFileBytes, string what)
    {
        try
        {
            using var model = HybridForCausalLM.FromPretrained(folder);
            long bytes = model.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
            Assert.True(bytes <= 4 * weightFileBytes, $"{what}: a loaded model holds {bytes} bytes from a {weightFileBytes}-byte file");
        }
        catch (WrenException e)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Message), $"{what}: empty message");
            Assert.DoesNotContain('\n', e.Message);
        }
        catch (Exception e)
        {
            Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}");
        }
    }

    static string SavedModel()
    {
        string folder = TestSupport.TempDir();
        var config = TestSupport.Config("a", "m2", "deltanet", "gdn", "f") with
        {
            VocabSize = 32,
            SlidingWindow = 8,
            GlobalAttnIdx = [0],
            NumMemoryTokens = 2,
        };
        using var model = TestSupport.RandomModel(config, seed: 1);
        Checkpoint.Save(model, folder);
        return folder;
    }

    [Fact]
    public void Mutated_config_json_files_load_or_fail_with_a_message()
    {
        string folder = SavedModel();
        string path = Path.Combine(folder, Checkpoint.ConfigFile);
        string text = File.ReadAllText(path);
        var original = (JsonObject)JsonNode.Parse(text)!;
        long weights = new FileInfo(Path.Combine(folder, CheckpointFiles.SingleFile)).Length;
        var random = new Random(10);
        for (int i = 0; i < ConfigCases; i++)
        {
            string mutated = Mutate(original, text, random);
            File.WriteAllText(path, mutated);
            Check(folder, weights, $"config case {i}: {mutated}");
        }
    }

    [Fact]
    public void Mutated_safetensors_headers_load_or_fail_with_a_message()
    {
        string folder = SavedModel();
        string path = Path.Combine(folder, CheckpointFiles.SingleFile);
        var file = File.ReadAllBytes(path);
        int headerLength = (int)BitConverter.ToUInt64(file);
        string header = Encoding.UTF8.GetString(file, 8, headerLength);
        var data = file[(8 + headerLength)..];
        var original = (JsonObject)JsonNode.Parse(header)!;
        var random = new Random(11);
        for (int i = 0; i < HeaderCases; i++)
        {
            var mutated = Encoding.UTF8.GetBytes(Mutate(original, header, random));
            ulong length = random.Next(10) switch
            {
                0 => (ulong)random.NextInt64(),
                1 => (ulong)random.Next(mutated.Length + 16),
                _ => (ulong)mutated.Length,
            };
            using (var stream = File.Create(path))
            {
                stream.Write(BitConverter.GetBytes(length));
                stream.Write(mutated);
                stream.Write(data, 0, random.Next(20) == 0 ? random.Next(data.Length) : data.Length);
            }
            Check(folder, file.Length, $"header case {i}: length {length}, {Encoding.UTF8.GetString(mutated)}");
        }
    }

    [Fact]
    public void A_repeated_key_is_an_error_naming_it()
    {
        string dir = TestSupport.Case("safetensors-duplicate-tensor");
        var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(dir));
        Assert.Contains("Duplicate", error.Message, StringComparison.OrdinalIgnoreCase);
        string folder = SavedModel();
        string config = Path.Combine(folder, Checkpoint.ConfigFile);
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"hidden_size\": 64,", "\"hidden_size\": 64, \"hidden_size\": 64,"));
        error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(folder));
        Assert.Contains("hidden_size", error.Message);
        var cli = TestSupport.Cli("logits", "--model", dir, "--tokens", Path.Combine(dir, "tokens.json"),
                                  "--out", Path.Combine(folder, "l.npy"));
        Assert.Equal(2, cli.Code);
    }
}
