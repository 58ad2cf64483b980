using System.CommandLine;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Data;
using Wren.Inference;
using Wren.Models;
using Wren.Tokenization;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary>
/// <c>wren quickstart</c>: the whole path on real text — fetch a public-domain English corpus from Debian's packages
/// (or use <c>--corpus</c>), train a byte-level BPE tokenizer, prepare token shards, train a small Nemotron-Flash-pattern
/// hybrid for a few minutes, check prefill+decode against the full forward, and stream generated text.
/// Re-running reuses what exists and resumes an interrupted training.
/// </summary>
internal static class QuickstartCommand
{
    public static Command Create()
    {
        var command = new Command("quickstart", "Train a small hybrid on real English text and generate from it (corpus → tokenizer → data → train → generate)");
        var corpus = new Option<string[]>("--corpus") { Description = "your own text/JSONL/Parquet files or folders (default: Debian's jargon-text)" };
        var config = new Option<string>("--config") { Description = "model preset or config.json", DefaultValueFactory = _ => "flash-quick" };
        var output = new Option<string>("--out") { Description = "working folder", DefaultValueFactory = _ => Path.Combine(".wren", "quickstart") };
        var steps = new Option<long>("--steps") { Description = "training steps (8 × 256 tokens each)", DefaultValueFactory = _ => 300 };
        var vocab = new Option<int>("--vocab-size") { Description = "tokenizer vocabulary", DefaultValueFactory = _ => 4096 };
        var prompt = new Option<string>("--prompt") { Description = "generation prompt", DefaultValueFactory = _ => "The hacker" };
        foreach (var o in new Option[] { corpus, config, output, steps, vocab, prompt }) command.Add(o);
        CommonOptions.MustBePositive(steps);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            var device = common.Initialize(result);
            var console = AnsiConsole.Console;
            string folder = result.GetValue(output)!;
            Directory.CreateDirectory(folder);

            console.MarkupLine("[bold]1. corpus[/]");
            var inputs = result.GetValue(corpus) is { Length: > 0 } own ? own
                : [DebianCorpus.Fetch(DebianCorpus.Jargon, message => console.WriteLine("   " + message))];
            console.WriteLine($"   {string.Join(", ", inputs)} ({CorpusReader.Files(inputs).Sum(f => new FileInfo(f).Length) / 1e6:F1} MB)");

            console.MarkupLine("[bold]2. tokenizer[/] byte-level BPE");
            string tokenizerPath = Path.Combine(folder, "tokenizer.json");
            string stamp = Path.Combine(folder, "tokenizer.inputs");
            string inputKey = string.Join("\n", inputs.Select(Path.GetFullPath)) + $"\nvocab={result.GetValue(vocab)}";
            if (!File.Exists(tokenizerPath) || !File.Exists(stamp) || File.ReadAllText(stamp) != inputKey)
            {
                DataCommands.TrainTokenizer(inputs, new CorpusFormat(), result.GetValue(vocab), 2, tokenizerPath, cancellation);
                Checkpoint.WriteAtomically(stamp, inputKey);
            }
            else console.WriteLine($"   reusing {tokenizerPath}");
            var tokenizer = TokenizerSource.Open(tokenizerPath);

            console.MarkupLine("[bold]3. data[/] token shards + validation split");
            string dataFolder = Path.Combine(folder, "data");
            bool prepared = File.Exists(Path.Combine(dataFolder, DataManifest.FileName)) && DataManifest.Load(dataFolder).Tokenizer == tokenizer.Identity;
            if (!prepared)   // the quick start's own folder: a new tokenizer replaces its data
                DataCommands.Prepare(inputs, dataFolder, tokenizer, new PrepareOptions { Overwrite = true }, cancellation);
            using var dataset = TokenDataset.Open(dataFolder);
            DataCommands.Report(dataset.Manifest, dataFolder);

            console.MarkupLine("[bold]4. train[/]");
            string run = Path.Combine(folder, "run");
            var cfg = TrainCommand.ForDataset(HybridConfig.Load(result.GetValue(config)!), dataset.Manifest);
            var options = new TrainingOptions { Steps = result.GetValue(steps), LearningRate = 2e-3, WarmupSteps = 30, EvalEvery = 50, CheckpointEvery = 50 };
            bool resume = TrainingCheckpoint.List(run).Count > 0;
            if (resume) cfg = HybridConfig.Load(Path.Combine(run, Trainer.ConfigFile));
            var trained = TrainCommand.Run(cfg, dataset, options, run, resume, cancellation);

            console.MarkupLine("[bold]5. check[/] prefill + token-by-token decode against the full forward");
            using var model = Checkpoint.Load(trained.ModelFolder, device: device);
            var generator = new TextGenerator(model, TokenizerLoader.ForModel(trained.ModelFolder, model.Config));
            var ids = tokenizer.Tokenizer.Encode(result.GetValue(prompt)! + " is a word that");
            using (var tokens = TorchSharp.torch.tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count], device: device))
            using (var full = Scoring.Logits(model, tokens))
            using (var stepped = Scoring.Logits(model, tokens, prefill: 2))
            {
                double diff = (full - stepped).abs().max().item<float>();
                console.WriteLine($"   max |full − prefill/decode| = {diff:E2}");
                if (diff > 1e-3 * Math.Max(1, full.abs().max().item<float>())) throw new WrenException("prefill + decode disagrees with the full forward");
            }

            console.MarkupLine("[bold]6. generate[/]");
            string text = result.GetValue(prompt)!;
            console.Write(text);
            foreach (var token in generator.Generate([text], new SamplingOptions { MaxNewTokens = 80, Temperature = 0.7, TopK = 40, Seed = 1, StopTokenIds = [tokenizer.Identity.EndOfTextId] }))
                console.Write(token.Text);
            console.WriteLine();
            var stats = generator.LastStats;
            console.WriteLine($"   {stats.GeneratedTokens} tokens at {stats.DecodeTokensPerSecond:F0} tokens/s");
            console.MarkupLine($"[green]quickstart ok[/] — model in [bold]{Markup.Escape(trained.ModelFolder)}[/]; " +
                               $"next: [bold]wren generate --model {Markup.Escape(trained.ModelFolder)} --prompt \"...\"[/], or your own data with --corpus");
            return Task.FromResult(0);
        });
        return command;
    }
}
