using System.Text.Json.Nodes;
using Wren.Models;
using Wren.Tokenization;

namespace Wren.Tests.Tokenization;

public class TokenizerTests
{
    const string Sample = "Hello world, ünïcödé 🙂 tabs\tand\nnewlines; 'quoted' 123";

    /// <summary>GPT-2's byte → printable-character table (the byte-level BPE alphabet).</summary>
    static Dictionary<byte, char> ByteAlphabet()
    {
        var printable = Enumerable.Range('!',
                                         '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®',
                                             'ÿ' - '®' + 1)).ToHashSet();
        int next = 256;
        return Enumerable.Range(0, 256).ToDictionary(b => (byte)b, b => (char)(printable.Contains(b) ? b : next++));
    }

    static JsonObject ByteLevel(bool addPrefixSpace) =>
        new() { ["type"] = "ByteLevel", ["add_prefix_space"] = addPrefixSpace, ["trim_offsets"] = true, ["use_regex"] = true };

    static string WriteByteLevelTokenizer()
    {
        var alphabet = ByteAlphabet();
        var vocab = new JsonObject();
        foreach (var (b, c) in alphabet) vocab[c.ToString()] = b;
        vocab["Ġw"] = 256; vocab["Ġwo"] = 257; vocab["he"] = 258; vocab["hel"] = 259;
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 260, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            }),
            ["pre_tokenizer"] = ByteLevel(addPrefixSpace: false),
            ["decoder"] = ByteLevel(addPrefixSpace: true),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray("Ġ w", "Ġw o", "h e", "he l") },
        };
        string dir = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.ToJsonString());
        return dir;
    }

    [Fact]
    public void Hugging_face_byte_level_bpe_round_trips_and_merges()
    {
        string dir = WriteByteLevelTokenizer();
        var tokenizer = TokenizerLoader.ForModel(dir, new HybridConfig { VocabSize = 300 });
        Assert.Equal(Sample, tokenizer.Decode(tokenizer.Encode(Sample)));
        var ids = tokenizer.Encode("hello world");
        Assert.Contains(259, ids);   // "hel"
        Assert.Contains(257, ids);   // "Ġwo"
        Assert.Equal(260, tokenizer.EndOfTextId);
    }

    [Fact]
    public void Tiktoken_encodings_round_trip()
    {
        var tokenizer = TokenizerLoader.Tiktoken("cl100k_base");
        var ids = tokenizer.Encode(Sample);
        Assert.True(ids.Count < Sample.Length);
        Assert.Equal(Sample, tokenizer.Decode(ids));
        Assert.Equal([15339, 1917], tokenizer.Encode("hello world"));   // OpenAI's tiktoken: enc.encode("hello world")
        Assert.Equal(100257, tokenizer.EndOfTextId);                     // cl100k_base's <|endoftext|>
    }

    [Fact]
    public void Byte_fallback_round_trips_and_checks_the_vocabulary()
    {
        var tokenizer = new ByteTokenizer(256);
        Assert.Equal(Sample, tokenizer.Decode(tokenizer.Encode(Sample)));
        Assert.Throws<WrenException>(() => new ByteTokenizer(97).Encode("hello"));
    }

    [Fact]
    public void Unsupported_tokenizer_json_is_a_clear_error()
    {
        string dir = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{\"model\": {\"type\": \"Unigram\"}}");
        var error = Assert.Throws<WrenException>(() => TokenizerLoader.ForModel(dir, new HybridConfig { VocabSize = 10 }));
        Assert.Contains("cannot load", error.Message);
    }
}
