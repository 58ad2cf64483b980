using System.CommandLine;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Common;
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
        var command = new Command("quickstart",
                                  "Train a small hybrid on real English text and generate from it " +
                                  "(corpus → tokenizer → data → train → generate)");
        var corpus = new Option<string[]>("--corpus")
        {
            Description = "your own text/JSONL/Parquet files or folders (default: Debian's jargon-text)",
        };
        var config = new Option<string>("--config")
        {
            Description = "model preset or config.json",
            DefaultValueFactory = _ => "flash-quick",
        };
        var output = new Option<string>("--out")
        {
            Description = "working folder",
            DefaultValueFactory = _ => Path.Combine(".wren", "quickstart"),
        };
        var steps = new Option<long>("--steps") { Description = "training steps (8 × 256 tokens each)", DefaultValueFactory = _ => 300 };
        var vocab = new Option<int>("--vocab-size") { Description = "tokenizer vocabulary", DefaultValueFactory = _ => 4096 };
        var prompt = new Option<string>("--prompt") { Description = "generation prompt", DefaultValueFactory = _ => "The hacker" };
        foreach (var o in new Option[] { corpus, config, output, steps, vocab, prompt }) command.Add(o);
        CommonOptions.MustBePositive(steps);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            var device = common.Initialize(result);
            string folder = result.GetValue(output)!;
            Directory.CreateDirectory(folder);
            Step("1. corpus", "");
            var inputs = result.GetValue(corpus) is { Length: > 0 } own ? own
                : [DebianCorpus.Fetch(DebianCorpus.Jargon, message => AnsiConsole.WriteLine("   " + message))];
            double megabytes = CorpusReader.Files(inputs).Sum(f => new FileInfo(f).Length) / 1e6;
            AnsiConsole.WriteLine($"   {string.Join(", ", inputs)} ({megabytes:F1} MB)");
            Step("2. tokenizer", "byte-level BPE");
            var tokenizer = Tokenizer(inputs, folder, result.GetValue(vocab), cancellation);
            Step("3. data", "token shards + validation split");
            using var dataset = Data(inputs, Path.Combine(folder, "data"), tokenizer, cancellation);
            Step("4. train", "");
            var options = new TrainingOptions
            {
                Steps = result.GetValue(steps), LearningRate = 2e-3, WarmupSteps = 30, EvalEvery = 50, CheckpointEvery = 50,
            };
            var trained = Train(Path.Combine(folder, "run"), dataset, HybridConfig.Load(result.GetValue(config)!), options, result,
                                cancellation);
            Step("5. check", "prefill + token-by-token decode against the full forward");
            using var model = HybridForCausalLM.FromPretrained(trained.ModelFolder, device: device);
            Check(model, tokenizer.Tokenizer.Encode(result.GetValue(prompt)! + " is a word that"));
            Step("6. generate", "");
            Generate(model, trained.ModelFolder, result.GetValue(prompt)!, tokenizer.Identity.EndOfTextId);
            return Task.FromResult(0);
        });
        return command;
    }

    static void Step(string name, string what) => AnsiConsole.MarkupLine($"[bold]{name}[/] {what}");

    /// <summary>Trains the tokenizer, or reuses the one trained on the same inputs and vocabulary size.</summary>
    static TokenizerHandle Tokenizer(string[] inputs, string folder, int vocabSize, CancellationToken cancellation)
    {
        string path = Path.Combine(folder, "tokenizer.json"), stamp = Path.Combine(folder, "tokenizer.inputs");
        string inputKey = string.Join("\n", inputs.Select(Path.GetFullPath)) + $"\nvocab={vocabSize}";
        if (!File.Exists(path) || !File.Exists(stamp) || File.ReadAllText(stamp) != inputKey)
        {
            DataConsole.TrainTokenizer(inputs, new CorpusFormat(), vocabSize, 2, path, cancellation);
            AtomicFile.WriteAllText(stamp, inputKey);
        }
        else AnsiConsole.WriteLine($"   reusing {path}");
        return TokenizerSource.Open(path);
    }

    /// <summary>Prepares the shards, or reuses those prepared with this tokenizer.</summary>
    static TokenDataset Data(string[] inputs, string folder, TokenizerHandle tokenizer, CancellationToken cancellation)
    {
        bool prepared = File.Exists(Path.Combine(folder, DataManifest.FileName))
                        && DataManifest.Load(folder).Tokenizer == tokenizer.Identity;
        if (!prepared)   // the quick start's own folder: a new tokenizer replaces its data
            DataConsole.Prepare(inputs, folder, tokenizer, new PrepareOptions { Overwrite = true }, cancellation);
        else AnsiConsole.WriteLine($"   reusing {folder} (prepared with this tokenizer)");
        var dataset = TokenDataset.Open(folder);
        DataConsole.Report(dataset.Manifest, folder);
        return dataset;
    }

    /// <summary>Trains, or resumes the run in <paramref name="run"/> (its config, options and weights; only --steps applies).</summary>
    static TrainingResult Train(string run, TokenDataset dataset, HybridConfig config, TrainingOptions options, ParseResult result,
                                CancellationToken cancellation)
    {
        using var trainer = Trainer.Open(run, dataset, new NewRun(config, options), resume: true, new RunLength(Steps: options.Steps));
        if (trainer.Origin.Resumed)
            AnsiConsole.WriteLine($"   reusing {run}: its model config, training options and weights; only --steps applies");
        return Resumable.Run(Resumable.SameCommand(result), () => TrainingConsole.Run(trainer, cancellation));
    }

    /// <summary>Prefill + token-by-token decode must give the full forward's logits (tolerance 1e-3 of the largest logit).</summary>
    static void Check(HybridForCausalLM model, IReadOnlyList<int> ids)
    {
        var device = model.LmHeadWeight.device;
        using var tokens = TorchSharp.torch.tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count], device: device);
        using var full = Scoring.Logits(model, tokens);
        using var stepped = Scoring.Logits(model, tokens, prefill: 2);
        double diff = (full - stepped).abs().max().item<float>();
        AnsiConsole.WriteLine($"   max |full − prefill/decode| = {diff:E2}");
        if (diff > 1e-3 * Math.Max(1, full.abs().max().item<float>()))
            throw new WrenException("prefill + decode disagrees with the full forward");
    }

    static void Generate(HybridForCausalLM model, string folder, string prompt, int endOfText)
    {
        var generator = new TextGenerator(model, TokenizerLoader.ForModel(folder, model.Config));
        AnsiConsole.Write(prompt);
        var sampling = new SamplingOptions { MaxNewTokens = 80, Temperature = 0.7, TopK = 40, Seed = 1, StopTokenIds = [endOfText] };
        foreach (var token in generator.Generate([prompt], sampling)) AnsiConsole.Write(token.Text);
        AnsiConsole.WriteLine();
        var stats = generator.LastStats;
        AnsiConsole.WriteLine($"   {stats.GeneratedTokens} tokens at {stats.DecodeTokensPerSecond:F0} tokens/s");
        AnsiConsole.MarkupLine($"[green]quickstart ok[/] — model in [bold]{Markup.Escape(folder)}[/]; " +
                               $"next: [bold]wren generate --model {Markup.Escape(folder)} --prompt \"...\"[/], " +
                               "or your own data with --corpus");
    }
}
