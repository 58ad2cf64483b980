using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Data;
using Wren.Distributed;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Training;

/// <summary>Progress of a run, reported after every step. Tokens and tokens/s count the global batch (all ranks);
/// <see cref="AllReduceSeconds"/> is the step's gradient all-reduce (0 in one process).</summary>
public readonly record struct TrainingStatus(long Step, long TotalSteps, long Tokens, double Loss, double LearningRate,
                                             double TokensPerSecond, TimeSpan Remaining, double? ValLoss, double AllReduceSeconds = 0);

/// <summary>The end of a run: final step, last training loss, last validation loss and perplexity, the model folder.</summary>
public sealed record TrainingResult(long Step, long Tokens, double Loss, double ValLoss, double ValPerplexity, string ModelFolder,
                                    double Seconds);

/// <summary>A new run: the model config (fitted to the dataset's tokenizer by <see cref="Trainer.Open"/>) and the options.</summary>
public sealed record NewRun(HybridConfig Config, TrainingOptions Options);

/// <summary>
/// The length a resumed run should reach in all (e.g. to extend a finished run): steps or tokens, the other 0; null
/// keeps the run's own length. Besides it only the <see cref="ResumeSchedule"/> may change; every other option comes
/// from the run.
/// </summary>
public sealed record RunLength(long? Steps = null, long? Tokens = null);

/// <summary>
/// What a resumed run may change besides its length: the learning-rate schedule and gradient clipping, the advised fix
/// after a divergence (lower the peak rate, lengthen warm-up). Null keeps the run's own value; batch shape, data order,
/// optimizer and seed always come from the run.
/// </summary>
public sealed record ResumeSchedule(double? LearningRate = null, double? MinLrRatio = null, long? WarmupSteps = null,
                                    string? Schedule = null, double? GradClip = null)
{
    /// <summary>The run's saved options with the given values replaced.</summary>
    public TrainingOptions Apply(TrainingOptions saved) => saved with
    {
        LearningRate = LearningRate ?? saved.LearningRate,
        MinLrRatio = MinLrRatio ?? saved.MinLrRatio,
        WarmupSteps = WarmupSteps ?? saved.WarmupSteps,
        Schedule = Schedule ?? saved.Schedule,
        GradClip = GradClip ?? saved.GradClip,
    };
}

/// <summary>
/// What <see cref="Trainer.Open"/> made of a run folder: a new run, or a resumed one from <see cref="FromStep"/>, which
/// reuses the run's config, options (but its length) and weights. <see cref="NothingToTrain"/>: the run already
/// reached its length, so <see cref="Trainer.Run"/> only writes its model folder again.
/// </summary>
public sealed record RunOrigin(bool Resumed, long FromStep, long TotalSteps)
{
    public bool NothingToTrain => FromStep >= TotalSteps;
}

/// <summary>
/// Trains a hybrid LM on a prepared dataset: AdamW/Adam with decay only on matrices, warm-up + cosine/WSD, gradient
/// clipping and accumulation, optional weight normalization, periodic validation, metrics and atomic checkpoints.
/// A run folder holds <c>config.json</c>, <c>training.json</c>, <c>metrics.jsonl</c>, <c>loss.png</c>, <c>checkpoints/</c>
/// and, at the end, <c>model/</c> (an HF folder with the tokenizer). Resuming restores the model, optimizer, RNG and
/// data position (the batch counter), so the losses that follow are those of an uninterrupted run.
/// <see cref="Open"/> is the one entry: it alone decides new or resumed, and it alone touches the folder before training.
/// <para>Data parallel over the ranks of a <see cref="ProcessGroup"/> (mpirun): the global batch (batch size × accumulation
/// sequences) is the same as in one process and its sequence i is drawn by its global index, so every world size sees the
/// same samples per step; rank r computes sequences [r·G/N, (r+1)·G/N), the gradients are summed over the ranks
/// (<see cref="GradientBuckets"/>), and clipping, the optimizer step and weight normalization run on those identical
/// gradients on every rank. A checksum of the weights is compared every <see cref="TrainingOptions.ChecksumEvery"/> steps and
/// before each checkpoint. Only rank 0 writes the run folder; the others work in a replica of it (<see cref="RunReplica"/>).
/// </para>
/// </summary>
public sealed class Trainer : IDisposable
{
    public const string ConfigFile = "config.json", OptionsFile = "training.json", ModelFolder = "model";
    /// <summary>The identity of the tokenizer the run's dataset was made with (<see cref="TokenizerIdentity"/> as JSON).</summary>
    public const string DataTokenizerFile = "data-tokenizer.json";

