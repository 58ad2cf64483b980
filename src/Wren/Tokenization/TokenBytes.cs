using System.Text;
using System.Text.Json.Nodes;

namespace Wren.Tokenization;

/// <summary>
/// The bytes each token adds to the decoded text, for constrained decoding (which works on bytes: a byte-level BPE token may
/// hold part of a UTF-8 character).
/// </summary>
/// <param name="Bytes">Per id: its bytes, or null for a token that decodes to nothing (a special or control token).</param>
/// <param name="StripsFirstSpace">The decoder drops one leading space of the whole text (SentencePiece's <c>Strip</c> or
/// <c>Metaspace</c> with a prepended <c>▁</c>), so the first token of a completion adds its bytes less a leading space.</param>
public sealed record TokenBytes(IReadOnlyList<byte[]?> Bytes, bool StripsFirstSpace)
{
    /// <summary>
    /// The bytes of a Hugging Face tokenizer.json's vocabulary, read from its decoder: <c>ByteLevel</c> maps each character
    /// back through GPT-2's byte table (transformers' <c>bytes_to_unicode</c>); <c>ByteFallback</c> reads <c>&lt;0xHH&gt;</c>
    /// as byte HH; <c>Replace</c> and <c>Metaspace</c> turn <c>▁</c> into a space; other pieces are their UTF-8. Null when the
    /// decoder is another kind (WordPiece joins words with spaces, so a token's bytes depend on its neighbours).
    /// </summary>
    /// <param name="vocabulary">Token string → id, added tokens included.</param>
    /// <param name="special">Ids of special added tokens (they decode to nothing).</param>
    internal static TokenBytes? FromHuggingFace(JsonObject root, IReadOnlyDictionary<string, int> vocabulary, ISet<int> special,
                                                int size)
    {
        var decoders = root["decoder"] is JsonObject d
            ? (string?)d["type"] == "Sequence" ? (d["decoders"] as JsonArray ?? []).OfType<JsonObject>().ToList() : [d]
            : [];
        var kinds = decoders.Select(x => (string?)x["type"]).ToList();
        bool byteLevel = kinds.Contains("ByteLevel"), byteFallback = kinds.Contains("ByteFallback");
        var replaces = decoders.Where(x => (string?)x["type"] == "Replace" && x["pattern"]?["String"] is JsonValue)
            .Select(x => ((string)x["pattern"]!["String"]!, (string?)x["content"] ?? "")).ToList();
        var metaspace = decoders.FirstOrDefault(x => (string?)x["type"] == "Metaspace");
        if (metaspace is not null) replaces.Add(((string?)metaspace["replacement"] ?? "\u2581", " "));
        if (kinds.Any(k => k is not ("ByteLevel" or "ByteFallback" or "Replace" or "Fuse" or "Strip" or "Metaspace"))) return null;
        if (!byteLevel && replaces.Count == 0 && !byteFallback) return null;
        bool strip = decoders.Any(x => (string?)x["type"] == "Strip" && (string?)x["content"] == " " && (int?)x["start"] >= 1)
                     || metaspace is not null && (string?)metaspace["prepend_scheme"] is null or "always" or "first";
        var unByte = new Dictionary<char, byte>();
        for (int b = 0; b < 256; b++) unByte[TrainedBpe.ByteChars[b]] = (byte)b;
        var bytes = new byte[]?[size];
        var added = (root["added_tokens"] as JsonArray ?? []).OfType<JsonObject>().Select(t => (int?)t["id"]).ToHashSet();
        foreach (var (token, id) in vocabulary)
        {
            if (id < 0 || id >= size || special.Contains(id)) continue;
            if (added.Contains(id)) bytes[id] = Encoding.UTF8.GetBytes(token);
            else if (byteLevel) bytes[id] = token.All(unByte.ContainsKey) ? token.Select(c => unByte[c]).ToArray() : null;
            else if (byteFallback && token.Length == 6 && token.StartsWith("<0x") && token[5] == '>'
                     && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var single))
                bytes[id] = [single];
            else
            {
                var text = token;
                foreach (var (pattern, content) in replaces) text = text.Replace(pattern, content);
                bytes[id] = Encoding.UTF8.GetBytes(text);
            }
        }
        return new TokenBytes(bytes, strip);
    }
}
