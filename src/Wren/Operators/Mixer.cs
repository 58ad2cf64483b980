using TorchSharp;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>Input of a token mixer.</summary>
/// <param name="Hidden">Normalized hidden states [B, T, H].</param>
/// <param name="Positions">Absolute positions [B, T] (int64), meta tokens included; only attention reads them.</param>
/// <param name="Padding">Left padding of this chunk, or null when every row is full.</param>
/// <param name="State">Decode state to continue from and update in place; null runs from a zero state and keeps nothing.</param>
/// <param name="Carry">What earlier layers of the same forward hand to later ones (RWKV-7's value residual), or null outside a
/// model forward.</param>
public sealed record MixerInput(Tensor Hidden, Tensor Positions, LeftPadding? Padding = null, IMixerState? State = null,
                                LayerCarry? Carry = null);

/// <summary>
/// Tensors one layer of a forward hands to later layers of the same forward, created by the layer stack for each forward and
/// disposed after it: RWKV-7's value residual (fla's <c>v_first</c>, <see cref="Rwkv7"/>) and the keys and values a Hymba
/// layer shares with its kv_reuse_group (modeling_hymba.py's <c>shared_kv_cache_dict</c>, <see cref="Hymba"/>). Not a decode
/// state: each forward recomputes it for its own tokens.
/// </summary>
public sealed class LayerCarry : IDisposable
{
    Tensor? firstValues;
    readonly Dictionary<int, KvView> sharedKv = [];

    /// <summary>Keeps (its own handles of) the keys and values layer <paramref name="layer"/> attended over, for its consumers.</summary>
    internal void ShareKv(int layer, KvView kv)
    {
        if (sharedKv.Remove(layer, out var old)) DisposeView(old);
        sharedKv[layer] = new KvView(kv.Keys.alias().DetachFromDisposeScope(), kv.Values.alias().DetachFromDisposeScope(),
                                     kv.Positions.alias().DetachFromDisposeScope(), kv.Cache);
    }

    /// <summary>The keys and values layer <paramref name="layer"/> shared in this forward.</summary>
    /// <exception cref="InvalidOperationException">That layer has not run in this forward.</exception>
    internal KvView SharedKvOf(int layer) => sharedKv.TryGetValue(layer, out var kv)
        ? kv
        : throw new InvalidOperationException($"layer {layer}'s keys and values are not in this forward (its consumers run after it, " +
                                              "inside one model forward)");

    static void DisposeView(KvView kv)
    {
        kv.Keys.Dispose();
        kv.Values.Dispose();
        kv.Positions.Dispose();
    }

    /// <summary>
    /// The values [B, T, value_dim] (model dtype) of the first rwkv7 layer, for the same tokens; later rwkv7 layers lerp
    /// towards them. Set by that layer (the carry keeps its own handle), null before.
    /// </summary>
    public Tensor? FirstValues
    {
        get => firstValues;
        set
        {
            firstValues?.Dispose();
            firstValues = value?.alias().DetachFromDisposeScope();
        }
    }

    public void Dispose()
    {
        firstValues?.Dispose();
        firstValues = null;
        foreach (var kv in sharedKv.Values) DisposeView(kv);
        sharedKv.Clear();
    }
}

/// <summary>How big a request's caches must be: batch rows, positions per row (meta tokens included), and the most left padding of any
/// row.</summary>
public sealed record CacheShape(int Batch, int MaxLength, int MaxLeftPad = 0);

/// <summary>
/// A token-mixing operator (attention, Mamba2, DeltaNet, ...). It has a parallel form (training and
/// prefill) and a recurrent form (decode); <c>forward</c> picks one by the number of new tokens.
/// </summary>
public abstract class Mixer(string name) : nn.Module<MixerInput, Tensor>(name)
{
    /// <summary>An empty (zero) decode state for a request of the given shape.</summary>
    public abstract IMixerState NewState(CacheShape shape, Device device);
}

/// <summary>Per-layer decode state. Owns its tensors (detached from every dispose scope) and frees them on Dispose.</summary>
public interface IMixerState : IDisposable
{
    /// <summary>Bytes held by the state's tensors.</summary>
    long Bytes { get; }

    /// <summary>Fills every row of this (empty) state from row 0 of <paramref name="prefix"/>, a batch-1 state of the same layer (the
    /// meta-token state).</summary>
    void CopyPrefixFrom(IMixerState prefix);
}

/// <summary>
/// State of a recurrent mixer: short-conv histories [B, C, K−1] and the recurrent matrix state
/// [B, heads, ·, ·] in float32. Fixed size whatever the context length.
/// </summary>
public sealed class RecurrentState : IMixerState
{
    public Tensor[] Conv { get; }
    public Tensor Recurrent { get; }

    public RecurrentState(Tensor[] conv, Tensor recurrent)
    {
        Conv = conv.Select(t => t.DetachFromDisposeScope()).ToArray();
        Recurrent = recurrent.DetachFromDisposeScope();
    }

    public long Bytes => Conv.Sum(c => c.NumberOfElements * c.ElementSize) + Recurrent.NumberOfElements * Recurrent.ElementSize;

    public void CopyPrefixFrom(IMixerState prefix)
    {
        var source = (RecurrentState)prefix;
        using var scope = NewDisposeScope();
        for (int i = 0; i < Conv.Length; i++) Conv[i].copy_(source.Conv[i].narrow(0, 0, 1).expand_as(Conv[i]));
        Recurrent.copy_(source.Recurrent.narrow(0, 0, 1).expand_as(Recurrent));
    }

    public void Dispose()
    {
        foreach (var c in Conv) c.Dispose();
        Recurrent.Dispose();
    }
}
