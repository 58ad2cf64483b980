using System.Text;
using Wren.Tests.Data;
using Wren.Tokenization;

namespace Wren.Tests.Tokenization;

[Collection("cli")]
public class TokenizerTrainingTests
{
    [Fact]
    public void Trained_tokenizer_saves_loads_and_round_trips_arbitrary_unicode()
    {
        string folder = TestSupport.TempDir();
        var handle = Corpus.Tokenizer(folder, vocabSize: 300);
        var tokenizer = handle.Tokenizer;
        Assert.Equal(300, tokenizer.VocabularySize);
        Assert.Equal(299, tokenizer.EndOfTextId);

        // Frequent words became single tokens; the merges are used by the loaded tokenizer.
        Assert.Single(tokenizer.Encode(" the"));
        string document = Corpus.Documents(1, seed: 9)[0];
        Assert.True(tokenizer.Encode(document).Count < 0.6 * System.Text.Encoding.UTF8.GetByteCount(document));

        var random = new Random(7);
        var samples = new List<string>
        {
            "", " ", "\n\n\t", "héllo wörld", "日本語のテキスト", "emoji 👩‍👩‍👧 and 🐦", "Ã©Ã¨ mojibake",
            "\u00ff\u00fe\u0000\u0001 bytes",
            "\uFFFD replacement", "e\u0301 combining", "  leading and trailing  ", "<|endoftext|>? not in plain text",
        };
        for (int i = 0; i < 50; i++)
        {
            var builder = new StringBuilder();
            for (int c = 0; c < 40; c++)
            {
                int codePoint = random.Next(4) switch
                {
                    0 => random.Next(0x20, 0x7F),
                    1 => random.Next(0x80, 0x800),
                    2 => random.Next(0x800, 0xD800),
                    _ => random.Next(0x10000, 0x10FFFF),
                };
                builder.Append(char.ConvertFromUtf32(codePoint));
            }
            samples.Add(builder.ToString());
        }
        foreach (var text in samples.Where(s => !s.Contains("<|endoftext|>")))
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [Fact]
    public void Letters_beyond_the_bmp_join_words_as_in_hugging_faces_pre_tokenizer()
    {
        // HF's ByteLevel regex matches code points: " x𝔘𝔫" is one word (a letter run), "𝔘𝔫!" two ("𝔘𝔫", "!").
        var trainer = new BpeTrainer();
        for (int i = 0; i < 50; i++) trainer.Add(" x𝔘𝔫 x𝔘𝔫 𝔘𝔫! 𝔘𝔫!");
        string path = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        trainer.Train(300).Save(path);
        var tokenizer = TokenizerLoader.LoadHuggingFace(path);
        Assert.Single(tokenizer.Encode(" x𝔘𝔫"));          // merged as one word: the trainer saw one word
        Assert.Equal(2, tokenizer.Encode(" 𝔘𝔫!").Count);   // " 𝔘𝔫" and "!" never merge across words
    }

    [Fact]
    public void Training_is_deterministic_and_checks_its_inputs()
    {
        string Train()
        {
            var trainer = new BpeTrainer();
            foreach (var text in Corpus.Documents(50)) trainer.Add(text);
            return trainer.Train(280).ToTokenizerJson();
        }
        Assert.Equal(Train(), Train());
        Assert.Contains("too", Assert.Throws<WrenException>(() => new BpeTrainer().Train(256)).Message.Replace("at least", "too"));
        Assert.Contains("empty", Assert.Throws<WrenException>(() => new BpeTrainer().Train(1000)).Message);
    }

    [Fact]
    public void Cli_trains_a_tokenizer_that_tokenizer_json_readers_load()
    {
        string folder = TestSupport.TempDir();
        string corpus = Path.Combine(folder, "corpus.txt");
        File.WriteAllLines(corpus, Corpus.Documents(100));
        string output = Path.Combine(folder, "tok", "tokenizer.json");
        Assert.Equal(0, TestSupport.Cli("tokenizer", "train", corpus, "--vocab-size", "320", "--out", output).Code);
        var loaded = TokenizerLoader.LoadHuggingFace(output);
        Assert.Equal(320, loaded.VocabularySize);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(output))!;
        Assert.Equal("BPE", (string?)json["model"]!["type"]);
        Assert.Equal("ByteLevel", (string?)json["pre_tokenizer"]!["type"]);
    }
}
