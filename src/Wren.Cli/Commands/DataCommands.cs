using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Tokenization;

namespace Wren.Cli.Commands;

/// <summary><c>wren data prepare</c> and <c>wren tokenizer train</c>: corpus → tokenizer → token shards.</summary>
internal static class DataCommands
{
    public static Command CreateData()
    {
        var command = new Command("data", "Prepare corpora for training");
        var prepare = new Command("prepare",
                                  "Tokenize text/JSONL/Parquet files or folders into shards with a manifest and a validation split");
        var inputs = new Argument<string[]>("inputs")
        {
            Description = "files or folders (.txt/.md/.jsonl/.parquet, optionally .gz)",
            Arity = ArgumentArity.OneOrMore,
        };
        var output = new Option<string>("--out") { Description = "dataset folder", Required = true };
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "tokenizer.json (or its folder), cl100k_base or o200k_base",
            Required = true,
        };
        var field = new Option<string>("--text-field") { Description = "JSONL field holding the text", DefaultValueFactory = _ => "text" };
        var column = new Option<string>("--text-column")
        {
            Description = "Parquet column holding the text",
            DefaultValueFactory = _ => "text",
        };
        var validation = new Option<double>("--validation-fraction")
        {
            Description = "share of pieces held out for validation",
            DefaultValueFactory = _ => 0.02,
        };
        var shard = new Option<long>("--shard-tokens") { Description = "tokens per shard file", DefaultValueFactory = _ => 100_000_000 };
        var overwrite = new Option<bool>("--overwrite") { Description = "replace a dataset made with another tokenizer or inputs" };
        foreach (var o in new Option[] { output, tokenizer, field, column, validation, shard, overwrite }) prepare.Add(o);
        CommonOptions.MustBePositive(shard);
        prepare.Add(inputs);
        prepare.SetAction((result, cancellation) =>
        {
            var handle = TokenizerSource.Open(result.GetValue(tokenizer)!);
            var options = new PrepareOptions
            {
                Format = new CorpusFormat(result.GetValue(field)!, result.GetValue(column)!),
                ValidationFraction = result.GetValue(validation),
                ShardTokens = result.GetValue(shard),
                Overwrite = result.GetValue(overwrite),
            };
            var manifest = DataConsole.Prepare(result.GetValue(inputs)!, result.GetValue(output)!, handle, options, cancellation);
            DataConsole.Report(manifest, result.GetValue(output)!);
            return Task.FromResult(0);
        });
        command.Add(prepare);
        return command;
    }

    public static Command CreateTokenizer()
    {
        var command = new Command("tokenizer", "Train tokenizers");
        var train = new Command("train", "Train a byte-level BPE tokenizer on a corpus and save it as Hugging Face tokenizer.json");
        var inputs = new Argument<string[]>("inputs")
        {
            Description = "files or folders (.txt/.md/.jsonl/.parquet, optionally .gz)",
            Arity = ArgumentArity.OneOrMore,
        };
        var vocab = new Option<int>("--vocab-size")
        {
            Description = "tokens in all (256 bytes + merges + <|endoftext|>)",
            DefaultValueFactory = _ => 4096,
        };
        var minFrequency = new Option<int>("--min-frequency")
        {
            Description = "stop merging pairs seen fewer times",
            DefaultValueFactory = _ => 2,
        };
        var output = new Option<string>("--out") { Description = "tokenizer.json path", Required = true };
        var field = new Option<string>("--text-field") { Description = "JSONL field holding the text", DefaultValueFactory = _ => "text" };
        var column = new Option<string>("--text-column")
        {
            Description = "Parquet column holding the text",
            DefaultValueFactory = _ => "text",
        };
        foreach (var o in new Option[] { vocab, minFrequency, output, field, column }) train.Add(o);
        train.Add(inputs);
        train.SetAction((result, cancellation) =>
        {
            var trained = DataConsole.TrainTokenizer(result.GetValue(inputs)!,
                                                     new CorpusFormat(result.GetValue(field)!, result.GetValue(column)!),
                                         result.GetValue(vocab), result.GetValue(minFrequency), result.GetValue(output)!, cancellation);
            AnsiConsole.MarkupLine($"{Markup.Escape(result.GetValue(output)!)}: {trained.VocabularySize} tokens ({trained.Merges.Count} " +
                                   $"merges)");
            return Task.FromResult(0);
        });
        command.Add(train);
        return command;
    }
}
