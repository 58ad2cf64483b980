using TorchSharp;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// Causal softmax attention with GQA, optional per-head q/k RMSNorm (eps 1e-6), RoPE after the norm,
/// and an optional sliding window W: query i sees keys j with i − W ≤ j ≤ i (W+1 keys, flash-attn's
/// convention, which the Nemotron-Flash full forward uses). HF module name: <c>self_attn</c>.
/// </summary>
public sealed class Attention : Mixer
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly RmsNorm? q_norm, k_norm;
    readonly Rotary? rotary;
    readonly int heads, kvHeads, qkDim, vDim;

    /// <summary>Sliding window W, or null for full attention.</summary>
    public int? Window { get; }

    public Attention(HybridConfig config, int layer, Placement placement) : base(nameof(Attention))
    {
        int hidden = config.HiddenSize;
        heads = config.NumAttentionHeads;
        kvHeads = config.KvHeads;
        qkDim = config.AttnQkHeadDim;
        vDim = config.AttnVHeadDim;
        Window = config.WindowOf(layer);
        q_proj = new Linear(hidden, heads * qkDim, placement);
        k_proj = new Linear(hidden, kvHeads * qkDim, placement);
        v_proj = new Linear(hidden, kvHeads * vDim, placement);
        o_proj = new Linear(heads * vDim, hidden, placement);
        if (config.KqNorm == "rms")
        {
            q_norm = new RmsNorm(qkDim, 1e-6, placement);
            k_norm = new RmsNorm(qkDim, 1e-6, placement);
        }
        if (config.Rope) rotary = new Rotary(config);
        RegisterComponents();
    }

    public override IMixerState NewState(CacheShape shape, Device device)
    {
        int capacity = shape.MaxLength + shape.MaxLeftPad;
        // A ring of W+1 real keys, plus room for pad slots that may sit among them (see AttentionState).
        if (Window is { } w) capacity = Math.Min(capacity, w + 1 + shape.MaxLeftPad);
        return new AttentionState(shape.Batch, kvHeads, capacity, qkDim, vDim, Window, q_proj.Weight.dtype, device);
    }

    public override Tensor forward(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var qkv = Linear.ProjectMany(x, q_proj, k_proj, v_proj);
        var q = qkv[0].reshape(B, T, heads, qkDim).transpose(1, 2);                // [B, nh, T, dqk]
        var k = qkv[1].reshape(B, T, kvHeads, qkDim).transpose(1, 2);              // [B, nkv, T, dqk]
        var v = qkv[2].reshape(B, T, kvHeads, vDim).transpose(1, 2);               // [B, nkv, T, dv]
        if (q_norm is not null) { q = q_norm.forward(q); k = k_norm!.forward(k); }
        if (rotary is not null)
        {
            var (cos, sin) = rotary.Tables(input.Positions, q.dtype);
            q = Rotary.Apply(q, cos, sin);
            k = Rotary.Apply(k, cos, sin);
        }

        var padding = input.Padding;
        var newKeyPositions = padding is null ? input.Positions : input.Positions.masked_fill(padding.Mask.logical_not(), -1);
        Tensor keys = k, values = v, keyPositions = newKeyPositions;
        bool decodeNeedsMask = false;
        if (input.State is AttentionState state)
        {
            (keys, values, keyPositions) = state.Append(k, v, newKeyPositions, padding is not null);
            decodeNeedsMask = state.DecodeNeedsMask;
        }
        else if (input.State is not null) throw new ArgumentException("attention needs an AttentionState");

        if (T == 1 && input.State is AttentionState cache && Kernels.DecodeSteps.Applies(q, cache.Keys))
        {
            var step = Kernels.DecodeSteps.AttentionStep(q, cache.Keys, cache.Values, Math.Min(cache.Count, cache.Capacity),
                                                         decodeNeedsMask ? cache.Positions : null, input.Positions, Window);
            return o_proj.forward(step.transpose(1, 2).reshape(B, T, heads * vDim)).MoveToOuterDisposeScope();
        }
        Tensor? mask = null;
        bool causal = false;
        if (input.State is null && padding is null && Window is null) causal = true;          // plain full forward
        else if (T > 1 || decodeNeedsMask)                                                 // otherwise a decode step sees every cached key
            mask = BuildMask(input.Positions, keyPositions, Window, padding);
        var o = Attend(q, keys, values, mask, causal);                                       // [B, nh, T, dv]
        return o_proj.forward(o.transpose(1, 2).reshape(B, T, heads * vDim)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// [B, 1, T, S] boolean mask: key j is visible to query i when it is a real key (position ≥ 0), not in the
    /// future, and inside the window. Pad queries see every slot so their rows stay finite (they are never read).
    /// </summary>
    static Tensor BuildMask(Tensor queryPositions, Tensor keyPositions, int? window, LeftPadding? padding)
    {
        var qp = queryPositions.unsqueeze(2);                 // [B, T, 1]
        var kp = keyPositions.unsqueeze(1);                   // [B, 1, S]
        var allowed = (kp >= 0).logical_and(kp <= qp);
        if (window is { } w) allowed = allowed.logical_and(qp - kp <= w);
        if (padding is not null) allowed = allowed.logical_or(padding.Mask.logical_not().unsqueeze(2));
        return allowed.unsqueeze(1);
    }

    Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        int group = heads / kvHeads;
        long B = q.shape[0], T = q.shape[2];
        if (group > 1 && T == 1)
        {
            // One query per head: fold the group into the query axis instead of copying the KV cache per head.
            var grouped = q.reshape(B, kvHeads, group, qkDim);
            var o = nn.functional.scaled_dot_product_attention(grouped, k, v, mask, 0.0, false);
            return o.reshape(B, heads, 1, vDim);
        }
        if (group > 1)
        {
            k = k.repeat_interleave(group, dim: 1);
            v = v.repeat_interleave(group, dim: 1);
        }
        return nn.functional.scaled_dot_product_attention(q, k, v, mask, 0.0, causal);
    }
}

