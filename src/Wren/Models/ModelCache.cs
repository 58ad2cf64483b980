using TorchSharp;
using Wren.Operators;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// Decode caches of one request: a state per mixer layer (null for FFN-only layers) and the next position of
/// every row. Created by <see cref="HybridForCausalLM.NewCache"/>, already holding the meta-token state;
/// passed in <see cref="LMInput"/>, never stored in the model. Owns and frees its tensors.
/// </summary>
public sealed class ModelCache : IDisposable
{
    public IReadOnlyList<IMixerState?> Layers { get; }
    /// <summary>Next position of each row [B] (int64); meta tokens occupy 0…M−1.</summary>
    public Tensor NextPosition { get; }
    public CacheShape Shape { get; }

    internal ModelCache(IReadOnlyList<IMixerState?> layers, CacheShape shape, long firstPosition, Device device)
    {
        Layers = layers;
        Shape = shape;
        NextPosition = full([shape.Batch], firstPosition, ScalarType.Int64, device).DetachFromDisposeScope();
    }

    public int Batch => Shape.Batch;

    /// <summary>Bytes held by every layer's state.</summary>
    public long Bytes => Layers.Sum(s => s?.Bytes ?? 0);

    internal void CopyPrefixFrom(ModelCache prefix)
    {
        for (int i = 0; i < Layers.Count; i++) Layers[i]?.CopyPrefixFrom(prefix.Layers[i]!);
    }

    public void Dispose()
    {
        foreach (var layer in Layers) layer?.Dispose();
        NextPosition.Dispose();
    }
}
