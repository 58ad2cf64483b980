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
/// <para>Tokenizers.DotNet always encodes with <c>add_special_tokens=true</c> and with special-token parsing on, and the library
/// numbers the added tokens it loads by their position. So Wren finds the added tokens itself, as the library's
/// <c>AddedVocabulary</c> does (leftmost-longest, with <c>lstrip</c>/<c>rstrip</c>/<c>single_word</c>), gives each the id
/// written in the file, and runs the library on the text between them, with a second instance of the same file that has
/// no added tokens and no post-processor: the normalizer, pre-tokenizer and model see exactly the pieces that Hugging Face
/// gives them. <see cref="Encode(string)"/> skips the special added tokens (text is text: Hugging Face's
/// <c>split_special_tokens=True</c> with <c>add_special_tokens=False</c>; non-special added tokens such as Qwen3's
/// <c>&lt;think&gt;</c> still match, as there); <see cref="Encode(IReadOnlyList{PromptPiece})"/> adds the control tokens a
/// chat template wrote. Added tokens with <c>normalized: true</c> are matched in the text before normalization, which is
/// what Hugging Face does when the normalizer leaves them and their neighbours unchanged (DeepSeek-V3's, an empty
/// sequence). Decoding uses the file as is and skips special tokens.</para>
/// </remarks>
public sealed class HuggingFaceTokenizer : ITextTokenizer, IDisposable
{
    readonly Tokenizer encoder, decoder;
    readonly LeftmostLongestMatcher<AddedToken> addedTokens;
    readonly Dictionary<string, AddedToken> controlTokens;

    HuggingFaceTokenizer(Tokenizer encoder, Tokenizer decoder, IReadOnlyList<AddedToken> added, string name, int size,
                         int? eos, int? bos, int? pad, bool addBos)
    {
        (this.encoder, this.decoder, Name, VocabularySize) = (encoder, decoder, name, size);
        (EndOfTextId, BeginOfTextId, PaddingId, AddsBeginOfText) = (eos, bos, pad, addBos);
        AddedTokens = added;
        addedTokens = new LeftmostLongestMatcher<AddedToken>(added.Select(t => (t.Content, t)));
        controlTokens = added.Where(t => t.Special).GroupBy(t => t.Content).ToDictionary(g => g.Key, g => g.Last());
        ControlTokens = controlTokens.ToDictionary(kv => kv.Key, kv => kv.Value.Id);
    }

    public string Name { get; }
    public int VocabularySize { get; }
    public int? EndOfTextId { get; }
    public int? BeginOfTextId { get; }
    public int? PaddingId { get; }
    public bool AddsBeginOfText { get; }

    /// <summary>tokenizer.json's <c>added_tokens</c>, each with the id written in the file.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    public IReadOnlyDictionary<string, int> ControlTokens { get; }

    public IReadOnlyList<int> Encode(string text)
    {
        var ids = new List<int>();
        AppendText(text, ids);
        return ids;
    }

    /// <summary>
    /// Control pieces become their ids as Hugging Face matches an added token: <c>lstrip</c>/<c>rstrip</c> take the whitespace
    /// next to it out of the text, and a <c>single_word</c> token that touches a word character stays text.
    /// </summary>
    public IReadOnlyList<int> Encode(IReadOnlyList<PromptPiece> pieces)
    {
        var ids = new List<int>();
        var text = new System.Text.StringBuilder();
        bool stripNext = false;
        for (int i = 0; i < pieces.Count; i++)
        {
            string piece = pieces[i].Text;
            if (stripNext && !pieces[i].Control) piece = piece.TrimStart();
            stripNext = false;
            if (!pieces[i].Control)
            {
                text.Append(piece);
                continue;
            }
            if (!controlTokens.TryGetValue(piece, out var token))
                throw new WrenException($"{Name}: '{piece}' is not one of the tokenizer's special tokens");
            char? before = text.Length > 0 ? text[^1] : null;
            char? after = i + 1 < pieces.Count && !pieces[i + 1].Control && pieces[i + 1].Text.Length > 0 ? pieces[i + 1].Text[0] : null;
            if (token.SingleWord && (IsWordCharacter(before) || IsWordCharacter(after)))
            {
                text.Append(piece);
                continue;
            }
            string pending = text.ToString();
            AppendText(token.LeftStrip ? pending.TrimEnd() : pending, ids);
            text.Clear();
            ids.Add(token.Id);
            stripNext = token.RightStrip;
        }
        AppendText(text.ToString(), ids);
        return ids;
    }

