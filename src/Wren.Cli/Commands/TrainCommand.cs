using System.CommandLine;
using Spectre.Console;
using Wren.Data;
using Wren.Models;
using Wren.Training;

namespace Wren.Cli.Commands;

/// <summary><c>wren train</c>: train a hybrid on a prepared dataset, resumably, into an HF model folder.</summary>
internal static class TrainCommand
{
    /// <summary>The training options as command-line flags; each overrides the base options (defaults or <c>--options</c>) only when given.</summary>
    internal sealed class TrainingFlags
    {
        readonly Option<string?> file = new("--options") { Description = "training.json with the base options (flags override it)" };
        readonly Option<long?> steps = new("--steps") { Description = "optimizer steps" };
        readonly Option<long?> tokens = new("--tokens") { Description = "training tokens (instead of --steps)" };
        readonly Option<int?> batch = new("--batch-size") { Description = "sequences per micro-batch (default 8)" };
        readonly Option<int?> seqLen = new("--seq-len") { Description = "tokens per sequence (default 256)" };
        readonly Option<int?> accumulation = new("--grad-accum") { Description = "micro-batches per step (default 1)" };
        readonly Option<string?> optimizer = new("--optimizer") { Description = "adamw (default) or adam" };
        readonly Option<double?> lr = new("--lr") { Description = "peak learning rate (default 1e-3)" };
        readonly Option<double?> minLr = new("--min-lr-ratio") { Description = "final LR ÷ peak (default 0.1)" };
        readonly Option<long?> warmup = new("--warmup") { Description = "warm-up steps (default 50)" };
        readonly Option<string?> schedule = new("--schedule") { Description = "cosine (default), wsd or constant" };
        readonly Option<double?> decay = new("--weight-decay") { Description = "AdamW decay on matrices (default 0.1; 0 with --weight-norm)" };
        readonly Option<double?> clip = new("--grad-clip") { Description = "global gradient-norm clip (default 1; 0 = off)" };
        readonly Option<bool?> weightNorm = new("--weight-norm") { Description = "project weights to unit-norm rows/columns after every step" };
        readonly Option<long?> seed = new("--seed") { Description = "initialization and data-order seed (default 0)" };
        readonly Option<long?> evalEvery = new("--eval-every") { Description = "validate every N steps (default 100)" };
        readonly Option<int?> evalWindows = new("--eval-windows") { Description = "validation windows (default 32)" };
        readonly Option<long?> checkpointEvery = new("--checkpoint-every") { Description = "checkpoint every N steps (default 100)" };
        readonly Option<int?> keep = new("--keep-checkpoints") { Description = "checkpoints kept (default 3)" };
        readonly Option<long?> logEvery = new("--log-every") { Description = "write training metrics every N steps (default 10)" };

        public TrainingFlags(Command command)
        {
            foreach (var o in new Option[] { file, steps, tokens, batch, seqLen, accumulation, optimizer, lr, minLr, warmup, schedule, decay, clip, weightNorm, seed, evalEvery, evalWindows, checkpointEvery, keep, logEvery })
                command.Add(o);
            CommonOptions.MustBePositive(steps, tokens, evalEvery, checkpointEvery, logEvery);
            CommonOptions.MustBePositive(batch, seqLen, accumulation, evalWindows, keep);
            CommonOptions.MustBePositive(lr);
        }

        public TrainingOptions Read(ParseResult r, TrainingOptions? fallback = null)
        {
            var o = r.GetValue(file) is { } path ? TrainingOptions.Load(path) : fallback ?? new TrainingOptions();
            return o with
            {
                Steps = r.GetValue(steps) ?? (r.GetValue(tokens) is not null ? 0 : o.Steps),
                Tokens = r.GetValue(tokens) ?? (r.GetValue(steps) is not null ? 0 : o.Tokens),
                BatchSize = r.GetValue(batch) ?? o.BatchSize,
                SeqLen = r.GetValue(seqLen) ?? o.SeqLen,
                GradAccumulation = r.GetValue(accumulation) ?? o.GradAccumulation,
                Optimizer = r.GetValue(optimizer) ?? o.Optimizer,
                LearningRate = r.GetValue(lr) ?? o.LearningRate,
                MinLrRatio = r.GetValue(minLr) ?? o.MinLrRatio,
                WarmupSteps = r.GetValue(warmup) ?? o.WarmupSteps,
                Schedule = r.GetValue(schedule) ?? o.Schedule,
                WeightDecay = r.GetValue(decay) ?? o.WeightDecay,
                GradClip = r.GetValue(clip) ?? o.GradClip,
                WeightNorm = r.GetValue(weightNorm) ?? o.WeightNorm,
                Seed = r.GetValue(seed) ?? o.Seed,
                EvalEvery = r.GetValue(evalEvery) ?? o.EvalEvery,
                EvalWindows = r.GetValue(evalWindows) ?? o.EvalWindows,
                CheckpointEvery = r.GetValue(checkpointEvery) ?? o.CheckpointEvery,
                KeepCheckpoints = r.GetValue(keep) ?? o.KeepCheckpoints,
                LogEvery = r.GetValue(logEvery) ?? o.LogEvery,
            };
        }

