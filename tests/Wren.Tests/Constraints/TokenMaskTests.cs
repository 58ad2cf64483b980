using System.Text;
using System.Text.Json;
using Wren.Constraints;
using Wren.Tokenization;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Constraints;

/// <summary>
/// Token masks (trie walk, cached per state) against brute force over the vocabulary, for a byte-level BPE (tokens that
/// straddle grammar symbols, single-byte tokens that split UTF-8 characters) and a SentencePiece BPE with byte fallback
/// (▁ for spaces, &lt;0xNN&gt; pieces, a decoder that strips the first space).
/// </summary>
public class TokenMaskTests
{
    public static TheoryData<string> Tokenizers => new() { "byte-level", "sentencepiece-byte-fallback" };

    static ITextTokenizer Load(string family) =>
        TokenizerLoader.LoadHuggingFace(Path.Combine(Fixtures, "tokenizers", family, "tokenizer.json"));

    static bool Allowed(ulong[] mask, int id) => (mask[id >> 6] >> (id & 63) & 1) != 0;

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Token_bytes_concatenate_to_what_hugging_face_decodes(string family)
    {
        var tokenizer = Load(family);
        var bytes = tokenizer.TokenBytes!;
        foreach (var text in new[] { "Hello wörld: {\"a\": [1, 2.5]} → ≥ 日本 😀", " leading space", "tabs\tand\nnewlines" })
        {
            var ids = tokenizer.Encode(text);
            var joined = ids.SelectMany(id => bytes.Bytes[id]!).ToArray();
            if (bytes.StripsFirstSpace && joined.Length > 0 && joined[0] == ' ') joined = joined[1..];
            Assert.Equal(tokenizer.Decode(ids), Encoding.UTF8.GetString(joined));
        }
        // The fixture exercises split characters: some tokens are lone UTF-8 lead or continuation bytes.
        Assert.Contains(bytes.Bytes, b => b is [>= 0x80]);
        Assert.Null(bytes.Bytes[tokenizer.EndOfTextId!.Value]);
    }

    /// <summary>The finite language's strings cross token boundaries anywhere: inside "{\"", inside é and 日.</summary>
    static readonly string[] Language =
        ["{\"name\": \"héllo\", \"n\": 12}", "{\"name\": \"wörld €\", \"n\": 7}", "{\"name\": \"日本\"}", " é"];

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Masks_of_a_finite_language_match_the_strings_themselves(string family)
    {
        var tokenizer = Load(family);
        var vocabulary = tokenizer.TokenBytes!;
        var grammar = GbnfGrammar.Parse("root ::= " + string.Join(" | ", Language.Select(s => JsonSerializer.Serialize(s))));
        var masker = new TokenMasker(grammar, vocabulary, tokenizer.VocabularySize + 3);
        var strings = Language.Select(Encoding.UTF8.GetBytes).ToList();
        int checkedStates = 0;
        foreach (var s in strings)
            for (int cut = 0; cut <= s.Length; cut++)
            {
                var prefix = s[..cut];
                int state = masker.Run(masker.States.Start, prefix);
                if (cut == 0) state = masker.States.Start;
                var mask = masker.Mask(state, first: false);
                for (int id = 0; id < masker.VocabularySize; id++)
                {
                    var t = id < vocabulary.Bytes.Count ? vocabulary.Bytes[id] : null;
                    bool expected = t is { Length: > 0 } && strings.Any(x => x.AsSpan().StartsWith([.. prefix, .. t]));
                    Assert.True(expected == Allowed(mask, id), $"prefix '{Encoding.UTF8.GetString(prefix)}' token {id}");
                }
                checkedStates++;
            }
        Assert.True(checkedStates > 60);
        // The first token: with a decoder that strips the first space, " é" is reached by a token "▁é" or "▁" + "é".
        var first = masker.Mask(masker.States.Start, first: true);
        for (int id = 0; id < vocabulary.Bytes.Count; id++)
        {
            var t = vocabulary.Bytes[id];
            if (t is not { Length: > 0 }) { Assert.False(Allowed(first, id)); continue; }
            var shown = vocabulary.StripsFirstSpace && t[0] == ' ' ? t[1..] : t;
            bool expected = shown.Length > 0 && strings.Any(x => x.AsSpan().StartsWith(shown));
            Assert.True(expected == Allowed(first, id), $"first token {id}");
        }
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Masks_on_random_json_states_match_brute_force_over_the_vocabulary(string family)
    {
        var tokenizer = Load(family);
        var vocabulary = tokenizer.TokenBytes!;
        var schema = JsonDocument.Parse("""
            {"type":"object","properties":{"id":{"type":"string","pattern":"^[a-f0-9]{4}-é{1,2}$"},
             "tags":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":3},
             "score":{"type":"number","minimum":-5,"maximum":50},"kind":{"enum":["alpha","beta","日本"]}},
             "required":["id","kind"],"additionalProperties":false}
            """).RootElement;
        var grammar = JsonSchemaGrammar.FromSchema(schema);
        var masker = new TokenMasker(grammar, vocabulary, tokenizer.VocabularySize);
        var reference = new ParseStates(grammar);   // a separate recognizer: no shared caches
        var random = new Random(family.Length);
        int compared = 0;
        for (int walk = 0; walk < 12; walk++)
        {
            int state = masker.States.Start, referenceState = reference.Start;
            for (int step = 0; step < 40; step++)
            {
                var mask = masker.Mask(state, first: false);
                var allowed = new List<int>();
                for (int id = 0; id < vocabulary.Bytes.Count; id++)
                {
                    int s = referenceState;
                    var t = vocabulary.Bytes[id];
                    if (t is not { Length: > 0 }) s = ParseStates.Dead;
                    else
                        foreach (var b in t)
                            if ((s = reference.Advance(s, b)) == ParseStates.Dead) break;
                    bool expected = s != ParseStates.Dead;
                    Assert.True(expected == Allowed(mask, id), $"walk {walk} step {step} token {id}");
                    if (expected) allowed.Add(id);
                }
                compared++;
                if (allowed.Count == 0) break;
                int pick = allowed[random.Next(allowed.Count)];
                state = masker.Run(state, vocabulary.Bytes[pick]);
                foreach (var b in vocabulary.Bytes[pick]!) referenceState = reference.Advance(referenceState, b);
                Assert.Equal(reference.Accepts(referenceState), masker.States.Accepts(state));
            }
        }
        Assert.True(compared > 100);
    }
}
