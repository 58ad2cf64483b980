using System.Text.Json;
using System.Text.Json.Nodes;
using Tokenizers.DotNet;
using Wren.Checkpoints;

namespace Wren.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> run by Hugging Face's own Rust <c>tokenizers</c> library (NuGet Tokenizers.DotNet), so
/// every normalizer, pre-tokenizer, model (BPE with byte fallback, Unigram, WordPiece) and decoder behaves exactly as in
/// transformers. <c>tokenizer_config.json</c> beside the file, when present, names the BOS/EOS/padding tokens and
/// <c>add_bos_token</c>.
/// </summary>
/// <remarks>
/// Tokenizers.DotNet always encodes with <c>add_special_tokens=true</c> and with special-token parsing on. Wren encodes text as
/// text (see <see cref="ITextTokenizer"/>), so encoding runs on a second instance of the same file whose special added
/// tokens and post-processor are removed: that is what Hugging Face's <c>split_special_tokens=True</c> does (special tokens
/// are not matched; non-special added tokens still are) with <c>add_special_tokens=False</c>. Decoding uses the file as is
/// and skips special tokens.
/// </remarks>
public sealed class HuggingFaceTokenizer : ITextTokenizer, IDisposable
{
    readonly Tokenizer encoder, decoder;

    HuggingFaceTokenizer(Tokenizer encoder, Tokenizer decoder, string name, int size, int? eos, int? bos, int? pad, bool addBos,
                         TokenBytes? bytes)
    {
        TokenBytes = bytes;
        (this.encoder, this.decoder, Name, VocabularySize) = (encoder, decoder, name, size);
        (EndOfTextId, BeginOfTextId, PaddingId, AddsBeginOfText) = (eos, bos, pad, addBos);
    }

    public string Name { get; }
    public int VocabularySize { get; }
    public int? EndOfTextId { get; }
    public int? BeginOfTextId { get; }
    public int? PaddingId { get; }
    public bool AddsBeginOfText { get; }
    public TokenBytes? TokenBytes { get; }

    public IReadOnlyList<int> Encode(string text) => Native(() => Array.ConvertAll(encoder.Encode(text), id => (int)id));

    /// <summary>Ids outside the vocabulary (a model's padded rows) decode to nothing, as Hugging Face skips unknown ids.</summary>
    public string Decode(IEnumerable<int> ids) =>
        Native(() => decoder.Decode(ids.Where(id => id >= 0 && id < VocabularySize).Select(id => (uint)id).ToArray()));

    T Native<T>(Func<T> call)
    {
        try { return call(); }
        catch (TokenizerException e) { throw new WrenException($"{Name}: Hugging Face's tokenizers library failed ({e.Message})", e); }
    }

    public void Dispose()
    {
        encoder.Dispose();
        decoder.Dispose();
    }

