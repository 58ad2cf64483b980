using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>Measured cost of one layer of <paramref name="Operator"/> at a width, batch and context (positions held, meta tokens
/// included).</summary>
/// <param name="DecodeStep">One decode step through one layer, in reference units (÷ the reference's decode step).</param>
public sealed record LayerCost(string Operator, int Width, int Batch, int Context, double DecodeStep);

/// <summary>Everything outside the layers for one decode step (embedding, final norm, lm_head, glue), in reference units.</summary>
public sealed record StepOverhead(int Width, int Batch, double DecodeStep);

/// <summary>Kinds of random stack the table's fit and check draw (<see cref="LatencyTable.Check"/>), in this order.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<StackFamily>))]
public enum StackFamily
{
    /// <summary>Any latency key at every layer.</summary>
    Mixed,
    /// <summary>One mixer, each layer of it followed by an FFN (the search's pure designs).</summary>
    Homogeneous,
    /// <summary>Two mixers in random order, each layer followed by an FFN.</summary>
    TwoMixers,
    /// <summary>One or two mixers, each layer followed by two FFNs.</summary>
    FfnHeavy,
}

/// <summary>Scale on the summed layer costs at one width and batch, fitted on measured mixed architectures.</summary>
public sealed record Calibration(int Width, int Batch, double Scale, int Architectures);

/// <summary>
/// Per-device latency lookup table: operator × width × batch (× context for attention) → per-layer cost measured in a
/// probe (the layer repeated), the per-step overhead, a scale on their sum, and in-situ costs fitted on measured mixed
/// architectures (<see cref="FittedCosts"/>). Every figure is a ratio to <see cref="Reference"/>, measured interleaved
/// with it (<see cref="InterleavedClock"/>), so a table built while the machine is slow predicts while it is fast:
/// predictions in seconds are reference units × the reference's step at build time. The table records its device and
/// template; it refuses to predict for others.
/// </summary>
/// <param name="Drift">Largest ÷ smallest reference step seen while building: how much the machine moved meanwhile.</param>
public sealed record LatencyTable(DeviceIdentity Device, HybridConfig Template, ReferenceStep Reference, IReadOnlyList<LayerCost> Layers,
                                  IReadOnlyList<StepOverhead> Overheads, IReadOnlyList<Calibration> Calibrations,
                                  IReadOnlyList<FittedCosts> Fits, double Drift, DateTimeOffset BuiltAt)
{
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    /// <summary>Layers per measurement model: several, so each entry is a mean over layers as well as a median over runs.</summary>
    public const int LayersPerProbe = 4;

    public IEnumerable<int> Widths => Layers.Select(l => l.Width).Distinct().Order();
    public IEnumerable<int> Batches => Layers.Select(l => l.Batch).Distinct().Order();
    public IEnumerable<string> Operators => Layers.Select(l => l.Operator).Distinct();

    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this, Json));
    }

    public static LatencyTable Load(string path)
    {
        if (!File.Exists(path)) throw new WrenException($"latency table not found: {path} (build one with: wren profile lut build)");
        LatencyTable? table;
        try { table = JsonSerializer.Deserialize<LatencyTable>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw new WrenException($"{path}: not a latency table ({e.Message})", e); }
        if (table is null) throw new WrenException($"{path}: empty latency table");
        if (table.Layers is null || table.Device is null)
            throw new WrenException($"{path}: not a latency table (no device or layer entries; build one with: wren profile lut build)");
        if (table.Reference is null || table.Fits is null)
            throw new WrenException($"{path}: a latency table in absolute seconds from before reference units; " +
                                    "rebuild it with: wren profile lut build");
        return table;
    }

    /// <summary>Throws unless the table was measured on <paramref name="device"/>: latencies never carry over between devices.</summary>
    public void EnsureDevice(DeviceIdentity device)
    {
        if (Device.Id != device.Id)
            throw new WrenException($"this latency table was measured on {Device.Processor} ({Device.Kind}, {Device.Threads} threads, id " +
                                    $"{Device.Id}); this device is {device.Processor} ({device.Kind}, {device.Threads} threads, id " +
                                    $"{device.Id}). Build a table here with: wren profile lut build");
    }

    /// <summary>
    /// Predicted seconds of one decode step of <paramref name="config"/> at a batch and context (meta tokens included in
    /// the context), at the machine speed of the build: the fitted in-situ model where the table has one for this width
    /// and batch, else the calibrated sum of entries.
    /// </summary>
    public double PredictDecodeStep(HybridConfig config, int batch, int context) =>
        (FitOf(config.HiddenSize, batch) is null ? PredictBySum(config, batch, context) : PredictByFit(config, batch, context)!.Value)
        * Reference.StepSeconds;

    /// <summary>
    /// Predicted seconds to decode <paramref name="tokens"/> tokens after a <paramref name="prompt"/>-token prompt (context at the
    /// midpoint).
    /// </summary>
    public double PredictDecode(HybridConfig config, int batch, int prompt, int tokens) =>
        tokens * PredictDecodeStep(config, batch, prompt + tokens / 2);

    /// <summary>Sum of the probe entries: overhead + calibration scale × Σ layer entries, in reference units.</summary>
    public double PredictBySum(HybridConfig config, int batch, int context)
    {
        var overhead = Overheads.FirstOrDefault(o => o.Width == config.HiddenSize && o.Batch == batch)
            ?? throw new WrenException($"the latency table has no entry for width {config.HiddenSize} at batch {batch} " +
                                       $"(widths {string.Join(", ", Widths)}; batches {string.Join(", ", Batches)})");
        double scale = Calibrations.FirstOrDefault(c => c.Width == config.HiddenSize && c.Batch == batch)?.Scale ?? 1.0;
        return overhead.DecodeStep + scale * LayerSum(config, batch, context);
    }

    /// <summary>
    /// The fitted in-situ model, in reference units, or null without a fit at this width and batch: fitted overhead and
    /// per-layer costs (at each key's first measured context), plus each context-dependent layer's growth from its probe entries.
    /// </summary>
    public double? PredictByFit(HybridConfig config, int batch, int context)
    {
        if (FitOf(config.HiddenSize, batch) is not { } fit) return null;
        var keys = LayerKeys(config);
        int positions = context + config.NumMemoryTokens;
        return fit.Predict(keys) + keys.Sum(k => ContextGrowth(k, config.HiddenSize, batch, positions));
    }

    FittedCosts? FitOf(int width, int batch) => Fits.FirstOrDefault(f => f.Width == width && f.Batch == batch);

    static List<string> LayerKeys(HybridConfig config) =>
        Enumerable.Range(0, config.NumLayers).Select(i => OperatorRegistry.Of(config, i).LatencyKey(config, i)).ToList();

    /// <summary>A layer's probe cost at <paramref name="positions"/> minus its cost at the key's first measured context.</summary>
    double ContextGrowth(string key, int width, int batch, int positions)
    {
        int first = Layers.Where(l => l.Operator == key && l.Width == width && l.Batch == batch).Select(l => l.Context)
            .DefaultIfEmpty(positions).Min();
        return LayerStep(key, width, batch, positions) - LayerStep(key, width, batch, first);
    }

    /// <summary>Uncalibrated sum of the layers' table entries, in reference units.</summary>
    double LayerSum(HybridConfig config, int batch, int context) =>
        LayerKeys(config).Sum(k => LayerStep(k, config.HiddenSize, batch, context + config.NumMemoryTokens));

    /// <summary>One layer's decode step; for attention, linear in context between measured contexts (clamped at the ends).</summary>
    double LayerStep(string op, int width, int batch, int context)
    {
        var points = Layers.Where(l => l.Operator == op && l.Width == width && l.Batch == batch).OrderBy(l => l.Context).ToList();
        if (points.Count == 0)
            throw new WrenException($"the latency table has no '{op}' entry at width {width}, batch {batch} (operators: " +
                                    $"{string.Join(", ", Operators)})");
        if (points.Count == 1 || context <= points[0].Context) return points[0].DecodeStep;
        for (int i = 1; i < points.Count; i++)
            if (context <= points[i].Context)
            {
                double t = (double)(context - points[i - 1].Context) / (points[i].Context - points[i - 1].Context);
                return points[i - 1].DecodeStep + t * (points[i].DecodeStep - points[i - 1].DecodeStep);
            }
        // Past the last context: extend the last segment (attention's cost grows linearly with the KV it reads).
        var (a, b) = (points[^2], points[^1]);
        return b.DecodeStep + (context - b.Context) * (b.DecodeStep - a.DecodeStep) / (b.Context - a.Context);
    }

    /// <summary>Opens a timed decode of a config at (batch, context); <c>observeLayers</c> asks for the per-layer share.</summary>
    public delegate IStepTimer RigFactory(HybridConfig config, int batch, int context, bool observeLayers);

    /// <summary>Real models with random weights, <paramref name="tokens"/> decode steps per timed run.</summary>
    public static RigFactory DecodeRigs(int tokens) =>
        (config, batch, context, observe) => new DecodeRig(config, batch, context, tokens, observeLayers: observe);

    /// <summary>
    /// Measures a table, every figure interleaved with one reference model (one layer of each operator at the smallest
    /// width, batch 1, the first context). Probes: for every operator, width and batch, a model of
    /// <see cref="LayersPerProbe"/> such layers, split into layers and overhead by per-layer timing; attention at every
    /// context, constant-state operators at the first. Then, per width and batch, <paramref name="fitArchitectures"/>
    /// random architectures (every <see cref="StackFamily"/> in turn, at random contexts of the list) are measured whole:
    /// the in-situ costs are fitted on them, shrunk toward the probe entries (<see cref="FittedCosts.Fit"/>), and the probe
    /// sum's scale too (a least-squares
    /// scale on the layer sum). With <see cref="InterleaveOptions.Rounds"/> &gt; 1 the fitted architectures are measured that
    /// many times over (the whole list per round) and each one's median kept; the probes are measured once.
    /// </summary>
    public static LatencyTable Build(HybridConfig template, IReadOnlyList<string> operators, IReadOnlyList<int> widths,
                                     IReadOnlyList<int> batches,
                                     IReadOnlyList<int> contexts, DeviceIdentity device, InterleaveOptions options,
                                     int fitArchitectures = 24, IProgress<string>? progress = null, RigFactory? rigs = null)
    {
        options.Validate();
        if (widths.Count == 0 || batches.Count == 0 || contexts.Count == 0)
            throw new WrenException("give at least one width, batch and context");
        rigs ??= DecodeRigs(options.DecodeTokens);
        using var _ = no_grad();
        var keys = operators.Select(CanonicalKey).Distinct().ToList();
        var reference = new ReferenceStep(keys, widths.Min(), contexts[0], 0);
        using var referenceRig = rigs(ConfigOfKeys(template, keys, reference.Width), 1, reference.Context, false);
        var clock = new InterleavedClock(referenceRig, options);

        var layers = new List<LayerCost>();
        var overheads = new List<StepOverhead>();
        bool ffnProbed = keys.Any(k => OperatorSpec.ParseLatencyKey(k).Operator.Create is null);
        foreach (int width in widths)
            foreach (var op in keys)
            {
                var spec = OperatorSpec.ParseLatencyKey(op).Operator;
                var config = ConfigOfKeys(template, Enumerable.Repeat(op, LayersPerProbe).ToList(), width);
                foreach (int batch in batches)
                    foreach (int context in spec.CostGrowsWithContext ? contexts : contexts.Take(1))
                    {
                        progress?.Report($"{op} width {width} batch {batch} context {context}");
                        using var rig = rigs(config, batch, context, true);
                        double step = clock.Measure(rig).Ratio;
                        double perLayer = step * rig.LayerShare / LayersPerProbe;
                        layers.Add(new LayerCost(op, width, batch, context + template.NumMemoryTokens, perLayer));
                        // The step overhead is the same whatever the layers: keep the FFN probe's, or the first probe's.
                        if (spec.Create is null || (!ffnProbed && overheads.All(o => o.Width != width || o.Batch != batch)))
                            overheads.Add(new StepOverhead(width, batch, step * (1 - rig.LayerShare)));
                    }
            }
        var probed = new LatencyTable(device, template, reference, layers, overheads, [], [], 1, DateTimeOffset.UtcNow);

        var random = new Random(CalibrationSeed);
        var calibrations = new List<Calibration>();
        var fits = new List<FittedCosts>();
        foreach (int width in widths)
            foreach (int batch in batches)
            {
                if (fitArchitectures == 0) continue;
                var samples = new List<FitSample>();
                double numerator = 0, denominator = 0, overhead = overheads.First(o => o.Width == width && o.Batch == batch).DecodeStep;
                var drawn = Enumerable.Range(0, fitArchitectures)
                    .Select(i => (Config: probed.RandomArchitecture(random, width, FamilyOf(i)),
                                  Context: contexts[random.Next(contexts.Count)]))
                    .ToList();
                var ratios = drawn.Select(_ => new List<double>()).ToList();
                for (int round = 1; round <= options.Rounds; round++)
                    for (int i = 0; i < drawn.Count; i++)
                    {
                        progress?.Report($"in-situ fit, width {width} batch {batch}: {i + 1}/{fitArchitectures}" +
                                         (options.Rounds > 1 ? $" (round {round}/{options.Rounds})" : ""));
                        using var rig = rigs(drawn[i].Config, batch, drawn[i].Context, false);
                        ratios[i].Add(clock.Measure(rig).Ratio);
                    }
                for (int i = 0; i < drawn.Count; i++)
                {
                    var (config, context) = drawn[i];
                    double measured = MedianRound(ratios[i], r => r);
                    var layerKeys = LayerKeys(config);
                    int positions = context + config.NumMemoryTokens;
                    samples.Add(new FitSample(layerKeys, measured - layerKeys.Sum(k => probed.ContextGrowth(k, width, batch, positions))));
                    double sum = probed.LayerSum(config, batch, context);
                    numerator += sum * (measured - overhead);
                    denominator += sum * sum;
                }
                calibrations.Add(new Calibration(width, batch, denominator > 0 ? numerator / denominator : 1.0, fitArchitectures));
                var prior = new FitPrior(overhead, probed.Operators.ToDictionary(k => k, k => probed.LayerStep(k, width, batch, 0)));
                fits.Add(FittedCosts.Fit(width, batch, samples, prior));
            }
        // Reference units → seconds at the median machine speed seen during the build.
        double referenceSeconds = Measurement.Of(clock.ReferenceLevels.ToList()).Median;
        return probed with
        {
            Reference = reference with { StepSeconds = referenceSeconds },
            Calibrations = calibrations,
            Fits = fits,
            Drift = clock.Drift,
        };
    }

    /// <summary>The median round of one figure by <paramref name="ratio"/> (the upper one of two).</summary>
    static T MedianRound<T>(IReadOnlyList<T> rounds, Func<T, double> ratio) => rounds.OrderBy(ratio).ElementAt(rounds.Count / 2);

    /// <summary>The fit draws architectures from this seed; <see cref="Check"/> refuses it so its architectures stay unseen.</summary>
    public const int CalibrationSeed = 1_000_003;

    /// <summary>
    /// A random stack of the table's operators at <paramref name="width"/>, 4–24 layers deep, of one <see cref="StackFamily"/>:
    /// any key at every layer (mixed), one mixer with an FFN after each (homogeneous), two mixers with an FFN after each,
    /// or one or two mixers with two FFNs after each (FFN-heavy). Without FFN keys the blocks are the mixers alone; without
    /// mixer keys every family is mixed.
    /// </summary>
    HybridConfig RandomArchitecture(Random random, int width, StackFamily family)
    {
        var keys = Operators.ToList();
        var mixers = keys.Where(FittedCosts.IsMixer).ToList();
        var ffns = keys.Where(k => !FittedCosts.IsMixer(k)).ToList();
        if (family == StackFamily.Mixed || mixers.Count == 0)
        {
            var drawn = Enumerable.Range(0, random.Next(4, 25)).Select(_ => keys[random.Next(keys.Count)]).ToList();
            return ConfigOfKeys(Template, drawn, width);
        }
        int kinds = family switch
        {
            StackFamily.Homogeneous => 1,
            StackFamily.TwoMixers => 2,
            _ => random.Next(1, 3),
        };
        var chosen = mixers.OrderBy(_ => random.Next()).Take(kinds).ToList();
        int ffnsPerBlock = ffns.Count == 0 ? 0 : family == StackFamily.FfnHeavy ? 2 : 1;
        int block = 1 + ffnsPerBlock, blocks = random.Next((4 + block - 1) / block, 24 / block + 1);
        var layers = new List<string>();
        for (int b = 0; b < blocks; b++)
        {
            layers.Add(chosen[random.Next(chosen.Count)]);
            for (int f = 0; f < ffnsPerBlock; f++) layers.Add(ffns[random.Next(ffns.Count)]);
        }
        return ConfigOfKeys(Template, layers, width);
    }

    /// <summary>The family of the <paramref name="index"/>-th stack drawn at a width: every family in turn.</summary>
    static StackFamily FamilyOf(int index) => (StackFamily)(index % Enum.GetValues<StackFamily>().Length);

    /// <summary>A latency key with its operator's canonical name ("m:…" → "m2:…").</summary>
    static string CanonicalKey(string key) =>
        OperatorSpec.ParseLatencyKey(key) is var (spec, variant) && variant is not null ? $"{spec.Name}:{variant}" : spec.Name;

    /// <summary>The config whose layer <c>i</c> has latency key <c>keys[i]</c>, at <paramref name="width"/>.</summary>
    static HybridConfig ConfigOfKeys(HybridConfig template, IReadOnlyList<string> keys, int width)
    {
        var parsed = keys.Select(OperatorSpec.ParseLatencyKey).ToList();
        var config = template.WithShape(parsed.Select(p => p.Operator.Name).ToList(), width);
        foreach (var layers in Enumerable.Range(0, keys.Count).GroupBy(i => keys[i]))
        {
            var (spec, variant) = parsed[layers.First()];
            config = spec.WithLatencyVariant(config, variant, layers.ToList());
        }
        return config;
    }

    /// <summary>
    /// Measures decode steps of <paramref name="configs"/> for real (random weights), each interleaved with the table's
    /// reference model rebuilt here: seconds at the table's machine speed (reference units × the build's reference step),
    /// directly comparable with <see cref="PredictDecodeStep"/> whatever the machine is doing now. With
    /// <see cref="InterleaveOptions.Rounds"/> &gt; 1 the list is measured that many times over and each figure is the median.
    /// </summary>
    public IReadOnlyList<MeasuredStep> Measure(IReadOnlyList<HybridConfig> configs, int batch, int context, InterleaveOptions options,
                                               IProgress<string>? progress = null, RigFactory? rigs = null)
    {
        options.Validate();
        rigs ??= DecodeRigs(options.DecodeTokens);
        using var _ = no_grad();
        using var referenceRig = rigs(ConfigOfKeys(Template, Reference.LayerKeys, Reference.Width), 1, Reference.Context, false);
        var clock = new InterleavedClock(referenceRig, options);
        var rounds = configs.Select(_ => new List<NormalizedTiming>()).ToList();
        for (int round = 1; round <= options.Rounds; round++)
            for (int i = 0; i < configs.Count; i++)
            {
                var config = configs[i];
                progress?.Report($"measuring {i + 1}/{configs.Count}" + (options.Rounds > 1 ? $" (round {round}/{options.Rounds})" : "") +
                                 $": {string.Join(" ", config.LayerTypes)} at width {config.HiddenSize}");
                using var rig = rigs(config, batch, context, false);
                var timing = clock.Measure(rig);
                progress?.Report($"  {timing.Ratio:F4} reference steps (reference {timing.ReferenceSeconds * 1e6:F0} µs, " +
                                 $"moved {timing.Drift:P0}, {timing.Attempts} attempt(s))");
                rounds[i].Add(timing);
            }
        return rounds.Select(timings =>
        {
            var timing = MedianRound(timings, t => t.Ratio);
            return new MeasuredStep(timing.Ratio * Reference.StepSeconds, timing.Ratio * timing.ReferenceSeconds, timing);
        }).ToList();
    }

    /// <summary>
    /// Predicts and measures <paramref name="countPerWidth"/> random stacks of the table's operators at every width of
    /// the table (every <see cref="StackFamily"/> in turn, so homogeneous and FFN-heavy stacks are among them; at a batch
    /// the table has, after a <paramref name="context"/>-token prompt), each measured interleaved with the reference: the
    /// predictors' errors on architectures drawn from another seed than the fitted ones, per width, per family and overall.
    /// </summary>
    public LatencyCheck Check(int countPerWidth, int context, long seed, InterleaveOptions options, int batch = 1,
                              IProgress<string>? progress = null, RigFactory? rigs = null)
    {
        if (!Batches.Contains(batch))
            throw new WrenException($"the latency table has no entries at batch {batch} (batches {string.Join(", ", Batches)})");
        if (seed == CalibrationSeed) throw new WrenException($"seed {CalibrationSeed} drew the fitted architectures; choose another");
        if (countPerWidth < 1) throw new WrenException("check at least one architecture per width");
        var random = new Random((int)seed);
        var drawn = Widths.SelectMany(w => Enumerable.Range(0, countPerWidth).Select(i => (Family: FamilyOf(i), Width: w)))
            .Select(d => (d.Family, Config: RandomArchitecture(random, d.Width, d.Family))).ToList();
        var measured = Measure(drawn.Select(d => d.Config).ToList(), batch, context, options, progress, rigs);
        var checks = drawn.Select((d, i) => new PredictionCheck(d.Config.LayerTypes, d.Config.HiddenSize,
                                                                measured[i].Seconds / Reference.StepSeconds,
                                                                PredictBySum(d.Config, batch, context),
                                                                PredictByFit(d.Config, batch, context), d.Family))
            .ToList();
        return LatencyCheck.Of(checks, measured, Reference.StepSeconds, context, batch);
    }
}
