using Wren.Data;
using Wren.Tokenization;

namespace Wren.Tests.Data;

/// <summary>Small deterministic corpora, a tokenizer trained on them and prepared datasets, for data and training tests.</summary>
internal static class Corpus
{
    static readonly string[] Sentences =
    [
        "The quick brown fox jumps over the lazy dog.",
        "A hybrid model mixes attention with linear-time mixers.",
        "Every layer costs time, so depth and width must be chosen with care.",
        "Meta tokens give the recurrent layers a learned initial state.",
        "Weight normalization keeps every row on the unit sphere.",
    ];

    /// <summary><paramref name="documents"/> documents of a few sentences each, in a fixed pseudo-random order.</summary>
    public static IReadOnlyList<string> Documents(int documents, int seed = 0)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, documents)
            .Select(d => $"Document {d}. " +
                         string.Join(" ", Enumerable.Range(0, 3 + random.Next(4)).Select(_ => Sentences[random.Next(Sentences.Length)])))
            .ToList();
    }

    /// <summary>A tokenizer.json trained on <see cref="Documents"/> (vocabulary 300), in a fresh folder.</summary>
    public static TokenizerHandle Tokenizer(string folder, int vocabSize = 300)
    {
        var trainer = new BpeTrainer();
        foreach (var text in Documents(200)) trainer.Add(text);
        string path = Path.Combine(folder, "tokenizer.json");
        trainer.Train(vocabSize).Save(path);
        return TokenizerSource.Open(path);
    }

    /// <summary>A dataset folder prepared from a JSONL file of <paramref name="documents"/> documents.</summary>
    public static (string Folder, TokenizerHandle Tokenizer) Prepared(int documents = 400, double validation = 0.1,
                                                                      long shardTokens = 100_000)
    {
        string root = TestSupport.TempDir();
        var tokenizer = Tokenizer(root);
        string jsonl = Path.Combine(root, "corpus.jsonl");
        File.WriteAllLines(jsonl, Documents(documents, seed: 1)
                                      .Select(t => System.Text.Json.JsonSerializer.Serialize(new { id = 1, text = t })));
        string folder = Path.Combine(root, "data");
        DataPreparer.Prepare([jsonl], folder, tokenizer, new PrepareOptions { ValidationFraction = validation, ShardTokens = shardTokens });
        return (folder, tokenizer);
    }
}
