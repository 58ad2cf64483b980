using Parquet;
using Parquet.Schema;
using Wren.Data;
using Wren.Tokenization;

namespace Wren.Tests.Data;

[Collection("cli")]
public class DatasetTests
{
    [Fact]
    public void Shards_round_trip_the_corpus_with_end_of_text_between_documents()
    {
        var (folder, tokenizer) = Corpus.Prepared(documents: 300, validation: 0.1, shardTokens: 2000);
        using var data = TokenDataset.Open(folder);
        var manifest = data.Manifest;
        Assert.Equal("uint16", manifest.Dtype);
        Assert.Equal(tokenizer.Identity, manifest.Tokenizer);
        Assert.True(manifest.Train.Shards.Count > 1, "small shards roll over");
        Assert.Equal(manifest.Train.Tokens, manifest.Train.Shards.Sum(s => s.Tokens));
        Assert.Equal(270, manifest.Train.Pieces);
        Assert.Equal(30, manifest.Validation.Pieces);
        Assert.Equal(300, manifest.Sources.Single().Documents);

        // Every 10th document (from the 6th) went to validation; both splits decode back to their documents.
        var documents = Corpus.Documents(300, seed: 1);
        string Decode(TokenSplit split)
        {
            var ids = new long[split.Tokens];
            split.Read(0, ids);   // reads across shard boundaries
            Assert.Equal(tokenizer.Identity.EndOfTextId, ids[^1]);
            return tokenizer.Tokenizer.Decode(ids.Select(i => (int)i).Where(i => i != tokenizer.Identity.EndOfTextId));
        }
        Assert.Equal(string.Concat(documents.Where((_, i) => i % 10 != 5)), Decode(data.Train));
        Assert.Equal(string.Concat(documents.Where((_, i) => i % 10 == 5)), Decode(data.Validation));
        Assert.Equal(manifest.Train.Tokens + manifest.Validation.Tokens,
                     documents.Sum(d => tokenizer.Tokenizer.Encode(d).Count + 1));
    }