    readonly HybridForCausalLM model;
    readonly TokenDataset data;
    readonly TrainingOptions options;
    readonly string run;
    readonly OptimizerHelper optimizer;
    readonly IReadOnlyList<Parameter> parameters;
    readonly IReadOnlyList<NormalizedMatrix> normalized;
    readonly WindowSampler sampler;
    readonly long[] validationTokens;
    readonly int validationWindows;
    readonly ProcessGroup group;
    readonly GradientBuckets buckets;
    readonly string? replica;
    TrainerState state = new(0, 0, 0);
    MetricsLog? metrics;

    /// <summary>The model being trained; the trainer owns it (disposed with the trainer).</summary>
    public HybridForCausalLM Model => model;
    public TrainerState State => state;
    public TrainingOptions Options => options;
    public RunOrigin Origin { get; private set; } = new(false, 0, 0);
    public IReadOnlyList<NormalizedMatrix> NormalizedMatrices => normalized;

    /// <summary>The ranks training together (<see cref="ProcessGroup.Single"/> in one process).</summary>
    public ProcessGroup Group => group;
    /// <summary>Gradient bytes summed over the ranks per step.</summary>
    public long GradientBytes => buckets.Bytes;

    Trainer(HybridForCausalLM model, TokenDataset data, TrainingOptions options, string run, ProcessGroup group, string? replica)
    {
        options.Validate();
        // every rank compares before anything differs in what the ranks do
        group.Agree("model config", model.Config.ToJson(), "start every rank with the same --config and --meta-tokens");
        group.Agree("training options", options.ToJson(),
                    "start every rank with the same command line");
        group.Agree("dataset", File.ReadAllText(Path.Combine(data.Folder, DataManifest.FileName)),
                    "give every rank a copy of the same prepared dataset (wren data prepare) at --data");
        long global = options.GlobalBatch;
        if (global % group.Size != 0)
            throw new CollectiveException($"the world size {group.Size} does not divide the global batch of {global} sequences " +
                                          $"(--batch-size {options.BatchSize} × --grad-accum {options.GradAccumulation}); start a " +
                                          "number of ranks that divides it, or change the batch");
        if (model.Config.VocabSize < data.Manifest.Tokenizer.VocabularySize)
            throw new WrenException($"the model's vocab_size ({model.Config.VocabSize}) is smaller than the dataset tokenizer's " +
                                    $"({data.Manifest.Tokenizer.VocabularySize})");
        this.model = model;
        this.data = data;
        this.options = options;
        this.run = run;
        this.group = group;
        this.replica = replica;
        model.train();
        var named = model.named_parameters().ToList();
        parameters = named.Select(p => p.parameter).ToList();
        normalized = options.WeightNorm ? WeightNormalization.Targets(model) : [];
        optimizer = CreateOptimizer(named, options);
        buckets = new GradientBuckets(parameters, group);
        sampler = new WindowSampler(data.Train, options.BatchSize, options.SeqLen, options.Seed);
        validationTokens = WindowSampler.Evenly(data.Validation, options.EvalWindows, options.SeqLen, out validationWindows);
    }