    /// <summary>Loads <paramref name="path"/> (and <c>tokenizer_config.json</c> beside it).</summary>
    /// <exception cref="WrenException">The file is missing, not JSON, or not a tokenizer Hugging Face's library loads.</exception>
    public static HuggingFaceTokenizer Load(string path)
    {
        var root = ReadObject(path) ?? throw new WrenException($"tokenizer not found: {path}");
        if (root["model"] is not JsonObject model) throw new WrenException($"{path}: the tokenizer has no \"model\"");
        var ids = TokenIds(root, model);
        int size = ids.Count == 0 ? 0 : ids.Values.Max() + 1;

        var config = ReadObject(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json"));
        int? Id(string key, params string[] fallbacks)
        {
            string? content = config?[key] switch
            {
                JsonValue value when value.TryGetValue(out string? text) => text,
                JsonObject added => (string?)added["content"],
                _ => null,
            };
            foreach (var name in content is null ? fallbacks : [content])
                if (ids.TryGetValue(name, out int id)) return id;
            return null;
        }
        bool addBos = config?["add_bos_token"] is JsonValue flag && flag.TryGetValue(out bool on) && on;

        var textOnly = TextOnly(root);
        string temporary = Path.Combine(Path.GetTempPath(), $"wren-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(temporary, textOnly.ToJsonString());
            var encoder = Open(temporary, path);
            var decoder = Open(path, path);
            string name = $"tokenizer.json ({model["type"]}, {ids.Count} tokens, Hugging Face tokenizers)";
            return new HuggingFaceTokenizer(encoder, decoder, name, size,
                Id("eos_token", "<|endoftext|>", "</s>", "<|end_of_text|>"), Id("bos_token", "<s>", "<|begin_of_text|>"),
                Id("pad_token"), addBos, Tokenization.TokenBytes.FromHuggingFace(root, ids, SpecialIds(root), size));
        }
        finally { File.Delete(temporary); }
    }

    /// <summary>
    /// The file Wren encodes text with: special added tokens removed (Hugging Face's <c>split_special_tokens=True</c>), no
    /// post-processor, and, for a Unigram model, the special tokens' own pieces made unreachable (renamed to start with the
    /// noncharacter U+FFFF; ids stay, as a Unigram vocabulary is positional), since a Unigram lattice would otherwise still
    /// pick a piece such as <c>&lt;s&gt;</c> out of text, which SentencePiece never does for its control symbols.
    /// </summary>
    static JsonObject TextOnly(JsonObject root)
    {
        var textOnly = (JsonObject)root.DeepClone();
        var added = (root["added_tokens"] as JsonArray ?? []).ToList();
        var special = added.Where(t => t?["special"] is JsonValue flag && flag.TryGetValue(out bool s) && s).ToList();
        var specialText = special.Select(t => (string?)t!["content"]).ToHashSet();
        textOnly["added_tokens"] = new JsonArray(added.Except(special).Select(t => t!.DeepClone()).ToArray());
        textOnly["post_processor"] = null;
        if ((string?)textOnly["model"]?["type"] == "Unigram" && textOnly["model"]?["vocab"] is JsonArray pieces)
            foreach (var piece in pieces.OfType<JsonArray>().Where(p => p.Count == 2 && specialText.Contains((string?)p[0])))
                piece[0] = "\uFFFF" + (string?)piece[0];
        return textOnly;
    }

    static HashSet<int> SpecialIds(JsonObject root) =>
        (root["added_tokens"] as JsonArray ?? []).OfType<JsonObject>()
            .Where(t => t["special"] is JsonValue flag && flag.TryGetValue(out bool s) && s && t["id"] is JsonValue)
            .Select(t => (int)t["id"]!).ToHashSet();

    static Tokenizer Open(string file, string shownPath)
    {
        try { return new Tokenizer(file); }
        catch (TokenizerException e)
        {
            throw new WrenException($"{shownPath}: Hugging Face's tokenizers library cannot load it ({e.Message})", e);
        }
        catch (DllNotFoundException e)
        {
            // The package ships the native library for linux-x64 only (Directory.Packages.props pins the runtimes used).
            throw new WrenException($"Hugging Face's tokenizers library has no native build for this platform here ({e.Message})", e);
        }
    }

    static JsonObject? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        return StrictJson.ParseObject(File.ReadAllText(path), path);
    }

    /// <summary>
    /// Token → id over the model's vocabulary (an object for BPE/WordPiece/WordLevel, [piece, score] pairs for Unigram) and
    /// the added tokens.
    /// </summary>
    static Dictionary<string, int> TokenIds(JsonObject root, JsonObject model)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            switch (model["vocab"])
            {
                case JsonObject vocab:
                    foreach (var (token, id) in vocab) ids[token] = (int)id!;
                    break;
                case JsonArray pieces:
                    for (int i = 0; i < pieces.Count; i++) ids[(string)pieces[i]![0]!] = i;
                    break;
            }
            foreach (var added in root["added_tokens"] as JsonArray ?? [])
                ids[(string)added!["content"]!] = (int)added["id"]!;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or ArgumentException)
        {
            throw new WrenException($"tokenizer.json: malformed vocabulary or added_tokens ({e.Message})", e);
        }
        return ids;
    }
}
