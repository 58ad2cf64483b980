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
/// <param name="DecodeStepSeconds">One decode step through one layer.</param>
/// <param name="PrefillSecondsPerToken">Prefill cost per token through one layer (at a prompt of the table's prefill length).</param>
public sealed record LayerCost(string Operator, int Width, int Batch, int Context, double DecodeStepSeconds, double PrefillSecondsPerToken);

/// <summary>Everything outside the layers for one step (embedding, final norm, lm_head, glue), per width and batch.</summary>
public sealed record StepOverhead(int Width, int Batch, double DecodeStepSeconds, double PrefillSecondsPerToken);

/// <summary>Scale on the summed layer costs at one width and batch, fitted on measured mixed architectures.</summary>
public sealed record Calibration(int Width, int Batch, double Scale, int Architectures);

/// <summary>A prediction and the measurement it is checked against.</summary>
public sealed record PredictionCheck(IReadOnlyList<string> LayerTypes, int Width, double PredictedMs, double MeasuredMs)
{
    public double AbsolutePercentError => Math.Abs(PredictedMs - MeasuredMs) / MeasuredMs * 100;
}

/// <summary>
/// Per-device latency lookup table: operator × width × batch (× context for attention) → measured per-layer cost,
/// plus the fixed per-step overhead. <see cref="PredictDecodeStep"/> sums entries to predict a whole architecture's
/// decode latency without building it. The table records its device and template; it refuses to predict for others.
/// </summary>
public sealed record LatencyTable(DeviceIdentity Device, HybridConfig Template, int PrefillTokens, IReadOnlyList<LayerCost> Layers,
                                  IReadOnlyList<StepOverhead> Overheads, IReadOnlyList<Calibration> Calibrations, DateTimeOffset BuiltAt)
{
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    /// <summary>Layers per measurement model: several, so each entry is a median over layers as well as runs.</summary>
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
        try { return JsonSerializer.Deserialize<LatencyTable>(File.ReadAllText(path), Json) ?? throw new WrenException($"{path}: empty latency table"); }
        catch (JsonException e) { throw new WrenException($"{path}: not a latency table ({e.Message})", e); }
    }

    /// <summary>Throws unless the table was measured on <paramref name="device"/>: latencies never carry over between devices.</summary>
    public void EnsureDevice(DeviceIdentity device)
    {
        if (Device.Id != device.Id)
            throw new WrenException($"this latency table was measured on {Device.Processor} ({Device.Kind}, {Device.Threads} threads, id " +
                                    $"{Device.Id}); " +
                                    $"this device is {device.Processor} ({device.Kind}, {device.Threads} threads, id {device.Id}). Build " +
                                    $"a table here with: wren profile lut build");
    }

    /// <summary>Predicted seconds of one decode step of <paramref name="config"/> at a batch and context (meta tokens included in the
    /// context).</summary>
    public double PredictDecodeStep(HybridConfig config, int batch, int context)
    {
        var overhead = Overheads.FirstOrDefault(o => o.Width == config.HiddenSize && o.Batch == batch)
            ?? throw new WrenException($"the latency table has no entry for width {config.HiddenSize} at batch {batch} (widths " +
                                       $"{string.Join(", ", Widths)}; batches {string.Join(", ", Batches)})");
        double scale = Calibrations.FirstOrDefault(c => c.Width == config.HiddenSize && c.Batch == batch)?.Scale ?? 1.0;
        return overhead.DecodeStepSeconds + scale * LayerSum(config, batch, context);
    }

    /// <summary>Uncalibrated sum of the layers' table entries.</summary>
    double LayerSum(HybridConfig config, int batch, int context)
    {
        double total = 0;
        for (int i = 0; i < config.NumLayers; i++)
            total += LayerStep(OperatorRegistry.Of(config, i).LatencyKey(config, i), config.HiddenSize, batch,
                               context + config.NumMemoryTokens);
        return total;
    }

    /// <summary>Predicted seconds to decode <paramref name="tokens"/> tokens after a <paramref name="prompt"/>-token prompt (context at the
    /// midpoint).</summary>
    public double PredictDecode(HybridConfig config, int batch, int prompt, int tokens) =>
        tokens * PredictDecodeStep(config, batch, prompt + tokens / 2);

    /// <summary>One layer's decode step; for attention, linear in context between measured contexts (clamped at the ends).</summary>
    double LayerStep(string op, int width, int batch, int context)
    {
        var points = Layers.Where(l => l.Operator == op && l.Width == width && l.Batch == batch).OrderBy(l => l.Context).ToList();
        if (points.Count == 0)
            throw new WrenException($"the latency table has no '{op}' entry at width {width}, batch {batch} (operators: " +
                                    $"{string.Join(", ", Operators)})");
        if (points.Count == 1 || context <= points[0].Context) return points[0].DecodeStepSeconds;
        for (int i = 1; i < points.Count; i++)
            if (context <= points[i].Context)
            {
                double t = (double)(context - points[i - 1].Context) / (points[i].Context - points[i - 1].Context);
                return points[i - 1].DecodeStepSeconds + t * (points[i].DecodeStepSeconds - points[i - 1].DecodeStepSeconds);
            }
        // Past the last context: extend the last segment (attention's cost grows linearly with the KV it reads).
        var (a, b) = (points[^2], points[^1]);
        return b.DecodeStepSeconds + (context - b.Context) * (b.DecodeStepSeconds - a.DecodeStepSeconds) / (b.Context - a.Context);
    }

    /// <summary>
    /// Measures a table: for every operator of <paramref name="operators"/>, width and batch, a model of
    /// <see cref="LayersPerProbe"/> such layers is decoded with per-layer timing; attention at every context,
    /// recurrent operators (constant state) at the first. Then, per width and batch, <paramref name="calibrationArchitectures"/>
    /// random mixed architectures are measured and one least-squares scale on the layer sum is fitted: a layer in a
    /// mixed stack runs colder than the same layer repeated in a probe.
    /// </summary>
    public static LatencyTable Build(HybridConfig template, IReadOnlyList<string> operators, IReadOnlyList<int> widths,
                                     IReadOnlyList<int> batches,
                                     IReadOnlyList<int> contexts, DeviceIdentity device, int decodeTokens = 16, int repeats = 5, int prefillTokens = 128,
                                     int calibrationArchitectures = 8, IProgress<string>? progress = null)
    {
        var uncalibrated = Probe(template, operators, widths, batches, contexts, device, decodeTokens, repeats, prefillTokens, progress);
        var random = new Random(CalibrationSeed);
        var calibrations = new List<Calibration>();
        foreach (int width in widths)
            foreach (int batch in batches)
            {
                double numerator = 0, denominator = 0;
                var overhead = uncalibrated.Overheads.First(o => o.Width == width && o.Batch == batch).DecodeStepSeconds;
                for (int i = 0; i < calibrationArchitectures; i++)
                {
                    var config = uncalibrated.RandomArchitecture(random, width);
                    progress?.Report($"calibrating width {width} batch {batch}: {i + 1}/{calibrationArchitectures}");
                    double layers = uncalibrated.LayerSum(config, batch, contexts[0]);
                    double measured = MeasureDecodeStep(config, batch, contexts[0], decodeTokens, repeats, seed: i);
                    numerator += layers * (measured - overhead);
                    denominator += layers * layers;
                }
                calibrations.Add(new Calibration(width, batch, denominator > 0 ? numerator / denominator : 1.0, calibrationArchitectures));
            }
        return uncalibrated with { Calibrations = calibrations };
    }

    /// <summary>Calibration draws architectures from this seed; choose another for <see cref="Check"/> so it stays held out.</summary>
    public const int CalibrationSeed = 1_000_003;

    static LatencyTable Probe(HybridConfig template, IReadOnlyList<string> operators, IReadOnlyList<int> widths, IReadOnlyList<int> batches,
                              IReadOnlyList<int> contexts, DeviceIdentity device, int decodeTokens, int repeats, int prefillTokens, IProgress<string>? progress)
    {
        using var _ = no_grad();
        var layers = new List<LayerCost>();
        var overheads = new List<StepOverhead>();
        var keys = operators.Select(CanonicalKey).Distinct().ToList();
        bool ffnProbed = keys.Any(k => OperatorSpec.ParseLatencyKey(k).Operator.Create is null);
        foreach (int width in widths)
            foreach (var op in keys)
            {
                var spec = OperatorSpec.ParseLatencyKey(op).Operator;
                var config = ConfigOfKeys(template, Enumerable.Repeat(op, LayersPerProbe).ToList(), width);
                using var model = new HybridForCausalLM(config);
                Initialization.Apply(model, seed: 0);
                model.eval();
                double prefillPerToken = PrefillPerToken(model, prefillTokens, repeats, out double prefillOverhead);
                foreach (int batch in batches)
                    foreach (int context in spec.CostGrowsWithContext ? contexts : contexts.Take(1))
                    {
                        progress?.Report($"{op} width {width} batch {batch} context {context}");
                        var (layer, other) = DecodeStep(model, batch, context, decodeTokens, repeats);
                        // keyed by KV positions
                        layers.Add(new LayerCost(op, width, batch, context + template.NumMemoryTokens, layer, prefillPerToken));
                        // The step overhead is the same whatever the layers: keep the FFN probe's, or the first probe's.
                        if (spec.Create is null || (!ffnProbed && overheads.All(o => o.Width != width || o.Batch != batch)))
                            overheads.Add(new StepOverhead(width, batch, other, prefillOverhead));
                    }
            }
        return new LatencyTable(device, template, prefillTokens, layers, overheads, [], DateTimeOffset.UtcNow);
    }

    /// <summary>Per-layer decode-step seconds (mean over the probe's layers, median over runs) and the per-step time outside the
    /// layers.</summary>
    static (double Layer, double Other) DecodeStep(HybridForCausalLM model, int batch, int context, int tokens, int repeats)
    {
        using var row = LatencyProfiler.Prefilled(model, context, tokens * (repeats + 2));
        using var cache = model.NewCacheFrom(row, batch, context + tokens * (repeats + 2));
        LatencyProfiler.DecodeSeconds(model, cache, tokens, null);   // warm-up
        var perLayer = new List<double>();
        var other = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            var timings = new LayerTimings(model.Config.NumLayers);
            LatencyProfiler.DecodeSeconds(model, cache, tokens, timings);
            // A model costs the sum of its layers, i.e. their mean, not their median (per-layer times are skewed).
            perLayer.Add(timings.Seconds.Sum() / timings.Seconds.Length / tokens);
            other.Add((timings.RunSeconds - timings.Seconds.Sum()) / tokens);
        }
        return (Measurement.Of(perLayer).Median, Measurement.Of(other).Median);
    }

    static double PrefillPerToken(HybridForCausalLM model, int tokens, int repeats, out double overheadPerToken)
    {
        using var prompt = randint(0, model.Config.VocabSize, [1, tokens]);
        var perLayer = new List<double>();
        var other = new List<double>();
        for (int r = 0; r <= repeats; r++)
        {
            using var cache = model.NewCache(1, tokens);
            var timings = new LayerTimings(model.Config.NumLayers);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using (model.Observe(timings))
            using (NewDisposeScope())
                _ = model.forward(new LMInput(prompt, cache, LastPositionOnly: true)).Logits.cpu();
            if (r == 0) continue;   // warm-up
            perLayer.Add(timings.Seconds.Sum() / timings.Seconds.Length / tokens);
            other.Add((clock.Elapsed.TotalSeconds - timings.Seconds.Sum()) / tokens);
        }
        overheadPerToken = Measurement.Of(other).Median;
        return Measurement.Of(perLayer).Median;
    }

    /// <summary>A random hybrid of the table's operators, 4–24 layers deep, at <paramref name="width"/>.</summary>
    HybridConfig RandomArchitecture(Random random, int width)
    {
        var ops = Operators.ToArray();
        int depth = random.Next(4, 25);
        return ConfigOfKeys(Template, Enumerable.Range(0, depth).Select(_ => ops[random.Next(ops.Length)]).ToList(), width);
    }

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

    /// <summary>Median seconds of one decode step of a freshly built (random-weight) <paramref name="config"/> after a <paramref
    /// name="context"/>-token prompt.</summary>
    public static double MeasureDecodeStep(HybridConfig config, int batch, int context, int tokens, int repeats, int seed)
    {
        using var _ = no_grad();
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed);
        model.eval();
        using var row = LatencyProfiler.Prefilled(model, context, tokens * (repeats + 2));
        using var cache = batch == 1 ? null : model.NewCacheFrom(row, batch, context + tokens * (repeats + 2));
        return Measurement.Repeat(() => LatencyProfiler.DecodeSeconds(model, cache ?? row, tokens, null) / tokens, repeats).Median;
    }

    /// <summary>
    /// Predicts and measures <paramref name="count"/> random hybrids drawn from the table's operators and widths
    /// at batch 1 and the given context: the predictor's error on architectures it was not built from.
    /// </summary>
    public IReadOnlyList<PredictionCheck> Check(int count, int context, long seed, int decodeTokens = 16, int repeats = 5,
                                                IProgress<string>? progress = null)
    {
        if (seed == CalibrationSeed) throw new WrenException($"seed {CalibrationSeed} drew the calibration architectures; choose another");
        var random = new Random((int)seed);
        var widths = Widths.ToArray();
        var results = new List<PredictionCheck>();
        for (int i = 0; i < count; i++)
        {
            var config = RandomArchitecture(random, widths[random.Next(widths.Length)]);
            progress?.Report($"architecture {i + 1}/{count}: {string.Join(" ", config.LayerTypes)} at width {config.HiddenSize}");
            double predicted = PredictDecodeStep(config, 1, context) * 1e3;
            double measured = MeasureDecodeStep(config, 1, context, decodeTokens, repeats, seed: 100 + i) * 1e3;
            results.Add(new PredictionCheck(config.LayerTypes, config.HiddenSize, predicted, measured));
        }
        return results;
    }
}