    /// <summary>
    /// Opens the run in <paramref name="run"/>. When it holds checkpoints and <paramref name="resume"/> is set, the run
    /// continues from the latest one: its config.json, its training.json (only the length, by <paramref name="length"/>, and
    /// the learning-rate schedule and clipping, by <paramref name="schedule"/>, may change) and its weights, optimizer, RNG and
    /// data position; the dataset must have been prepared with the run's tokenizer. Otherwise a new run starts from
    /// <paramref name="start"/> (config fitted to the dataset's tokenizer, weights initialized from the options' seed); a
    /// folder that already holds checkpoints is refused then. Writes config.json, training.json and data-tokenizer.json.
    /// With a <paramref name="group"/> of several ranks every rank calls this with the same arguments: rank 0 decides and
    /// writes the run folder and the other ranks receive its files; training.json records the world size, and a run may
    /// resume with another world size.
    /// </summary>
    /// <exception cref="CollectiveException">(on every rank) the ranks disagree on the config, options or data, or the world
    /// size does not divide the global batch.</exception>
    public static Trainer Open(string run, TokenDataset data, NewRun? start, bool resume = false, RunLength? length = null,
                               ResumeSchedule? schedule = null, ProcessGroup? group = null)
    {
        group ??= ProcessGroup.Single;
        string? replica = group.IsRoot ? null : RunReplica.CreateFolder(group);
        try
        {
            return Open(replica ?? run, replica, data, start, resume, length, schedule, group, ShareRun(run, data, start, resume, group,
                                                                                                        replica));
        }
        catch when (replica is not null)
        {
            Directory.Delete(replica, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Rank 0 checks the run folder (the errors of one process, raised on every rank) and the other ranks receive the files
    /// a resumed run starts from. Returns whether the run resumes.
    /// </summary>
    static bool ShareRun(string run, TokenDataset data, NewRun? start, bool resume, ProcessGroup group, string? replica)
    {
        string? problem = null;
        var files = new List<string>();
        if (group.IsRoot)
        {
            try
            {
                Directory.CreateDirectory(run);
                TrainingCheckpoint.RemovePartial(run);
                var checkpoints = TrainingCheckpoint.List(run);
                if (resume && checkpoints.Count > 0)
                {
                    CheckSameTokenizer(run, data, checkpoints[^1].Path);
                    files.Add(OptionsFile);
                    // the metrics too: a rank's last validation loss must be rank 0's, or only some ranks would evaluate again
                    files.AddRange(new[] { DataTokenizerFile, MetricsLog.FileName }.Where(f => File.Exists(Path.Combine(run, f))));
                    files.AddRange(Directory.GetFiles(checkpoints[^1].Path, "*", SearchOption.AllDirectories)
                                       .Select(f => Path.GetRelativePath(run, f)).Order(StringComparer.Ordinal));
                }
                else if (checkpoints.Count > 0)
                    throw new WrenException($"{run} already holds a run (checkpoints up to step {checkpoints[^1].Step}); " +
                                            "pass --resume to continue it or choose another --out");
                else if (start is null)
                    throw new WrenException($"{run} holds no checkpoint to resume; give a model config (--config) to start a run");
            }
            catch (WrenException e) when (group.Size > 1) { problem = e.Message; }
        }
        if (group.Size == 1) return files.Count > 0;
        var decided = System.Text.Encoding.UTF8.GetString(group.Broadcast(group.IsRoot ? System.Text.Encoding.UTF8.GetBytes(problem ?? "")
                                                                                         : null, "checking the run folder"));
        if (decided.Length > 0) throw new CollectiveException(decided);
        RunReplica.Share(group, run, files, replica ?? run);
        return (group.IsRoot ? files.Count : TrainingCheckpoint.List(replica!).Count) > 0;
    }

    static Trainer Open(string run, string? replica, TokenDataset data, NewRun? start, bool resume, RunLength? length,
                        ResumeSchedule? schedule, ProcessGroup group, bool resumes)
    {
        Trainer trainer;
        if (resumes)
        {
            var checkpoints = TrainingCheckpoint.List(run);
            var saved = TrainingOptions.Load(Path.Combine(run, OptionsFile));
            var options = (schedule ?? new ResumeSchedule()).Apply(length is null ? saved with { WorldSize = group.Size } : saved with
            {
                Steps = length.Steps ?? (length.Tokens is not null ? 0 : saved.Steps),
                Tokens = length.Tokens ?? (length.Steps is not null ? 0 : saved.Tokens),
                WorldSize = group.Size,
            });
            var model = TrainingCheckpoint.LoadModel(checkpoints[^1].Path);
            trainer = Owning(model, () => new Trainer(model, data, options, run, group, replica));
            trainer.state = TrainingCheckpoint.Restore(checkpoints[^1].Path, trainer.optimizer);
            trainer.Origin = new RunOrigin(true, trainer.state.Step, options.TotalSteps);
        }
        else
        {
            var model = new HybridForCausalLM(data.Manifest.ModelConfig(start!.Config));
            trainer = Owning(model, () =>
            {
                Initialization.Apply(model, start.Options.Seed);
                return new Trainer(model, data, start.Options with { WorldSize = group.Size }, run, group, replica);
            });
            // start on the sphere, as every later step ends there
            if (start.Options.WeightNorm) WeightNormalization.Apply(trainer.normalized);
            trainer.Origin = new RunOrigin(false, 0, start.Options.TotalSteps);
        }
        AtomicFile.WriteAllText(Path.Combine(run, ConfigFile), trainer.model.Config.ToJson());
        AtomicFile.WriteAllText(Path.Combine(run, DataTokenizerFile), JsonSerializer.Serialize(data.Manifest.Tokenizer, DataManifest.Json));
        trainer.options.Save(Path.Combine(run, OptionsFile));
        trainer.metrics = new MetricsLog(run, trainer.state.Step);
        try { trainer.VerifyReplicas(); }
        catch
        {
            trainer.Dispose();
            throw;
        }
        return trainer;
    }

    /// <summary>Builds a trainer around <paramref name="model"/>, disposing the model if that fails.</summary>
    static Trainer Owning(HybridForCausalLM model, Func<Trainer> build)
    {
        try { return build(); }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public MetricsLog Metrics => metrics!;

    /// <summary>
    /// A run continues only on data made with its own tokenizer: the identity recorded when it started (or, for runs from
    /// before that record, the hash of the tokenizer.json kept in its checkpoint) must equal the dataset's.
    /// </summary>
    static void CheckSameTokenizer(string run, TokenDataset data, string checkpoint)
    {
        var now = data.Manifest.Tokenizer;
        string recorded = Path.Combine(run, DataTokenizerFile), kept = Path.Combine(checkpoint, DataManifest.TokenizerFile);
        string? sha = File.Exists(recorded)
            ? JsonSerializer.Deserialize<TokenizerIdentity>(File.ReadAllText(recorded), DataManifest.Json)?.Sha256
            : File.Exists(kept) ? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(kept))) : null;
        if (sha is not null && sha != now.Sha256)
            throw new WrenException($"{run} was trained on data tokenized by a tokenizer with SHA-256 {sha[..12]}…, but {data.Folder} " +
                                    $"was prepared with {now.Name} ({now.Sha256[..12]}…); resume on data prepared with the run's " +
                                    $"tokenizer ({kept}) or start a new run");
    }

    /// <summary>
    /// No weight decay on vectors (norm weights, biases, A_log, D, dt_bias), on Mamba-1's A_log matrix (mamba_ssm marks it
    /// <c>_no_weight_decay</c>; Hymba's <c>A_log.0</c>) and meta tokens (Nemotron-Flash paper; fla and Mamba practice).
    /// </summary>
    public static bool Decays(string name, Tensor p) =>
        p.dim() >= 2 && !name.EndsWith("memory_tokens", StringComparison.Ordinal) && !name.Contains(".A_log", StringComparison.Ordinal);

    static OptimizerHelper CreateOptimizer(List<(string name, Parameter parameter)> named, TrainingOptions o)
    {
        var decay = named.Where(p => Decays(p.name, p.parameter)).Select(p => p.parameter).ToList();
        var rest = named.Where(p => !Decays(p.name, p.parameter)).Select(p => p.parameter).ToList();
        double wd = o.EffectiveWeightDecay;
        if (o.Optimizer == "adam")
            return torch.optim.Adam([new TorchSharp.Modules.Adam.ParamGroup(decay, o.LearningRate, o.Beta1, o.Beta2, o.Eps, wd),
                                     new TorchSharp.Modules.Adam.ParamGroup(rest, o.LearningRate, o.Beta1, o.Beta2, o.Eps, 0)],
                                    o.LearningRate, o.Beta1, o.Beta2, o.Eps);
        return torch.optim.AdamW([new TorchSharp.Modules.AdamW.ParamGroup(decay, o.LearningRate, o.Beta1, o.Beta2, o.Eps, wd),
                                  new TorchSharp.Modules.AdamW.ParamGroup(rest, o.LearningRate, o.Beta1, o.Beta2, o.Eps, 0)],
                                 o.LearningRate, o.Beta1, o.Beta2, o.Eps);
    }

    /// <summary>Trains up to <see cref="TrainingOptions.TotalSteps"/>, then writes <c>model/</c>. A NaN/Inf loss or gradient stops with a
    /// clear error.</summary>
    public TrainingResult Run(IProgress<TrainingStatus>? progress = null, CancellationToken cancellation = default)
    {
        long total = options.TotalSteps;
        var clock = Stopwatch.StartNew();
        long startTokens = state.TokensSeen;
        double secondsBefore = state.Seconds, lastLoss = double.NaN;
        var lastEval = Metrics.Entries.LastOrDefault(e => e.ValLoss is not null);
        double? valLoss = lastEval?.ValLoss;
        while (state.Step < total)
        {
            cancellation.ThrowIfCancellationRequested();
            double lr = LearningRateSchedule.At(options, state.Step);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
            var (loss, gradNorm, allReduce) = Step();
            if (!double.IsFinite(loss) || !double.IsFinite(gradNorm))
                throw Diverged(double.IsFinite(loss) ? $"the gradient norm became {gradNorm} at step {state.Step + 1}"
                                                     : $"the loss became {loss} at step {state.Step + 1}");
            lastLoss = loss;
            state = new TrainerState(state.Step + 1, state.TokensSeen + options.TokensPerStep, secondsBefore + clock.Elapsed.TotalSeconds,
                                     group.Size);
            if (state.Step % options.ChecksumEvery == 0) VerifyReplicas();
            double tokensPerSecond = (state.TokensSeen - startTokens) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            if (state.Step % options.LogEvery == 0 || state.Step == total)
                Metrics.Add(new MetricsEntry
                {
                    Step = state.Step, Tokens = state.TokensSeen, Loss = loss, Lr = lr, GradNorm = gradNorm,
                    TokensPerSecond = tokensPerSecond, Seconds = state.Seconds,
                });
            if (state.Step % options.EvalEvery == 0 || state.Step == total)
            {
                valLoss = Evaluate();
                Metrics.Add(new MetricsEntry
                {
                    Step = state.Step, Tokens = state.TokensSeen, ValLoss = valLoss, ValPpl = Math.Exp(valLoss.Value),
                    Seconds = state.Seconds,
                });
                if (group.IsRoot)
                    Metrics.Plot($"{string.Join(" ", model.Config.LayerTypes.Distinct())} — {model.Config.HiddenSize} wide, " +
                                 $"{model.Config.NumLayers} layers");
            }
            if (state.Step % options.CheckpointEvery == 0 || state.Step == total)
            {
                if (NonFinite() is { } what)
                    throw Diverged($"the {what} became non-finite at step {state.Step}, so it is not checkpointed");
                VerifyReplicas();
                group.Barrier("the barrier before a checkpoint");
                if (group.IsRoot) TrainingCheckpoint.Save(run, model, optimizer, state, TokenizerJson(), options.KeepCheckpoints);
            }
            var remaining = TimeSpan.FromSeconds((total - state.Step) * options.TokensPerStep / Math.Max(1e-9, tokensPerSecond));
            progress?.Report(new TrainingStatus(state.Step, total, state.TokensSeen, loss, lr, tokensPerSecond, remaining, valLoss,
                                                allReduce));
        }
        string folder = Path.Combine(run, ModelFolder);
        if (group.IsRoot) SaveModel(folder);
        double finalVal = valLoss ?? Evaluate();
        return new TrainingResult(state.Step, state.TokensSeen,
                                  double.IsNaN(lastLoss) ? Metrics.Entries.LastOrDefault(e => e.Loss is not null)?.Loss
                                      ?? double.NaN : lastLoss,
                                  finalVal, Math.Exp(finalVal), folder, state.Seconds);
    }

    /// <summary>The error after a divergence: the last checkpoint (each was checked finite before it was written) and the fix.
    /// Every rank sees the same reduced loss and gradients, so with several ranks every rank raises it together.</summary>
    WrenException Diverged(string what)
    {
        var good = TrainingCheckpoint.List(run).LastOrDefault();
        string message = $"{what}; " + (good.Path is null
            ? "no checkpoint was written yet: start again (without --resume) with a lower learning rate (--lr) or a longer warm-up"
            : $"the last good checkpoint (step {good.Step}) is kept in {good.Path}; resume from it with --resume after lowering the " +
              "learning rate (--lr) or raising warm-up");
        return group.Size > 1 ? new CollectiveException(message) : new WrenException(message);
    }

    /// <summary>
    /// What is not finite, or null when every weight is finite and so are the logits of the first validation window: the
    /// test a checkpoint passes before it is written (a step can leave finite loss but overflowed weights behind it).
    /// </summary>
    string? NonFinite()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        if (parameters.Any(p => !p.isfinite().all().item<bool>())) return "weights";
        var window = tensor(validationTokens[..(options.SeqLen + 1)], [1, options.SeqLen + 1]).to(model.LmHeadWeight.device);
        var logits = model.forward(new LMInput(window.narrow(1, 0, options.SeqLen))).Logits;
        return logits.isfinite().all().item<bool>() ? null : "logits of a validation batch";
    }

    /// <summary>
    /// One optimizer step over the global batch of <c>BatchSize × GradAccumulation</c> sequences, of which this rank computes
    /// its share in pieces that never cross a micro-batch (in one process: the micro-batches themselves). Each piece's mean loss
    /// is scaled by its share of the global batch before the backward, so the gradients summed over the ranks are the mean
    /// over the global batch. Returns the mean loss, the gradient norm before clipping and the all-reduce seconds.
    /// </summary>
    (double Loss, double GradNorm, double AllReduce) Step()
    {
        optimizer.zero_grad();
        int rows = options.BatchSize;
        long global = options.GlobalBatch, share = global / group.Size, first = group.Rank * share;
        var lossSum = new double[1];
        for (long row = first; row < first + share;)
        {
            using var scope = NewDisposeScope();
            int from = (int)(row % rows), count = (int)Math.Min(rows - from, first + share - row);
            var tokens = sampler.Batch(state.Step * options.GradAccumulation + row / rows, from, count);
            var loss = Loss(tokens, count);
            (loss / ((double)global / count)).backward();
            lossSum[0] += count == rows ? loss.item<float>() : (double)loss.item<float>() * count / rows;
            row += count;
        }
        group.AllReduceSum(lossSum, "the loss all-reduce");
        double allReduce = buckets.Reduce();
        double gradNorm;
        using (NewDisposeScope())
            gradNorm = options.GradClip > 0
                ? nn.utils.clip_grad_norm_(parameters, options.GradClip)
                : stack(parameters.Where(p => p.grad is not null).Select(p => p.grad!.norm()).ToArray()).norm().item<float>();
        if (double.IsFinite(lossSum[0]) && double.IsFinite(gradNorm))
        {
            using (NewDisposeScope()) optimizer.step();
            if (options.WeightNorm) WeightNormalization.Apply(normalized);
        }
        return (lossSum[0] / options.GradAccumulation, gradNorm, allReduce);
    }

    /// <summary>
    /// SHA-256 (first 8 bytes) of every parameter's float32 bits, in parameter order: equal on every rank exactly when the
    /// replicas hold the same weights.
    /// </summary>
    internal long WeightChecksum()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var _ = no_grad();
        foreach (var p in parameters)
        {
            using var scope = NewDisposeScope();
            var values = p.detach().cpu().contiguous();
            hash.AppendData(values.bytes);
        }
        return BitConverter.ToInt64(hash.GetHashAndReset());
    }

