using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Tokenization;

namespace Wren.Cli.Commands;

/// <summary>Data preparation and tokenizer training with live progress bars (used by <c>wren data</c>, <c>wren tokenizer</c> and the quick
/// start).</summary>
internal static class DataConsole
{
    /// <summary>Prepares with a progress bar (bytes read, tokens/s).</summary>
    public static DataManifest Prepare(IEnumerable<string> inputs, string output, TokenizerHandle tokenizer, PrepareOptions options,
                                       CancellationToken cancellation)
    {
        DataManifest? manifest = null;
        AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                                                        new RemainingTimeColumn())
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
        AnsiConsole.MarkupLine($"{Markup.Escape(folder)}: [bold]{manifest.Train.Tokens:N0}[/] train and {manifest.Validation.Tokens:N0} " +
                               $"validation tokens " +
                               $"({manifest.Dtype}, {manifest.Train.Shards.Count + manifest.Validation.Shards.Count} shard(s)), " +
                               $"tokenizer {Markup.Escape(manifest.Tokenizer.Name)} " +
                               $"({manifest.Tokenizer.VocabularySize} tokens)");

    /// <summary>Counts words over the corpus, learns merges, saves tokenizer.json; with progress.</summary>
    public static TrainedBpe TrainTokenizer(IEnumerable<string> inputs, CorpusFormat format, int vocabSize, int minFrequency,
                                            string output, CancellationToken cancellation)
    {
        var trainer = new BpeTrainer();
        TrainedBpe? trained = null;
        var files = CorpusReader.Files(inputs);
        AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                                                        new ElapsedTimeColumn())
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