    /// <summary>Hugging Face's word characters for <c>single_word</c>: alphanumeric or '_'.</summary>
    static bool IsWordCharacter(char? c) => c is { } x && (char.IsLetterOrDigit(x) || x == '_');

    /// <summary>
    /// Text as text: the non-special added tokens matched, the special ones skipped (their text stays text), the rest run by
    /// the library. As in Hugging Face, all added tokens are matched first and the special matches then dropped.
    /// </summary>
    void AppendText(string text, List<int> ids)
    {
        int start = 0;
        foreach (var (at, length, token) in addedTokens.Matches(text))
        {
            if (token.Special) continue;
            int from = at, to = at + length;
            if (token.SingleWord && (IsWordCharacter(at > 0 ? text[at - 1] : null) || IsWordCharacter(to < text.Length ? text[to] : null)))
                continue;
            if (token.LeftStrip) while (from > start && char.IsWhiteSpace(text[from - 1])) from--;
            if (token.RightStrip) while (to < text.Length && char.IsWhiteSpace(text[to])) to++;
            if (from > start) ids.AddRange(Model(text[start..from]));
            ids.Add(token.Id);
            start = to;
        }
        if (start < text.Length) ids.AddRange(Model(text[start..]));
    }

    int[] Model(string text) => Native(() => Array.ConvertAll(encoder.Encode(text), id => (int)id));

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

        var added = Added(root, path);
        var textOnly = TextOnly(root);
        string temporary = Path.Combine(Path.GetTempPath(), $"wren-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(temporary, textOnly.ToJsonString());
            var encoder = Open(temporary, path);
            var decoder = Open(path, path);
            string name = $"tokenizer.json ({model["type"]}, {ids.Count} tokens, Hugging Face tokenizers)";
            return new HuggingFaceTokenizer(encoder, decoder, added, name, size,
                Id("eos_token", "<|endoftext|>", "</s>", "<|end_of_text|>"), Id("bos_token", "<s>", "<|begin_of_text|>"),
                Id("pad_token"), addBos);
        }
        finally { File.Delete(temporary); }
    }

    /// <summary>
    /// The file Wren runs on the text between added tokens (<paramref name="root"/> itself, changed): no added tokens (Wren
    /// matches them, see the remarks), no post-processor, and, for a Unigram model, the special tokens' own pieces made
    /// unreachable (renamed to start with the noncharacter U+FFFF; ids stay, as a Unigram vocabulary is positional), since a
    /// Unigram lattice would otherwise still pick a piece such as <c>&lt;s&gt;</c> out of text, which SentencePiece never does
    /// for its control symbols.
    /// </summary>
    static JsonObject TextOnly(JsonObject root)
    {
        var textOnly = root;
        var special = (root["added_tokens"] as JsonArray ?? [])
            .Where(t => t?["special"] is JsonValue flag && flag.TryGetValue(out bool s) && s)
            .Select(t => (string?)t!["content"]).ToHashSet();
        textOnly["added_tokens"] = new JsonArray();
        textOnly["post_processor"] = null;
        if ((string?)textOnly["model"]?["type"] == "Unigram" && textOnly["model"]?["vocab"] is JsonArray pieces)
            foreach (var piece in pieces.OfType<JsonArray>().Where(p => p.Count == 2 && special.Contains((string?)p[0])))
                piece[0] = "\uFFFF" + (string?)piece[0];
        return textOnly;
    }

    /// <summary>tokenizer.json's <c>added_tokens</c> with their ids and flags (absent flags are false, as in the library).</summary>
    static List<AddedToken> Added(JsonObject root, string path)
    {
        bool Flag(JsonNode token, string key) => token[key] is JsonValue v && v.TryGetValue(out bool on) && on;
        var added = new List<AddedToken>();
        foreach (var token in root["added_tokens"] as JsonArray ?? [])
        {
            if (token?["content"] is not JsonValue content || !content.TryGetValue(out string? text)
                || token["id"] is not JsonValue idValue || !idValue.TryGetValue(out int id))
                throw new WrenException($"{path}: every added_tokens entry needs a string \"content\" and an integer \"id\"");
            added.Add(new AddedToken(text, id, Flag(token, "special"), Flag(token, "lstrip"), Flag(token, "rstrip"),
                                     Flag(token, "single_word")));
        }
        return added;
    }

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
