using System.Diagnostics;
using TorchSharp;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>What <see cref="LatencyProfiler"/> measures; the defaults fit a 2-core CPU (the paper used P = 8k on GPUs).</summary>
public sealed record ProfileOptions
{
    /// <summary>Prompt length P before decoding, and the prefill measured.</summary>
    public int PromptTokens { get; init; } = 256;
    /// <summary>Tokens N decoded per timed run.</summary>
    public int DecodeTokens { get; init; } = 32;
    public int Repeats { get; init; } = 5;
    public int Warmup { get; init; } = 1;
    /// <summary>Contexts of the latency-vs-context curve.</summary>
    public IReadOnlyList<int> Contexts { get; init; } = [256, 1024, 4096];
    /// <summary>Context length of the throughput measurement.</summary>
    public int ThroughputContext { get; init; } = 1024;
    /// <summary>Weights + caches + activations must fit this for the throughput batch.</summary>
    public long MemoryBudgetBytes { get; init; } = 4L << 30;
    public int MaxBatch { get; init; } = 256;

    public void Validate()
    {
        if (PromptTokens < 1 || DecodeTokens < 1 || Repeats < 1
            || Warmup < 0) throw new WrenException("prompt tokens, decode tokens and repeats must be positive");
        if (Contexts.Any(c => c < 1) || ThroughputContext < 1) throw new WrenException("contexts must be positive");
        if (MemoryBudgetBytes <= 0 || MaxBatch < 1) throw new WrenException("memory budget and max batch must be positive");
    }
}

public sealed record ContextPoint(int Context, Measurement MsPerToken, long CacheBytesPerSequence);
public sealed record BatchPoint(int Batch, Measurement TokensPerSecond, long MemoryBytes);
public sealed record LayerTypeTime(string LayerType, int Layers, double MsPerToken, double Share);

/// <summary>Everything measured about one model on one device.</summary>
/// <param name="MsPerToken">Median batch-1 decode ms/token over the timed runs.</param>
/// <param name="RooflineMs">Weight bytes ÷ <paramref name="CopyBytesPerSecond"/>, in ms: the decode step's memory roofline.</param>
/// <param name="CopyBytesPerSecond">
/// Copy bandwidth measured alternately with the decode runs (best of as many probes; <see cref="InterleavedBandwidth"/>),
/// not the cached device facts: the machine's bandwidth moves from day to day.
/// </param>
public sealed record ModelProfile(
    string Name, DeviceIdentity Device, long Parameters, long WeightBytes, IReadOnlyList<string> LayerTypes, int HiddenSize,
    int PromptTokens, int DecodeTokens, Measurement PrefillSeconds, Measurement DecodeSeconds,
    double MsPerToken, double RooflineMs, double CopyBytesPerSecond, IReadOnlyList<ContextPoint> LatencyByContext,
    int ThroughputContext, long MemoryBudgetBytes, int LargestBatch, IReadOnlyList<BatchPoint> Throughput,
    IReadOnlyList<LayerTypeTime> Breakdown, double OtherMsPerToken, long PeakRssBytes, IReadOnlyList<string> Warnings)
{
    /// <summary>The fastest timed decode run, ms/token.</summary>
    public double BestMsPerToken => DecodeSeconds.Min / DecodeTokens * 1e3;

    /// <summary>Best decode ms/token ÷ <see cref="RooflineMs"/>: best against best, as the decode benchmark reports it.</summary>
    public double RooflineRatio => BestMsPerToken / RooflineMs;
}

/// <summary>
/// Real-device latency, throughput and memory of a model, measured the way the Nemotron-Flash paper did: decode N
/// tokens at batch 1 after a P-token prompt; throughput at a long context with the largest batch that fits. The decode
/// runs alternate with copy-bandwidth probes, and the roofline is against that bandwidth (issue 12 part 6).
/// </summary>
public static class LatencyProfiler
{
    public static ModelProfile Profile(HybridForCausalLM model, string name, ProfileOptions options, DeviceProfile device,
                                       IProgress<string>? progress = null) =>
        Profile(model, name, options, device, progress, () => DeviceFacts.CopyBandwidth(InterleavedBandwidth.ProbeBytes));