    [Fact]
    public void Text_folders_gzip_and_parquet_are_read()
    {
        string root = TestSupport.TempDir();
        var tokenizer = Corpus.Tokenizer(root);
        string corpus = Path.Combine(root, "corpus");
        Directory.CreateDirectory(Path.Combine(corpus, "nested"));
        var docs = Corpus.Documents(40);
        File.WriteAllText(Path.Combine(corpus, "a.txt"), string.Join("\n", docs.Take(20)));
        using (var gz = new System.IO.Compression.GZipStream(File.Create(Path.Combine(corpus, "nested", "b.txt.gz")),
                                                             System.IO.Compression.CompressionLevel.Fastest))
            gz.Write(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", docs.Skip(20))));
        File.WriteAllText(Path.Combine(corpus, "ignored.bin"), "not text");
        string parquet = Path.Combine(root, "rows.parquet");
        WriteParquet(parquet, "content", docs.Take(10).ToArray());

        string output = Path.Combine(root, "data");
        var options = new PrepareOptions { ValidationFraction = 0.2, Format = new CorpusFormat(ParquetColumn: "content") };
        var manifest = DataPreparer.Prepare([corpus, parquet], output, tokenizer, options);
        Assert.Equal(3, manifest.Sources.Count);
        Assert.Equal(10, manifest.Sources[2].Documents);
        Assert.Equal(1, manifest.Sources[1].Documents);   // one text file = one document
        long expected = tokenizer.Tokenizer.Encode(string.Join("\n", docs.Take(20)) + "\n").Count + 1
                      + tokenizer.Tokenizer.Encode(string.Join("\n", docs.Skip(20)) + "\n").Count + 1
                      + docs.Take(10).Sum(d => tokenizer.Tokenizer.Encode(d).Count + 1);
        Assert.Equal(expected, manifest.Train.Tokens + manifest.Validation.Tokens);

        var (code, error) = TestSupport.Cli("data", "prepare", parquet, "--tokenizer", Path.Combine(root, "tokenizer.json"),
                                            "--out", Path.Combine(root, "p2"));
        Assert.Equal(2, code);
        Assert.Contains("no column \"text\" (columns: content)", error);
    }

    internal static void WriteParquet(string path, string column, string[] values)
    {
        var field = new DataField<string>(column);
        using var stream = File.Create(path);
        var writer = ParquetWriter.CreateAsync(new ParquetSchema(field), stream).GetAwaiter().GetResult();
        using (var group = writer.CreateRowGroup())
            group.WriteAsync(field, values).GetAwaiter().GetResult();
        writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Fact]
    public void Tiktoken_datasets_use_uint32_and_name_their_encoding()
    {
        string root = TestSupport.TempDir();
        string corpus = Path.Combine(root, "c.jsonl");
        File.WriteAllLines(corpus, Corpus.Documents(20).Select(t => System.Text.Json.JsonSerializer.Serialize(new { text = t })));
        var tokenizer = TokenizerSource.Open("cl100k_base");
        var manifest = DataPreparer.Prepare([corpus], Path.Combine(root, "data"), tokenizer,
                                            new PrepareOptions { ValidationFraction = 0.1 });
        Assert.Equal("uint32", manifest.Dtype);
        Assert.Equal("tiktoken", manifest.Tokenizer.Kind);
        using var data = TokenDataset.Open(Path.Combine(root, "data"));
        Assert.Equal(tokenizer.Identity, data.OpenTokenizer().Identity);
        var ids = new long[data.Train.Tokens];
        data.Train.Read(0, ids);
        Assert.Contains(ids, id => id > 65535);   // the end-of-text id of cl100k is 100257: it needs 32 bits
    }

    [Fact]
    public void Sampler_is_deterministic_and_batches_are_independent()
    {
        var (folder, _) = Corpus.Prepared();
        using var data = TokenDataset.Open(folder);
        var a = new WindowSampler(data.Train, 4, 16, seed: 3);
        var b = new WindowSampler(data.Train, 4, 16, seed: 3);
        var c = new WindowSampler(data.Train, 4, 16, seed: 4);
        Assert.Equal(a.Batch(5), b.Batch(5));
        Assert.NotEqual(a.Batch(5), c.Batch(5));
        // Consecutive batches draw fresh windows (a generator whose streams overlap would shift the same rows along).
        int shifted = 0;
        for (int i = 0; i < 20; i++)
        {
            var (now, next) = (a.Batch(i).Chunk(17).ToList(), a.Batch(i + 1).Chunk(17).ToList());
            shifted += Enumerable.Range(0, 3).Count(r => next[r].SequenceEqual(now[r + 1]));
        }
        Assert.True(shifted < 20, $"{shifted} of 60 rows repeat the previous batch shifted by one");
        var batch = a.Batch(0);
        Assert.All(batch, t => Assert.InRange(t, 0, 299));
    }

    [Fact]
    public void Corrupt_truncated_and_mismatched_data_gives_clear_errors()
    {
        var (folder, _) = Corpus.Prepared();
        var manifest = DataManifest.Load(folder);
        string shard = Path.Combine(folder, manifest.Train.Shards[0].File);
        var bytes = File.ReadAllBytes(shard);

        bytes[10] ^= 0xFF;
        File.WriteAllBytes(shard, bytes);
        Assert.Contains("SHA-256", Assert.Throws<WrenException>(() => TokenDataset.Open(folder)).Message);

        File.WriteAllBytes(shard, bytes[..^3]);
        Assert.Contains("truncated", Assert.Throws<WrenException>(() => TokenDataset.Open(folder)).Message);

        var other = Corpus.Tokenizer(TestSupport.TempDir(), vocabSize: 310);
        Assert.Contains("is not the tokenizer the dataset was prepared with",
                        Assert.Throws<WrenException>(() => manifest.EnsureTokenizer(other.Identity, "tokenizer")).Message);

        File.WriteAllText(Path.Combine(folder, DataManifest.FileName), "{\"format\": 3");
        Assert.Contains("invalid manifest", Assert.Throws<WrenException>(() => TokenDataset.Open(folder)).Message);
        Assert.Contains("no manifest.json", Assert.Throws<WrenException>(() => TokenDataset.Open(TestSupport.TempDir())).Message);
    }

    [Fact]
    public void Bad_corpora_fail_with_clear_messages_from_the_cli()
    {
        string root = TestSupport.TempDir();
        Corpus.Tokenizer(root);
        string tokenizer = Path.Combine(root, "tokenizer.json");
        string empty = Path.Combine(root, "empty.txt");
        File.WriteAllText(empty, "");
        var (code, error) = TestSupport.Cli("data", "prepare", empty, "--tokenizer", tokenizer, "--out", Path.Combine(root, "d1"));
        Assert.Equal(2, code);
        Assert.Contains("empty", error);

        string jsonl = Path.Combine(root, "c.jsonl");
        File.WriteAllLines(jsonl, ["{\"body\": \"hello\", \"id\": 1}"]);
        (code, error) = TestSupport.Cli("data", "prepare", jsonl, "--tokenizer", tokenizer, "--out", Path.Combine(root, "d2"));
        Assert.Equal(2, code);
        Assert.Contains("no field \"text\" (fields: body, id)", error);

        File.WriteAllLines(jsonl, ["{\"text\": \"hello\"", "x"]);
        (code, error) = TestSupport.Cli("data", "prepare", jsonl, "--tokenizer", tokenizer, "--out", Path.Combine(root, "d3"));
        Assert.Equal(2, code);
        Assert.Contains("c.jsonl:1: invalid JSON", error);

        (code, error) = TestSupport.Cli("data", "prepare", Path.Combine(root, "missing.txt"), "--tokenizer", tokenizer,
                                        "--out", Path.Combine(root, "d4"));
        Assert.Equal(2, code);
        Assert.Contains("not found", error);

        string small = Path.Combine(root, "small.txt");
        File.WriteAllText(small, "one short line\n");
        (code, error) = TestSupport.Cli("data", "prepare", small, "--tokenizer", tokenizer, "--out", Path.Combine(root, "d5"));
        Assert.Equal(2, code);
        Assert.Contains("too few for a validation share", error);
    }
}
