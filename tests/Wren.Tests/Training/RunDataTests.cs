using Wren.Data;
using Wren.Training;

namespace Wren.Tests.Training;

/// <summary>A run continues only on data made with its own tokenizer; a dataset is not silently replaced by another.</summary>
[Collection("cli")]
public class RunDataTests
{
    static string NanData => Path.Combine(TestSupport.Case("nan-checkpoint"), "data");

    /// <summary>A dataset of the test corpus made with a freshly trained 300-token tokenizer (not the run's).</summary>
    static string OtherData(string root)
    {
        var tokenizer = Wren.Tests.Data.Corpus.Tokenizer(root);
        string jsonl = Path.Combine(root, "corpus.jsonl");
        var documents = Wren.Tests.Data.Corpus.Documents(200);
        File.WriteAllLines(jsonl, documents.Select(t => System.Text.Json.JsonSerializer.Serialize(new { text = t })));
        string folder = Path.Combine(root, "data");
        DataPreparer.Prepare([jsonl], folder, tokenizer, new PrepareOptions { ValidationFraction = 0.1 });
        return folder;
    }

    [Fact]
    public void Resume_refuses_data_prepared_with_another_tokenizer()
    {
        string root = TestSupport.TempDir(), run = Path.Combine(root, "run");
        string config = Path.Combine(TestSupport.Case("nan-checkpoint"), "config.json");
        var started = TestSupport.Cli("train", "--config", config, "--data", NanData, "--out", run, "--steps", "2", "--batch-size", "2",
                                      "--seq-len", "32", "--checkpoint-every", "1");
        Assert.True(started.Code == 0, started.Error);
        string other = OtherData(root);
        var resumed = TestSupport.Cli("train", "--data", other, "--out", run, "--resume", "--steps", "3");
        Assert.Equal(2, resumed.Code);
        Assert.Contains("was trained on data tokenized by", resumed.Error);

        // A run from before the record: the tokenizer.json kept in its checkpoint decides.
        File.Delete(Path.Combine(run, Trainer.DataTokenizerFile));
        Assert.Equal(2, TestSupport.Cli("train", "--data", other, "--out", run, "--resume", "--steps", "3").Code);
        var same = TestSupport.Cli("train", "--data", NanData, "--out", run, "--resume", "--steps", "3");
        Assert.True(same.Code == 0, same.Error);
    }

    [Fact]
    public void Data_prepare_replaces_a_different_dataset_only_when_asked()
    {
        string root = TestSupport.TempDir(), output = Path.Combine(root, "data");
        string docs = Path.Combine(TestSupport.Case("special-token-text"), "docs.jsonl");
        string Tokenizer(string family) => Path.Combine(TestSupport.Fixtures, "tokenizers", family);
        (int Code, string Error) Prepare(string input, string tokenizer, params string[] extra) =>
            TestSupport.Cli(["data", "prepare", input, "--tokenizer", tokenizer, "--out", output, "--validation-fraction", "0", .. extra]);

        Assert.Equal(0, Prepare(docs, Tokenizer("byte-level")).Code);
        Assert.Equal(0, Prepare(docs, Tokenizer("byte-level")).Code);   // the same preparation again
        var another = Prepare(docs, Tokenizer("split-regex-isolated"));
        Assert.Equal(2, another.Code);
        Assert.Contains("another tokenizer", another.Error);
        Assert.Contains("--overwrite", another.Error);
        string otherInput = Path.Combine(root, "more.jsonl");
        File.Copy(docs, otherInput);
        Assert.Contains("other inputs", Prepare(otherInput, Tokenizer("byte-level")).Error);
        Assert.Equal(0, Prepare(docs, Tokenizer("split-regex-isolated"), "--overwrite").Code);
        Assert.Equal("split-regex-isolated", DataManifest.Load(output).Tokenizer.Name);
    }
}