    /// <summary><see cref="Profile(HybridForCausalLM, string, ProfileOptions, DeviceProfile, IProgress{string}?)"/> with the
    /// copy-bandwidth probe given (bytes per second; tests use a synthetic one).</summary>
    internal static ModelProfile Profile(HybridForCausalLM model, string name, ProfileOptions options, DeviceProfile device,
                                         IProgress<string>? progress, Func<double> copyBandwidth)
    {
        options.Validate();
        using var _ = no_grad();
        var config = model.Config;
        var footprint = ModelFootprint.Of(config, model.Placement.Dtype, model.Placement.Weights);
        var warnings = new List<string>();
        Measurement Checked(string what, Measurement m)
        {
            if (!m.Trusted) warnings.Add($"{what}: spread {m.Spread:P0} of the median over {m.Samples} runs; the machine was noisy, " +
                                         $"rerun with more --repeats");
            return m;
        }
        int P = options.PromptTokens, N = options.DecodeTokens, runs = options.Repeats + options.Warmup;
        var tokens = RandomTokens(config.VocabSize, Math.Max(P, options.Contexts.DefaultIfEmpty(0).Max()));

        progress?.Report($"{name}: prefill {P} tokens");
        var prefill = Checked("prefill", Measurement.Repeat(() =>
        {
            using var cache = model.NewCache(1, P);
            return Time(() => model.forward(new LMInput(tokens.narrow(1, 0, P), cache, LastPositionOnly: true)));
        }, options.Repeats, options.Warmup));

        progress?.Report($"{name}: decode {N} tokens after {P}, alternating with copy-bandwidth probes");
        // Layer times accumulate over the same timed runs whose median is reported, so the breakdown adds up.
        var timings = new LayerTimings(config.NumLayers);
        InterleavedBandwidth interleaved;
        using (var cache = Prefilled(model, tokens, P, N * (runs + 1)))
        {
            for (int i = 0; i < options.Warmup; i++) DecodeSeconds(model, cache, N, null);
            interleaved = InterleavedBandwidth.Measure(() => DecodeSeconds(model, cache, N, timings), options.Repeats, copyBandwidth);
        }
        var decode = Checked("decode", Measurement.Of(interleaved.RunSeconds));
        double msPerToken = decode.Median / N * 1e3;
        double measuredTokens = (double)N * options.Repeats;
        var breakdown = config.LayerTypes.Select((t, i) => (type: OperatorRegistry.Canonical(t), i)).GroupBy(x => x.type)
            .Select(g => new LayerTypeTime(g.Key, g.Count(), g.Sum(x => timings.Seconds[x.i]) / measuredTokens * 1e3, 0))
            .ToList();
        double totalMs = timings.RunSeconds / measuredTokens * 1e3;
        breakdown = breakdown.Select(b => b with { Share = b.MsPerToken / totalMs }).ToList();
        double other = Math.Max(0, totalMs - breakdown.Sum(b => b.MsPerToken));

        var byContext = new List<ContextPoint>();
        foreach (int context in options.Contexts)
        {
            progress?.Report($"{name}: decode at context {context}");
            using var cache = Prefilled(model, tokens, context, N * (runs + 1));
            var m = Checked($"decode at context {context}",
                            Measurement.Repeat(() => DecodeSeconds(model, cache, N, null) / N * 1e3, options.Repeats, options.Warmup));
            byContext.Add(new ContextPoint(context, m, footprint.CacheBytes(1, context)));
        }

        int C = options.ThroughputContext;
        int largest = LargestBatch(footprint, C + N * (runs + 1), options.MemoryBudgetBytes, options.MaxBatch);
        var throughput = new List<BatchPoint>();
        if (largest == 0) warnings.Add($"not even one sequence of {C} tokens fits the memory budget of " +
                                       $"{options.MemoryBudgetBytes / (1 << 20)} MiB");
        else
        {
            using var row = Prefilled(model, C, N * (runs + 1));
            foreach (int batch in BatchLadder(largest))
            {
                progress?.Report($"{name}: throughput at batch {batch}, context {C}");
                using var cache = model.NewCacheFrom(row, batch, C + N * (runs + 1));
                var m = Checked($"throughput at batch {batch}",
                                Measurement.Repeat(() => batch * N / DecodeSeconds(model, cache, N, null), options.Repeats,
                                                   options.Warmup));
                throughput.Add(new BatchPoint(batch, m, MemoryNeeded(footprint, batch, C + N * (runs + 1))));
            }
        }
        tokens.Dispose();
        return new ModelProfile(name, device.Identity, footprint.Parameters, footprint.WeightBytes, config.LayerTypes, config.HiddenSize,
            P, N, prefill, decode, msPerToken, interleaved.Roofline(footprint.WeightBytes) * 1e3, interleaved.CopyBytesPerSecond, byContext,
            C, options.MemoryBudgetBytes, largest, throughput, breakdown, other, PeakResidentBytes(), warnings);
    }

