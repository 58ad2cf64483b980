using Parquet;
using Parquet.Schema;
using Wren.Data;
using Wren.Tokenization;

namespace Wren.Tests.Data;

/// <summary>Corpus faults of tests/fixtures/cases: text that looks like a control token, Parquet list columns.</summary>
[Collection("cli")]
public class CorpusFaultTests
{
    static long[] AllTokens(string folder)
    {
        using var data = TokenDataset.Open(folder);
        var train = new long[data.Train.Tokens];
        var validation = new long[data.Validation.Tokens];
        data.Train.Read(0, train);
        if (validation.Length > 0) data.Validation.Read(0, validation);
        return [.. train, .. validation];
    }

    [Fact]
    public void A_special_token_string_in_a_document_is_text_so_each_document_ends_once()
    {
        string dir = TestSupport.Case("special-token-text");
        string output = Path.Combine(TestSupport.TempDir(), "data");
        var result = TestSupport.Cli("data", "prepare", Path.Combine(dir, "docs.jsonl"), "--tokenizer", Path.Combine(dir, "tok"),
                                     "--out", output, "--validation-fraction", "0");
        Assert.True(result.Code == 0, result.Error);
        var tokenizer = TokenizerSource.Open(Path.Combine(dir, "tok"));
        var tokens = AllTokens(output);
        Assert.Equal(3, tokens.Count(t => t == tokenizer.Identity.EndOfTextId));   // three documents
        Assert.Equal(tokenizer.Identity.EndOfTextId, tokens[^1]);
        string text = tokenizer.Tokenizer.Decode(tokens.Select(t => (int)t));
        Assert.Contains("the marker <|endoftext|> as plain text", text);
        Assert.Contains("template: <|endoftext|><|endoftext|> and ends", text);
    }

    static void WriteListParquet(string path, string[][] rows)
    {
        var schema = new ParquetSchema(new ListField("text", new DataField<string>("element")));
        var item = (DataField)((ListField)schema.Fields[0]).Item;
        var values = rows.SelectMany(r => r).ToArray();
        var levels = rows.SelectMany(r => r.Select((_, i) => i == 0 ? 0 : 1)).ToArray();
        using var stream = File.Create(path);
        var writer = ParquetWriter.CreateAsync(schema, stream).GetAwaiter().GetResult();
        using (var group = writer.CreateRowGroup())
            group.WriteAsync(item, values, levels).GetAwaiter().GetResult();
        writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Fact]
    public void A_parquet_list_of_strings_column_is_one_document_per_row_with_items_on_lines()
    {
        string root = TestSupport.TempDir();
        var tokenizer = Corpus.Tokenizer(root);
        string[][] rows = [["first item", "second item"], ["only item"], ["a", "b", "c"]];
        string parquet = Path.Combine(root, "lists.parquet");
        WriteListParquet(parquet, rows);
        string output = Path.Combine(root, "data");
        var manifest = DataPreparer.Prepare([parquet], output, tokenizer, new PrepareOptions { ValidationFraction = 0 });
        Assert.Equal(3, manifest.Sources.Single().Documents);
        var expected = rows.SelectMany(r => tokenizer.Tokenizer.Encode(string.Join('\n', r)).Append(tokenizer.Identity.EndOfTextId))
            .Select(i => (long)i);
        Assert.Equal(expected, AllTokens(output));
    }

    [Fact]
    public void The_shared_list_column_case_prepares_and_a_nested_column_name_is_a_clear_error()
    {
        string parquet = Path.Combine(TestSupport.Case("parquet-list-column"), "list_text.parquet");
        string root = TestSupport.TempDir();
        var tokenizer = Corpus.Tokenizer(root);
        var manifest = DataPreparer.Prepare([parquet], Path.Combine(root, "data"), tokenizer,
                                            new PrepareOptions { ValidationFraction = 0 });
        Assert.True(manifest.Sources.Single().Documents > 0);
        var result = TestSupport.Cli("data", "prepare", parquet, "--tokenizer", root, "--out", Path.Combine(root, "other"),
                                     "--text-column", "element");
        Assert.Equal(2, result.Code);
        Assert.Contains("no column \"element\"", result.Error);
    }
}