/// <summary>
/// KV cache of one attention layer: keys/values [B, nkv, capacity, d] and the absolute position of every
/// slot [B, capacity] (−1 for empty or pad slots). Slots are written in order, modulo the capacity: for a
/// sliding window that is a ring whose oldest slot falls out of every future query's window.
/// </summary>
public sealed class AttentionState : IMixerState
{
    public Tensor Keys { get; }
    public Tensor Values { get; }
    public Tensor Positions { get; }
    public long Capacity { get; }
    public int? Window { get; }
    /// <summary>Slots written so far (the same for every row: pads take slots too).</summary>
    public long Count { get; private set; }
    public bool HasPads { get; private set; }

    /// <summary>
    /// Serving: rows hold different lengths, and the key at position p of every row sits in slot p mod capacity (the
    /// slot a batch-1 cache starting at position 0 uses), so a row decodes exactly as it would alone. Set on views.
    /// </summary>
    public bool Ragged { get; }

    /// <summary>False when every stored slot is a real key inside the newest query's window, so a decode step needs no mask.</summary>
    public bool DecodeNeedsMask => HasPads || Ragged || (Window is { } w && Capacity > w + 1);

    public AttentionState(long batch, long kvHeads, long capacity, long qkDim, long vDim, int? window, ScalarType dtype, Device device)
    {
        Keys = zeros([batch, kvHeads, capacity, qkDim], dtype, device).DetachFromDisposeScope();
        Values = zeros([batch, kvHeads, capacity, vDim], dtype, device).DetachFromDisposeScope();
        Positions = full([batch, capacity], -1L, ScalarType.Int64, device).DetachFromDisposeScope();
        Capacity = capacity;
        Window = window;
    }

    /// <summary>
    /// A view of rows [<paramref name="firstRow"/>, +<paramref name="rows"/>) of <paramref name="whole"/> sharing its
    /// storage, holding <paramref name="count"/> slots (the longest row's length); see <see cref="Ragged"/>.
    /// </summary>
    internal AttentionState(AttentionState whole, long firstRow, long rows, long count, bool ragged)
    {
        Keys = whole.Keys.narrow(0, firstRow, rows).DetachFromDisposeScope();
        Values = whole.Values.narrow(0, firstRow, rows).DetachFromDisposeScope();
        Positions = whole.Positions.narrow(0, firstRow, rows).DetachFromDisposeScope();
        Capacity = whole.Capacity;
        Window = whole.Window;
        Count = count;
        Ragged = ragged;
    }

