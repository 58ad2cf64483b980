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
        var prepare = new Command("prepare", "Tokenize text/JSONL/Parquet files or folders into shards with a manifest and a validation split");
        var inputs = new Argument<string[]>("inputs") { Description = "files or folders (.txt/.md/.jsonl/.parquet, optionally .gz)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "dataset folder", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "tokenizer.json (or its folder), cl100k_base or o200k_base", Required = true };
        var field = new Option<string>("--text-field") { Description = "JSONL field holding the text", DefaultValueFactory = _ => "text" };
        var column = new Option<string>("--text-column") { Description = "Parquet column holding the text", DefaultValueFactory = _ => "text" };
        var validation = new Option<double>("--validation-fraction") { Description = "share of pieces held out for validation", DefaultValueFactory = _ => 0.02 };
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
            var manifest = Prepare(result.GetValue(inputs)!, result.GetValue(output)!, handle, options, cancellation);
            Report(manifest, result.GetValue(output)!);
            return Task.FromResult(0);
        });
        command.Add(prepare);
        return command;
    }

    /// <summary>Prepares with a progress bar (bytes read, tokens/s).</summary>
    public static DataManifest Prepare(IEnumerable<string> inputs, string output, TokenizerHandle tokenizer, PrepareOptions options, CancellationToken cancellation)
    {
        DataManifest? manifest = null;
        AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("tokenizing", maxValue: 1);
                var progress = new Callback<PrepareProgress>(p =>
                {
                    task.Value = p.TotalBytes == 0 ? 1 : (double)p.BytesRead / p.TotalBytes;
                    task.Description = $"tokenizing: {p.Tokens:N0} tokens, {p.Tokens / Math.Max(1e-9, p.Seconds):N0} tokens/s";
                });
                manifest = DataPreparer.Prepare(inputs, output, tokenizer, options, progress, cancellation);
                task.Value = 1;
            });
        return manifest!;
    }

    public static void Report(DataManifest manifest, string folder) =>
        AnsiConsole.MarkupLine($"{Markup.Escape(folder)}: [bold]{manifest.Train.Tokens:N0}[/] train and {manifest.Validation.Tokens:N0} validation tokens " +
                               $"({manifest.Dtype}, {manifest.Train.Shards.Count + manifest.Validation.Shards.Count} shard(s)), tokenizer {Markup.Escape(manifest.Tokenizer.Name)} " +
                               $"({manifest.Tokenizer.VocabularySize} tokens)");

    public static Command CreateTokenizer()
    {
        var command = new Command("tokenizer", "Train tokenizers");
        var train = new Command("train", "Train a byte-level BPE tokenizer on a corpus and save it as Hugging Face tokenizer.json");
        var inputs = new Argument<string[]>("inputs") { Description = "files or folders (.txt/.md/.jsonl/.parquet, optionally .gz)", Arity = ArgumentArity.OneOrMore };
        var vocab = new Option<int>("--vocab-size") { Description = "tokens in all (256 bytes + merges + <|endoftext|>)", DefaultValueFactory = _ => 4096 };
        var minFrequency = new Option<int>("--min-frequency") { Description = "stop merging pairs seen fewer times", DefaultValueFactory = _ => 2 };
        var output = new Option<string>("--out") { Description = "tokenizer.json path", Required = true };
        var field = new Option<string>("--text-field") { Description = "JSONL field holding the text", DefaultValueFactory = _ => "text" };
        var column = new Option<string>("--text-column") { Description = "Parquet column holding the text", DefaultValueFactory = _ => "text" };
        foreach (var o in new Option[] { vocab, minFrequency, output, field, column }) train.Add(o);
        train.Add(inputs);
        train.SetAction((result, cancellation) =>
        {
            var trained = TrainTokenizer(result.GetValue(inputs)!, new CorpusFormat(result.GetValue(field)!, result.GetValue(column)!),
                                         result.GetValue(vocab), result.GetValue(minFrequency), result.GetValue(output)!, cancellation);
            AnsiConsole.MarkupLine($"{Markup.Escape(result.GetValue(output)!)}: {trained.VocabularySize} tokens ({trained.Merges.Count} merges)");
            return Task.FromResult(0);
        });
        command.Add(train);
        return command;
    }

    /// <summary>Counts words over the corpus, learns merges, saves tokenizer.json; with progress.</summary>
    public static TrainedBpe TrainTokenizer(IEnumerable<string> inputs, CorpusFormat format, int vocabSize, int minFrequency, string output, CancellationToken cancellation)
    {
        var trainer = new BpeTrainer();
        TrainedBpe? trained = null;
        var files = CorpusReader.Files(inputs);
        AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(context =>
            {
                var reading = context.AddTask("counting words", maxValue: files.Count);
                foreach (var file in files)
                {
                    foreach (var piece in CorpusReader.Read(file, format))
                    {
                        cancellation.ThrowIfCancellationRequested();
                        trainer.Add(piece.Text);
                    }
                    reading.Increment(1);
                }
                reading.Description = $"counted {trainer.Bytes / 1e6:F1} MB";
                var merging = context.AddTask("learning merges", maxValue: 1);
                trained = trainer.Train(vocabSize, minFrequency, new Callback<double>(v => merging.Value = v));
                merging.Value = 1;
            });
        string? folder = Path.GetDirectoryName(Path.GetFullPath(output));
        if (folder is not null) Directory.CreateDirectory(folder);
        trained!.Save(output);
        return trained;
    }
}

/// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> would post them to the thread pool).</summary>
internal sealed class Callback<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