    /// <summary>Bytes a decode batch needs: weights, caches, and the per-row activations of one step (a few H-, FFN- and V-sized
    /// buffers).</summary>
    public static long MemoryNeeded(ModelFootprint footprint, int batch, int tokensPerRow)
    {
        var c = footprint.Config;
        long activations = 4L * batch * (4L * c.HiddenSize + 2L * Math.Max(c.FfnSize, c.MambaDInner * 2) + 2L * c.VocabSize);
        return footprint.WeightBytes + footprint.CacheBytes(batch, tokensPerRow) + activations;
    }

    /// <summary>The largest batch (≤ <paramref name="maxBatch"/>) whose <see cref="MemoryNeeded"/> fits <paramref name="budget"/>; 0 if
    /// none.</summary>
    public static int LargestBatch(ModelFootprint footprint, int tokensPerRow, long budget, int maxBatch)
    {
        int low = 0, high = maxBatch;
        while (low < high)
        {
            int mid = (low + high + 1) / 2;
            if (MemoryNeeded(footprint, mid, tokensPerRow) <= budget) low = mid; else high = mid - 1;
        }
        return low;
    }

    /// <summary>1, 2, 4, … below <paramref name="largest"/>, then <paramref name="largest"/> itself.</summary>
    public static IEnumerable<int> BatchLadder(int largest)
    {
        for (int b = 1; b < largest; b *= 2) yield return b;
        yield return largest;
    }

    static Tensor RandomTokens(int vocab, int length) => randint(0, vocab, [1, Math.Max(length, 1)]);

    static ModelCache Prefilled(HybridForCausalLM model, Tensor tokens, int length, int room)
    {
        var cache = model.NewCache(1, length + room);
        if (length == 0) return cache;   // decoding from the start (after the meta tokens)
        using (NewDisposeScope()) model.forward(new LMInput(tokens.narrow(1, 0, length), cache, LastPositionOnly: true));
        return cache;
    }

    /// <summary>A batch-1 cache after a random <paramref name="length"/>-token prompt, with room for <paramref name="room"/> more
    /// tokens.</summary>
    public static ModelCache Prefilled(HybridForCausalLM model, int length, int room)
    {
        using var tokens = RandomTokens(model.Config.VocabSize, length);
        return Prefilled(model, tokens, length, room);
    }

    /// <summary>Seconds to decode <paramref name="steps"/> greedy tokens for every row of <paramref name="cache"/>.</summary>
    public static double DecodeSeconds(HybridForCausalLM model, ModelCache cache, int steps, LayerTimings? timings)
    {
        var next = zeros([cache.Batch, 1], ScalarType.Int64, cache.NextPosition.device);
        using var observing = timings is null ? null : model.Observe(timings);
        var clock = Stopwatch.StartNew();
        for (int t = 0; t < steps; t++)
        {
            using var scope = NewDisposeScope();
            var chosen = model.forward(new LMInput(next, cache, LastPositionOnly: true)).Logits.argmax(-1);
            next.Dispose();
            next = chosen.MoveToOuterDisposeScope();
        }
        _ = next.cpu();   // wait for the device
        double seconds = clock.Elapsed.TotalSeconds;
        next.Dispose();
        if (timings is not null) timings.RunSeconds += seconds;
        return seconds;
    }

    static double Time(Func<LMOutput> run)
    {
        var clock = Stopwatch.StartNew();
        using (NewDisposeScope()) _ = run().Logits.cpu();
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Peak resident set of this process (VmHWM), or 0 where /proc is unavailable.</summary>
    public static long PeakResidentBytes()
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { return 0; }
    }
}
