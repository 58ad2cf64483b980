using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Wren.Models;

namespace Wren.Tokenization;

/// <summary>Finds the tokenizer of a model folder: tokenizer.json (HF BPE), a tiktoken encoding named in config.json, or bytes.</summary>
public static class TokenizerLoader
{
    /// <summary>GPT-2's pre-tokenization pattern, used by HF's ByteLevel pre-tokenizer when use_regex is on.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static ITextTokenizer ForModel(string folder, HybridConfig config)
    {
        string path = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(path)) return LoadHuggingFace(path);
        if (config.TiktokenEncoding is { } encoding) return Tiktoken(encoding);
        return new ByteTokenizer(config.VocabSize);
    }

    public static ITextTokenizer Tiktoken(string encoding)
    {
        if (encoding is not ("cl100k_base" or "o200k_base")) throw new WrenException($"unknown tiktoken encoding '{encoding}' (cl100k_base, o200k_base)");
        var tokenizer = TiktokenTokenizer.CreateForEncoding(encoding);
        var special = tokenizer.SpecialTokens ?? new Dictionary<string, int>();
        return new LibraryTokenizer(tokenizer, encoding, special.TryGetValue("<|endoftext|>", out var eot) ? eot : null, special.Values.Max() + 1);
    }

    /// <summary>Reads a Hugging Face tokenizer.json with a BPE model (byte-level or not) into Microsoft.ML.Tokenizers.</summary>
    public static ITextTokenizer LoadHuggingFace(string path)
    {
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new WrenException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new WrenException($"{path}: invalid JSON ({e.Message})", e); }
        if (root["model"] is not JsonObject model || (string?)model["type"] != "BPE")
            throw new WrenException($"{path}: only BPE tokenizers are supported (model.type = \"{root["model"]?["type"]}\")");
        if (model["vocab"] is not JsonObject vocabNode) throw new WrenException($"{path}: model.vocab is missing");
        var vocab = vocabNode.Select(kv => KeyValuePair.Create(kv.Key, (int)kv.Value!)).ToList();
        var merges = (model["merges"] as JsonArray ?? []).Select(m => m is JsonArray pair ? $"{pair[0]} {pair[1]}" : (string)m!).ToList();
        var special = new Dictionary<string, int>();
        foreach (var added in root["added_tokens"] as JsonArray ?? [])
            if (added?["content"] is JsonValue content && added["id"] is JsonValue id)
                special[(string)content!] = (int)id!;
        bool byteLevel = Mentions(root["pre_tokenizer"], "ByteLevel") || Mentions(root["decoder"], "ByteLevel");
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = byteLevel,
            SpecialTokens = special.Count > 0 ? special : null,
            PreTokenizer = new RegexPreTokenizer(new Regex(SplitPattern(root["pre_tokenizer"]) ?? Gpt2Pattern, RegexOptions.Compiled), special.Count > 0 ? special : null),
            UnknownToken = (string?)model["unk_token"],
        };
        var tokenizer = BpeTokenizer.Create(options);
        int? eot = special.TryGetValue("<|endoftext|>", out var eotId) ? eotId : special.TryGetValue("</s>", out var eosId) ? eosId : null;
        return new LibraryTokenizer(tokenizer, $"tokenizer.json (BPE{(byteLevel ? ", byte-level" : "")}, {vocab.Count + special.Count(kv => !vocabNode.ContainsKey(kv.Key))} tokens)", eot,
            Math.Max(vocab.Count == 0 ? 0 : vocab.Max(kv => kv.Value) + 1, special.Count == 0 ? 0 : special.Values.Max() + 1));
    }

    static bool Mentions(JsonNode? node, string type) => node is not null && node.ToJsonString().Contains($"\"type\":\"{type}\"");

    /// <summary>The regex of a Split pre-tokenizer, if the file has one (alone or in a Sequence).</summary>
    static string? SplitPattern(JsonNode? node)
    {
        if (node is not JsonObject obj) return null;
        if ((string?)obj["type"] == "Split" && obj["pattern"]?["Regex"] is JsonValue regex) return (string?)regex;
        return (obj["pretokenizers"] as JsonArray ?? []).Select(SplitPattern).FirstOrDefault(p => p is not null);
    }

    sealed class LibraryTokenizer(Tokenizer tokenizer, string name, int? endOfText, int size) : ITextTokenizer
    {
        public string Name => name;
        public int VocabularySize => size;
        public int? EndOfTextId => endOfText;
        public IReadOnlyList<int> Encode(string text) => tokenizer.EncodeToIds(text);
        public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";
    }
}
