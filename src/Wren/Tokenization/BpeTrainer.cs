using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Wren.Checkpoints;
using Wren.Common;

namespace Wren.Tokenization;

/// <summary>
/// Trains a byte-level BPE tokenizer (GPT-2 style: the 256 bytes are the base alphabet, words split by the GPT-2
/// pattern, merges learned greedily by pair frequency) and writes it as a Hugging Face <c>tokenizer.json</c>.
/// Written here because Microsoft.ML.Tokenizers loads BPE models but cannot train them, and Tokenizers.DotNet wraps only
/// loading, encoding and decoding. Its output loads in Hugging Face's library (tests/fixtures/tokenizers/byte-level).
/// </summary>
public sealed class BpeTrainer
{
    public const string EndOfText = "<|endoftext|>";

    /// <summary>GPT-2's pre-tokenization pattern, used by HF's ByteLevel pre-tokenizer when use_regex is on.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    static readonly Regex Words = new(Gpt2Pattern, RegexOptions.Compiled);
    readonly Dictionary<string, long> wordCounts = new(StringComparer.Ordinal);

    /// <summary>
    /// <paramref name="text"/> with every code point outside the Basic Multilingual Plane (two UTF-16 chars) replaced by two
    /// BMP chars of its class: letter, number or other. .NET's regex sees the halves of a surrogate pair as non-letters, while
    /// Hugging Face's pre-tokenizer matches code points, so without this "a𝔘" would be two words here and one there.
    /// Same length, so match positions index the original text.
    /// </summary>
    static string CodePointClasses(string text)
    {
        if (!text.Any(char.IsSurrogate)) return text;
        var shape = text.ToCharArray();
        for (int i = 0; i + 1 < shape.Length; i++)
        {
            if (!char.IsSurrogatePair(text[i], text[i + 1])) continue;
            char standIn = char.GetUnicodeCategory(text, i) switch
            {
                var c when c <= UnicodeCategory.OtherLetter => 'ꙮ',                                      // Lu Ll Lt Lm Lo
                UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => '٠',
                _ => '¤',
            };
            shape[i] = shape[++i] = standIn;
        }
        return new string(shape);
    }

    /// <summary>Bytes seen so far (for reports).</summary>
    public long Bytes { get; private set; }

    /// <summary>Adds text to the statistics; call once per document or chunk (words never span calls).</summary>
    public void Add(string text)
    {
        Bytes += Encoding.UTF8.GetByteCount(text);
        foreach (var span in Words.EnumerateMatches(CodePointClasses(text)))
        {
            var word = text.Substring(span.Index, span.Length);
            wordCounts[word] = wordCounts.GetValueOrDefault(word) + 1;
        }
    }

    /// <summary>
    /// Learns merges until the vocabulary (256 bytes + merges + <c>&lt;|endoftext|&gt;</c>) reaches
    /// <paramref name="vocabularySize"/> or no pair occurs <paramref name="minFrequency"/> times.
    /// Ties break toward the smaller pair of ids, so training is deterministic.
    /// </summary>
    public TrainedBpe Train(int vocabularySize, int minFrequency = 2, IProgress<double>? progress = null)
    {
        if (vocabularySize < 257) throw new WrenException($"--vocab-size must be at least 257 (256 bytes + end-of-text), got " +
                                                          $"{vocabularySize}");
        if (wordCounts.Count == 0) throw new WrenException("the corpus is empty: no text to train a tokenizer on");
        var tokens = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToList();
        var words = wordCounts.Select(kv => Encoding.UTF8.GetBytes(kv.Key).Select(b => (int)b).ToList()).ToArray();
        var counts = wordCounts.Values.ToArray();

        var pairCounts = new Dictionary<(int, int), long>();
        var wordsWithPair = new Dictionary<(int, int), HashSet<int>>();
        var queue = new PriorityQueue<(int, int), (long, int, int)>(Comparer<(long Count, int A, int B)>.Create((x, y) =>
            x.Count != y.Count ? y.Count.CompareTo(x.Count) : x.A != y.A ? x.A.CompareTo(y.A) : x.B.CompareTo(y.B)));
        var changed = new HashSet<(int, int)>();
        void Count(int w, long sign)
        {
            var symbols = words[w];
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                var pair = (symbols[i], symbols[i + 1]);
                pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + sign * counts[w];
                if (sign > 0) (wordsWithPair.TryGetValue(pair, out var set) ? set : wordsWithPair[pair] = []).Add(w);
                changed.Add(pair);
            }
        }
        void Enqueue()
        {
            foreach (var pair in changed)
                if (pairCounts[pair] > 0) queue.Enqueue(pair, (pairCounts[pair], pair.Item1, pair.Item2));
            changed.Clear();
        }
        for (int w = 0; w < words.Length; w++) Count(w, +1);
        Enqueue();

        var merges = new List<(int, int)>();
        int target = vocabularySize - 1 - 256;
        while (merges.Count < target && queue.TryDequeue(out var best, out var priority))
        {
            if (priority.Item1 != pairCounts[best]) continue;   // stale entry: the count changed since it was queued
            if (priority.Item1 < minFrequency) break;
            int id = tokens.Count;
            tokens.Add([.. tokens[best.Item1], .. tokens[best.Item2]]);
            merges.Add(best);
            foreach (int w in wordsWithPair[best].ToArray())
            {
                Count(w, -1);
                var symbols = words[w];
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == best.Item1 && symbols[i + 1] == best.Item2) { symbols[i] = id; symbols.RemoveAt(i + 1); }
                Count(w, +1);
            }
            wordsWithPair.Remove(best);
            Enqueue();
            progress?.Report((double)merges.Count / target);
        }
        return new TrainedBpe(tokens, merges);
    }
}

/// <summary>A trained byte-level BPE: token byte strings (id = index) and merges in rank order; EOT follows the last token.</summary>
public sealed record TrainedBpe(IReadOnlyList<byte[]> Tokens, IReadOnlyList<(int Left, int Right)> Merges)
{
    public int EndOfTextId => Tokens.Count;
    public int VocabularySize => Tokens.Count + 1;

    /// <summary>The Hugging Face tokenizer.json (ByteLevel pre-tokenizer and decoder, BPE model, EOT as an added special token).</summary>
    public string ToTokenizerJson()
    {
        var vocab = new JsonObject();
        for (int i = 0; i < Tokens.Count; i++) vocab[ByteLevelText(Tokens[i])] = i;
        var merges = new JsonArray(Merges.Select(m =>
            (JsonNode)new JsonArray(ByteLevelText(Tokens[m.Left]), ByteLevelText(Tokens[m.Right]))).ToArray());
        JsonObject ByteLevel(bool prefixSpace) =>
            new() { ["type"] = "ByteLevel", ["add_prefix_space"] = prefixSpace, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = EndOfTextId, ["content"] = BpeTrainer.EndOfText, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(false),
            ["post_processor"] = null,
            ["decoder"] = ByteLevel(true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        return root.ToJsonString(new()
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, ToTokenizerJson());

    /// <summary>GPT-2's byte → printable character map: printable Latin-1 bytes stand for themselves, the rest shift to
    /// U+0100….</summary>
    internal static readonly char[] ByteChars = BuildByteChars();

    static char[] BuildByteChars()
    {
        var chars = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            chars[b] = printable ? (char)b : (char)(256 + shifted++);
        }
        return chars;
    }

    static string ByteLevelText(byte[] bytes) => new(bytes.Select(b => ByteChars[b]).ToArray());
}