    /// <summary>Compares the weight checksums of all ranks (nothing in one process).</summary>
    /// <exception cref="CollectiveException">The replicas' weights differ, naming the step and the ranks.</exception>
    void VerifyReplicas()
    {
        if (group.Size == 1) return;
        var differ = group.Differing(WeightChecksum(), "comparing the weight checksums");
        if (differ.Count > 0)
            throw new CollectiveException($"the weights of {ProcessGroup.Name(differ)} differ from rank 0's at step {state.Step}: the " +
                                          "replicas diverged (ranks must run the same Wren, libtorch and thread count); resume from " +
                                          "the last checkpoint");
    }

    /// <summary>Mean next-token cross-entropy of windows [rows × (T+1)].</summary>
    Tensor Loss(long[] windows, int rows)
    {
        int width = options.SeqLen + 1;
        var batch = tensor(windows, [rows, width]).to(model.LmHeadWeight.device);
        var inputs = batch.narrow(1, 0, options.SeqLen);
        var targets = batch.narrow(1, 1, options.SeqLen);
        var logits = model.forward(new LMInput(inputs)).Logits;
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));
    }

    /// <summary>Mean validation loss over the fixed, evenly spread validation windows (split over the ranks).</summary>
    public double Evaluate()
    {
        using var _ = no_grad();
        int width = options.SeqLen + 1, rows = Math.Max(1, options.BatchSize);
        var sum = new double[1];
        for (int start = rows * group.Rank; start < validationWindows; start += rows * group.Size)   // pieces dealt round-robin
        {
            using var scope = NewDisposeScope();
            int count = Math.Min(rows, validationWindows - start);
            sum[0] += Loss(validationTokens[(start * width)..((start + count) * width)], count).item<float>() * count;
        }
        group.AllReduceSum(sum, "the validation-loss all-reduce");
        return sum[0] / validationWindows;
    }

    string? TokenizerJson()
    {
        string path = Path.Combine(data.Folder, DataManifest.TokenizerFile);
        return data.Manifest.Tokenizer.Kind == "tokenizer.json" && File.Exists(path) ? path : null;
    }

    /// <summary>Writes the model as an HF folder that <c>wren generate</c> and <c>wren logits</c> load directly.</summary>
    public void SaveModel(string folder)
    {
        var config = model.Config;
        if (data.Manifest.Tokenizer.Kind == "tiktoken" && config.TiktokenEncoding != data.Manifest.Tokenizer.Name)
            throw new WrenException($"set wren_tiktoken_encoding to {data.Manifest.Tokenizer.Name} in the model config, so the saved " +
                                    $"model names its tokenizer");
        model.SavePretrained(folder);
        if (TokenizerJson() is { } json) File.Copy(json, Path.Combine(folder, "tokenizer.json"), overwrite: true);
    }

    public void Dispose()
    {
        optimizer.Dispose();
        model.Dispose();
        if (replica is not null && Directory.Exists(replica)) Directory.Delete(replica, recursive: true);
    }
}