        /// <summary>
        /// On resume the length may change (extending a finished run) and so may the learning-rate schedule and clipping, the
        /// advised fix after a divergence; everything else (batch shape, data order, optimizer) comes from the run.
        /// </summary>
        public TrainingOptions ReadForResume(ParseResult r, TrainingOptions saved) => saved with
        {
            Steps = r.GetValue(steps) ?? (r.GetValue(tokens) is not null ? 0 : saved.Steps),
            Tokens = r.GetValue(tokens) ?? (r.GetValue(steps) is not null ? 0 : saved.Tokens),
            LearningRate = r.GetValue(lr) ?? saved.LearningRate,
            MinLrRatio = r.GetValue(minLr) ?? saved.MinLrRatio,
            WarmupSteps = r.GetValue(warmup) ?? saved.WarmupSteps,
            Schedule = r.GetValue(schedule) ?? saved.Schedule,
            GradClip = r.GetValue(clip) ?? saved.GradClip,
        };
    }

    public static Command Create()
    {
        var command = new Command("train", "Train a hybrid model on a prepared dataset (wren data prepare); resumable");
        var config = new Option<string?>("--config") { Description = "model config.json or preset (vocab_size is set from the dataset's tokenizer)" };
        var data = new Option<string>("--data") { Description = "prepared dataset folder", Required = true };
        var output = new Option<string>("--out") { Description = "run folder", Required = true };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its latest checkpoint" };
        var metaTokens = new Option<int?>("--meta-tokens") { Description = "override num_memory_tokens (0 = none)" };
        foreach (var o in new Option[] { config, data, output, resume, metaTokens }) command.Add(o);
        var flags = new TrainingFlags(command);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction((result, cancellation) =>
        {
            common.Initialize(result);
            string run = result.GetValue(output)!;
            using var dataset = TokenDataset.Open(result.GetValue(data)!);
            bool resuming = result.GetValue(resume) && TrainingCheckpoint.List(run).Count > 0;
            HybridConfig cfg;
            TrainingOptions options;
            if (resuming)
            {
                cfg = HybridConfig.Load(Path.Combine(run, Trainer.ConfigFile));
                options = flags.ReadForResume(result, TrainingOptions.Load(Path.Combine(run, Trainer.OptionsFile)));
                AnsiConsole.MarkupLine($"resuming {Markup.Escape(run)} from step {TrainingCheckpoint.List(run)[^1].Step}");
            }
            else
            {
                if (result.GetValue(config) is not { } configPath) throw new WrenException("give --config (a config.json or preset) to start a run, or --resume to continue one");
                cfg = ForDataset(HybridConfig.Load(configPath), dataset.Manifest, result.GetValue(metaTokens));
                options = flags.Read(result);
            }
            var outcome = Run(cfg, dataset, options, run, resuming, cancellation);
            AnsiConsole.MarkupLine($"model: [bold]{Markup.Escape(outcome.ModelFolder)}[/] — try [bold]wren generate --model {Markup.Escape(outcome.ModelFolder)} --prompt \"...\"[/]");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The config fitted to the dataset's tokenizer (<see cref="DataManifest.ModelConfig"/>) and, if given, the meta-token count.</summary>
    public static HybridConfig ForDataset(HybridConfig config, DataManifest manifest, int? metaTokens = null) =>
        manifest.ModelConfig(config) with { NumMemoryTokens = metaTokens ?? config.NumMemoryTokens };

    /// <summary>Builds (or resumes) and trains a model with a live progress bar; prints the outcome.</summary>
    public static TrainingResult Run(HybridConfig config, TokenDataset dataset, TrainingOptions options, string run, bool resume, CancellationToken cancellation)
    {
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, options.Seed);
        using var trainer = new Trainer(model, dataset, options, run, resume);
        var footprint = ModelFootprint.Of(config);
        AnsiConsole.MarkupLine($"[bold]train[/] {footprint.Parameters / 1e6:F2}M parameters ({Markup.Escape(string.Join(" ", config.LayerTypes))}), " +
                               $"{options.TotalSteps} steps × {options.TokensPerStep:N0} tokens, {options.Schedule} LR {options.LearningRate:G3}, " +
                               $"{(options.WeightNorm ? "weight norm on (no decay)" : $"weight decay {options.WeightDecay:G3}")}, {config.NumMemoryTokens} meta tokens");
        TrainingResult? outcome = null;
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("training", maxValue: options.TotalSteps);
                task.Value = trainer.State.Step;
                outcome = trainer.Run(new Callback<TrainingStatus>(s =>
                {
                    task.Value = s.Step;
                    task.Description = $"step {s.Step}/{s.TotalSteps}  loss {s.Loss:F3}" + (s.ValLoss is { } v ? $"  val {v:F3}" : "") +
                                       $"  lr {s.LearningRate:E1}  {s.TokensPerSecond:N0} tok/s  ETA {s.Remaining:hh\\:mm\\:ss}";
                }), cancellation);
            });
        AnsiConsole.MarkupLine($"done: step {outcome!.Step}, {outcome.Tokens:N0} tokens in {outcome.Seconds:F0} s; train loss {outcome.Loss:F3}, " +
                               $"validation loss [bold]{outcome.ValLoss:F3}[/] (perplexity {outcome.ValPerplexity:F1}); metrics and loss.png in {Markup.Escape(run)}");
        return outcome;
    }
}