    public long Bytes => Keys.NumberOfElements * Keys.ElementSize + Values.NumberOfElements * Values.ElementSize
                         + Positions.NumberOfElements * Positions.ElementSize;

    /// <summary>Stores the new keys and returns every key the new queries may need (in any slot order).</summary>
    internal (Tensor Keys, Tensor Values, Tensor Positions) Append(Tensor k, Tensor v, Tensor positions, bool padded)
    {
        long T = k.shape[2];
        HasPads |= padded;
        if (Ragged && T == 1)
        {
            // Each row writes its own slot, position mod capacity (the caller keeps Count at the longest row's length).
            using var scope = NewDisposeScope();
            var slot = positions % Capacity;                                                  // [B, 1]
            Keys.scatter_(2, slot.view(-1, 1, 1, 1).expand_as(k), k);
            Values.scatter_(2, slot.view(-1, 1, 1, 1).expand_as(v), v);
            Positions.scatter_(1, slot, positions);
            Count = Math.Max(Count, positions.max().item<long>() + 1);
            return (Keys, Values, Positions);
        }
        if (Count + T <= Capacity)
        {
            Keys.narrow(2, Count, T).copy_(k);
            Values.narrow(2, Count, T).copy_(v);
            Positions.narrow(1, Count, T).copy_(positions);
            Count += T;
            return (Keys.narrow(2, 0, Count), Values.narrow(2, 0, Count), Positions.narrow(1, 0, Count));
        }
        if (Window is null)
            throw new WrenException($"KV cache is full ({Capacity} positions); create the cache with a larger MaxLength");
        if (T == 1)
        {
            // The slot overwritten holds a key at least W+1 positions older than the new query.
            long slot = Count % Capacity;
            Keys.narrow(2, slot, 1).copy_(k);
            Values.narrow(2, slot, 1).copy_(v);
            Positions.narrow(1, slot, 1).copy_(positions);
            Count += 1;
            return (Keys, Values, Positions);
        }
        // Several new tokens past the ring's end: attend over old and new together, then keep the newest.
        long held = Math.Min(Count, Capacity);
        var allKeys = torch.cat([Keys.narrow(2, 0, held), k], 2);
        var allValues = torch.cat([Values.narrow(2, 0, held), v], 2);
        var allPositions = torch.cat([Positions.narrow(1, 0, held), positions], 1);
        long keep = Math.Min(T, Capacity);
        using (var slots = (arange(Count + T - keep, Count + T, device: Keys.device) % Capacity))
        {
            Keys.index_copy_(2, slots, k.narrow(2, T - keep, keep));
            Values.index_copy_(2, slots, v.narrow(2, T - keep, keep));
            Positions.index_copy_(1, slots, positions.narrow(1, T - keep, keep));
        }
        Count += T;
        return (allKeys, allValues, allPositions);
    }

    public void CopyPrefixFrom(IMixerState prefix)
    {
        var source = (AttentionState)prefix;
        long n = Math.Min(Math.Min(source.Count, source.Capacity), Capacity);
        if (n == 0) return;
        using var scope = NewDisposeScope();
        var order = (arange(source.Count - n, source.Count, device: Keys.device) % source.Capacity);   // oldest first
        long B = Keys.shape[0];
        Keys.narrow(2, 0, n).copy_(source.Keys.index_select(2, order).expand(B, -1, -1, -1));
        Values.narrow(2, 0, n).copy_(source.Values.index_select(2, order).expand(B, -1, -1, -1));
        Positions.narrow(1, 0, n).copy_(source.Positions.index_select(1, order).expand(B, -1));
        Count = n;
        HasPads = source.HasPads;
    }

    public void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
        Positions.Dispose();
    }
}
