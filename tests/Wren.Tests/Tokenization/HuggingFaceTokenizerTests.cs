using System.Text.Json;
using Wren.Tokenization;

namespace Wren.Tests.Tokenization;

/// <summary>
/// tokenizer.json files of the common families give exactly the ids of Hugging Face's own tokenizers library
/// (tests/fixtures/tokenizers/README.md: generated once by its npm package, stored as data).
/// </summary>
public class HuggingFaceTokenizerTests
{
    static string Family(string name) => Path.Combine(TestSupport.Fixtures, "tokenizers", name);

    sealed record Expected(string Text, int[] Ids, string Decoded, int[] SpecialParsedIds, int[] AddSpecialTokensIds);

    static List<Expected> ExpectedIds(string folder) =>
        JsonSerializer.Deserialize<List<Expected>>(File.ReadAllText(Path.Combine(folder, "expected_ids.json")),
            new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower })!;

    [Theory]
    [InlineData("byte-level")]
    [InlineData("split-regex-isolated")]
    [InlineData("split-space-removed")]
    [InlineData("split-space-mergedwithprevious")]
    [InlineData("split-space-mergedwithnext")]
    [InlineData("split-space-contiguous")]
    [InlineData("sentencepiece-byte-fallback")]
    [InlineData("unigram-metaspace")]
    [InlineData("wordpiece-bert")]
    public void Each_family_encodes_and_decodes_as_hugging_face_does(string family)
    {
        using var tokenizer = HuggingFaceTokenizer.Load(Path.Combine(Family(family), "tokenizer.json"));
        foreach (var expected in ExpectedIds(Family(family)))
        {
            Assert.Equal(expected.Ids, tokenizer.Encode(expected.Text));
            Assert.Equal(expected.Decoded, tokenizer.Decode(expected.Ids));
            // Decoding gives the text back except where Hugging Face's own decode drops information: removed spaces,
            // BERT's lower-casing, Metaspace's leading space.
            bool lossless = family is not ("split-space-removed" or "wordpiece-bert")
                            && !(family == "unigram-metaspace" && expected.Text.StartsWith(' '));
            if (lossless) Assert.Equal(expected.Text, expected.Decoded);
        }
    }

    [Fact]
    public void Special_token_strings_in_text_are_text()
    {
        foreach (var family in new[] { "byte-level", "sentencepiece-byte-fallback", "unigram-metaspace", "wordpiece-bert" })
        {
            using var tokenizer = HuggingFaceTokenizer.Load(Path.Combine(Family(family), "tokenizer.json"));
            var specials = new[] { tokenizer.EndOfTextId, tokenizer.BeginOfTextId }.OfType<int>().ToList();
            foreach (var expected in ExpectedIds(Family(family)).Where(e => e.Text.Contains('<') || e.Text.Contains('[')))
            {
                var ids = tokenizer.Encode(expected.Text);
                Assert.DoesNotContain(ids, specials.Contains);
                if (family is "byte-level" or "sentencepiece-byte-fallback" && expected.Text.Contains("<|endoftext|>"))
                    Assert.NotEqual(expected.SpecialParsedIds, ids);   // parsing them would have given control tokens
            }
        }
    }

    [Fact]
    public void Tokenizer_config_names_bos_eos_and_prompts_start_with_bos_as_the_template_says()
    {
        string folder = Family("sentencepiece-byte-fallback");
        using var tokenizer = HuggingFaceTokenizer.Load(Path.Combine(folder, "tokenizer.json"));
        Assert.Equal(1, tokenizer.BeginOfTextId);
        Assert.Equal(2, tokenizer.EndOfTextId);   // eos_token "</s>" of tokenizer_config.json, not <|endoftext|>
        Assert.True(tokenizer.AddsBeginOfText);
        foreach (var expected in ExpectedIds(folder).Where(e => !e.Text.Contains('<')))
            Assert.Equal(expected.AddSpecialTokensIds, ((ITextTokenizer)tokenizer).EncodePrompt(expected.Text));

        using var byteLevel = HuggingFaceTokenizer.Load(Path.Combine(Family("byte-level"), "tokenizer.json"));
        Assert.False(byteLevel.AddsBeginOfText);
        Assert.Equal(699, byteLevel.EndOfTextId);
    }

    [Theory]
    [InlineData("tokenizer-byte-fallback")]
    [InlineData("tokenizer-merges-with-spaces")]
    public void Failing_cases_give_hugging_faces_ids_and_round_trip(string name)
    {
        using var tokenizer = HuggingFaceTokenizer.Load(Path.Combine(TestSupport.Case(name), "tokenizer.json"));
        string file = Path.Combine(TestSupport.Case(name), "expected_ids.json");
        var expected = JsonSerializer.Deserialize<Dictionary<string, int[]>>(File.ReadAllText(file))!;
        foreach (var (text, ids) in expected)
        {
            Assert.Equal(ids, tokenizer.Encode(text));
            // Without a decoder Hugging Face joins tokens with spaces, so only the byte-fallback case gives the text back.
            if (name == "tokenizer-byte-fallback") Assert.Equal(text, tokenizer.Decode(ids));
        }
        if (name == "tokenizer-merges-with-spaces") Assert.Equal("a b c", tokenizer.Decode([6, 3]));   // Hugging Face's decode
    }

    [Fact]
    public void A_file_the_library_cannot_load_is_a_one_line_error()
    {
        string folder = TestSupport.TempDir();
        string path = Path.Combine(folder, "tokenizer.json");
        File.WriteAllText(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c d\"]}}");
        var error = Assert.Throws<WrenException>(() => HuggingFaceTokenizer.Load(path));
        Assert.Contains(path, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Tiktoken_reads_special_token_strings_as_text()
    {
        var tokenizer = TokenizerLoader.Tiktoken("cl100k_base");
        const string text = "a literal <|endoftext|> in text";
        var ids = tokenizer.Encode(text);
        Assert.DoesNotContain(tokenizer.EndOfTextId!.Value, ids);
        Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Theory]
    [InlineData("cl100k_base")]
    [InlineData("o200k_base")]
    public void Tiktoken_text_encoding_matches_the_librarys_own_on_text_without_special_strings(string encoding)
    {
        var standard = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForEncoding(encoding);
        var tokenizer = TokenizerLoader.Tiktoken(encoding);
        var random = new Random(3);
        var alphabet = "aZé日本🙂𝔘 \t\n\r'sdmtllvere123456789.,;:!?/<|>()[]-_ÉÀßØ\u0301\u00a0".EnumerateRunes()
            .Select(r => r.ToString()).ToArray();
        string RandomText() => string.Concat(Enumerable.Range(0, random.Next(1, 60)).Select(_ => alphabet[random.Next(alphabet.Length)]));
        var texts = Enumerable.Range(0, 300).Select(_ => RandomText())
            .Append(File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "README.md")).Replace("<|endoftext|>", ""));
        foreach (var text in texts) Assert.Equal(standard.EncodeToIds(text), tokenizer.Encode(text));
    }
}
