using TorchSharp;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>Parameters of one layer type, summed over its layers.</summary>
public sealed record LayerTypeParameters(string LayerType, int Layers, long Parameters);

/// <summary>
/// Sizes of a model without allocating it (parameters are counted on the meta device) and the exact bytes its
/// decode caches allocate: attention grows with context, sliding-window attention stops at W+1 slots, recurrent
/// mixers are constant.
/// </summary>
public sealed record ModelFootprint(HybridConfig Config, ScalarType DType, long Parameters, long WeightBytes, long EmbeddingParameters,
                                    IReadOnlyList<LayerTypeParameters> PerLayerType)
{
    /// <summary>
    /// Sizes with activations in <paramref name="dtype"/> and matrices stored as <paramref name="weights"/> (int8 and 4-bit
    /// scales count as bytes, not parameters; parameters are those of the unpacked matrices).
    /// </summary>
    public static ModelFootprint Of(HybridConfig config, ScalarType dtype = ScalarType.Float32,
                                    WeightPrecision weights = WeightPrecision.Float32)
    {
        using var model = new HybridForCausalLM(config, new Placement(dtype, new Device("meta"), weights));
        long bytes = model.named_parameters().Sum(p => p.parameter.NumberOfElements * p.parameter.ElementSize);
        // Parameters are counted on the unpacked layout: a 4-bit matrix stores two per byte.
        using var unpacked = new HybridForCausalLM(config, new Placement(dtype, new Device("meta")));
        var named = unpacked.named_parameters().ToList();
        long total = named.Sum(p => p.parameter.NumberOfElements);
        long embedding = named.Where(p => p.name is "model.embed_tokens.weight" or "lm_head.weight").Sum(p => p.parameter.NumberOfElements);
        var perType = config.LayerTypes.Select((t, i) => (type: OperatorRegistry.Canonical(t), i))
            .GroupBy(x => x.type)
            .Select(g => new LayerTypeParameters(g.Key, g.Count(),
                named.Where(p => g.Any(x => p.name.StartsWith($"model.layers.{x.i}.", StringComparison.Ordinal))).Sum(p =>
                    p.parameter.NumberOfElements)))
            .ToList();
        return new ModelFootprint(config, dtype, total, bytes, embedding, perType);
    }

    int ElementSize => DType is ScalarType.Float32 ? 4 : 2;

    /// <summary>Bytes the caches of <paramref name="batch"/> sequences allocate for <paramref name="tokens"/> tokens each (meta tokens
    /// added).</summary>
    public long CacheBytes(int batch, long tokens)
    {
        long positions = Config.NumMemoryTokens + tokens;
        return batch * Enumerable.Range(0, Config.NumLayers).Sum(i =>
            OperatorRegistry.Of(Config, i).StateBytes(Config, i, positions, ElementSize));
    }

    /// <summary>Cache growth per extra token of context once every window is full (full-attention layers only, today).</summary>
    public long CacheBytesPerToken => CacheBytes(1, LongContext + 1) - CacheBytes(1, LongContext);

    /// <summary>A context past every sliding window.</summary>
    const long LongContext = 1L << 30;
}
