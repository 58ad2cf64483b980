using System.IO.Compression;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Wren.Models;

namespace Wren.Tokenization;

/// <summary>The tokenizer of a model folder: tokenizer.json (Hugging Face), a tiktoken encoding named in config.json, or bytes.</summary>
public static class TokenizerLoader
{
    public static ITextTokenizer ForModel(string folder, HybridConfig config)
    {
        string path = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(path)) return LoadHuggingFace(path);
        if (config.TiktokenEncoding is { } encoding) return Tiktoken(encoding);
        return new ByteTokenizer(config.VocabSize);
    }

    /// <summary>
    /// A tiktoken encoding whose <see cref="ITextTokenizer.Encode"/> reads special-token strings as text.
    /// Microsoft.ML.Tokenizers' encodings always split on their special tokens, so the encoding is rebuilt from its own
    /// rank file (the package's embedded <c>{encoding}.tiktoken.deflate</c>) with a pre-tokenizer that knows no special tokens.
    /// </summary>
    public static ITextTokenizer Tiktoken(string encoding)
    {
        if (!TiktokenPatterns.TryGetValue(encoding, out var pattern))
            throw new WrenException($"unknown tiktoken encoding '{encoding}' (cl100k_base, o200k_base)");
        var standard = TiktokenTokenizer.CreateForEncoding(encoding);
        var special = standard.SpecialTokens ?? new Dictionary<string, int>();
        var assembly = System.Reflection.Assembly.Load(
            encoding == "cl100k_base" ? "Microsoft.ML.Tokenizers.Data.Cl100kBase" : "Microsoft.ML.Tokenizers.Data.O200kBase");
        using var ranks = new DeflateStream(assembly.GetManifestResourceStream($"{encoding}.tiktoken.deflate")!,
                                            CompressionMode.Decompress);
        var preTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), specialTokens: null);
        var textOnly = TiktokenTokenizer.Create(ranks, preTokenizer, normalizer: null);
        int? eot = special.TryGetValue("<|endoftext|>", out var id) ? id : null;
        return new TiktokenText(textOnly, standard, special, encoding, eot, special.Values.Max() + 1);
    }

    /// <summary>
    /// The pre-tokenization patterns of the tiktoken encodings (OpenAI's tiktoken, tiktoken_ext/openai_public.py), with .NET
    /// atomic groups in place of possessive quantifiers. A test checks they split exactly as Microsoft.ML.Tokenizers does.
    /// </summary>
    static readonly Dictionary<string, string> TiktokenPatterns = new()
    {
        ["cl100k_base"] = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?>[^\r\n\p{L}\p{N}]?)\p{L}+|\p{N}{1,3}| ?(?>[^\s\p{L}\p{N}]+)[\r\n]*" +
                          @"|\s*[\r\n]+|\s+(?!\S)|\s+",
        ["o200k_base"] = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
                         @"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
                         @"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    };

    /// <summary>Loads a Hugging Face tokenizer.json through Hugging Face's own library (<see cref="HuggingFaceTokenizer"/>).</summary>
    public static ITextTokenizer LoadHuggingFace(string path) => HuggingFaceTokenizer.Load(path);

    /// <summary>Encodes with the text-only tokenizer, decodes with the standard one (which knows the special tokens' ids); the
    /// special tokens are the control tokens a chat template may write.</summary>
    sealed class TiktokenText(TiktokenTokenizer textOnly, TiktokenTokenizer standard, IReadOnlyDictionary<string, int> special,
                              string name, int? endOfText, int size) : ITextTokenizer
    {
        readonly HashSet<int> specialIds = special.Values.ToHashSet();
        public string Name => name;
        public int VocabularySize => size;
        public int? EndOfTextId => endOfText;
        public IReadOnlyDictionary<string, int> ControlTokens => special;
        public IReadOnlyList<int> Encode(string text) => textOnly.EncodeToIds(text);
        public string Decode(IEnumerable<int> ids) => standard.Decode(ids.Where(id => !specialIds.Contains(id))) ?? "";
    }
}
