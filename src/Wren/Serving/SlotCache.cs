using TorchSharp;
using Wren.Models;
using Wren.Operators;
using static TorchSharp.torch;

namespace Wren.Serving;

/// <summary>
/// The decode caches of the serving engine: one <see cref="ModelCache"/> whose rows are slots, each holding one
/// request at its own length. Every attention layer keeps the key of position p in slot <see cref="AttentionState.SlotOf(long)"/>
/// (p mod capacity; a sliding window is a ring of W+1 slots, after Hymba's pinned meta tokens), the layout a batch-1 cache
/// starting at position 0 has, so a row is copied,
/// snapshotted and restored by position, and a row decodes bit for bit as it would alone
/// (<see cref="AttentionState.Ragged"/>). Recurrent layers keep their fixed-size state per row; a hybrid-head (Hymba) layer
/// is both at once.
/// Owns its tensors; used only on the engine thread.
/// </summary>
internal sealed class SlotCache : IDisposable
{
    readonly HybridForCausalLM model;
    readonly ModelCache whole;
    readonly long[] lengths;

    /// <param name="rows">Slots.</param>
    /// <param name="maxContext">Prompt + generated tokens per slot (meta tokens come on top).</param>
    public SlotCache(HybridForCausalLM model, int rows, int maxContext)
    {
        this.model = model;
        whole = model.NewCache(rows, maxContext);
        lengths = new long[rows];
    }

    public int Rows => whole.Batch;

    /// <summary>Positions filled in <paramref name="row"/> (meta tokens included): the next token's position.</summary>
    public long Length(int row) => lengths[row];

    public long Bytes => whole.Bytes;

    public IReadOnlyList<IMixerState?> Layers => whole.Layers;

    /// <summary>Empties <paramref name="row"/> and copies the meta-token state into it (position M next).</summary>
    public void Reset(int row)
    {
        using var scope = NewDisposeScope();
        int M = model.Config.NumMemoryTokens;
        var meta = M > 0 ? model.MetaTokenState() : null;
        for (int i = 0; i < whole.Layers.Count; i++)
            if (whole.Layers[i] is { } state) Reset(state, meta?.Layers[i], row);
        lengths[row] = M;
    }

    /// <summary>One layer's part of <see cref="Reset(int)"/>; a hybrid-head layer resets each of its states.</summary>
    static void Reset(IMixerState layer, IMixerState? meta, int row)
    {
        switch (layer)
        {
            case RecurrentState state:
                var source = (RecurrentState?)meta;
                for (int c = 0; c < state.Conv.Length; c++)
                    if (source is null) state.Conv[c][row].zero_(); else state.Conv[c][row].copy_(source.Conv[c][0]);
                if (source is null) state.Recurrent[row].zero_(); else state.Recurrent[row].copy_(source.Recurrent[0]);
                break;
            case AttentionState state:
                state.Positions[row].fill_(-1);
                if (meta is AttentionState metaKv)
                {
                    long held = Math.Min(metaKv.Count, metaKv.Capacity);
                    WriteByPosition(state, row, metaKv.Keys[0].narrow(1, 0, held), metaKv.Values[0].narrow(1, 0, held),
                                    metaKv.Positions[0].narrow(0, 0, held));
                }
                break;
            case HybridHeadState state:
                var hybridMeta = (HybridHeadState?)meta;
                if (state.Attention is not null) Reset(state.Attention, hybridMeta?.Attention, row);
                Reset(state.Mamba, hybridMeta?.Mamba, row);
                break;
        }
    }

    /// <summary>
    /// Stores keys [nkv, n, d], values [nkv, n, dv] of the given positions [n] (all ≥ 0) into their slots of <paramref name="row"/>.
    /// </summary>
    static void WriteByPosition(AttentionState state, int row, Tensor keys, Tensor values, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var slots = state.SlotOf(positions);
        state.Keys[row].index_copy_(1, slots, keys);
        state.Values[row].index_copy_(1, slots, values);
        state.Positions[row].index_copy_(0, slots, positions);
    }

    /// <summary>A batch-1 cache over <paramref name="row"/> for prefilling it (continues at <see cref="Length"/>).</summary>
    public ModelCache RowView(int row) => View(row, 1, lengths[row], ragged: false);

    /// <summary>A cache over rows [0, <paramref name="rows"/>) for one decode step at each row's own position.</summary>
    public ModelCache DecodeView(int rows)
    {
        long longest = lengths.Take(rows).Max();
        var view = View(0, rows, longest, ragged: true);
        using (var next = tensor(lengths.Take(rows).ToArray(), device: view.NextPosition.device)) view.NextPosition.copy_(next);
        return view;
    }

    ModelCache View(int first, int rows, long count, bool ragged)
    {
        IMixerState? ViewOf(IMixerState? layer) => layer switch
        {
            RecurrentState s => new RecurrentState(s.Conv.Select(c => c.narrow(0, first, rows)).ToArray(),
                                                   s.Recurrent.narrow(0, first, rows)),
            AttentionState s => new AttentionState(s, first, rows, count, ragged),
            HybridHeadState s => new HybridHeadState((AttentionState?)ViewOf(s.Attention), (RecurrentState)ViewOf(s.Mamba)!),
            _ => null,
        };
        var layers = whole.Layers.Select(ViewOf).ToArray();
        return new ModelCache(layers, new CacheShape(rows, whole.Shape.MaxLength), count, whole.NextPosition.device);
    }

    /// <summary>Records that <paramref name="tokens"/> more tokens went into <paramref name="row"/>.</summary>
    public void Advance(int row, long tokens) => lengths[row] += tokens;

    /// <summary>
    /// Copies row <paramref name="from"/> of <paramref name="source"/> (a cache of the same model and shape) into row
    /// <paramref name="to"/>.
    /// </summary>
    public void CopyRow(SlotCache source, int from, int to)
    {
        using var scope = NewDisposeScope();
        void Copy(IMixerState? targetLayer, IMixerState? originLayer)
        {
            switch (targetLayer, originLayer)
            {
                case (RecurrentState target, RecurrentState origin):
                    for (int c = 0; c < target.Conv.Length; c++) target.Conv[c][to].copy_(origin.Conv[c][from]);
                    target.Recurrent[to].copy_(origin.Recurrent[from]);
                    break;
                case (AttentionState target, AttentionState origin):
                    long held = Math.Min(source.lengths[from], origin.Capacity);
                    target.Keys[to].narrow(1, 0, held).copy_(origin.Keys[from].narrow(1, 0, held));
                    target.Values[to].narrow(1, 0, held).copy_(origin.Values[from].narrow(1, 0, held));
                    target.Positions[to].copy_(origin.Positions[from]);
                    break;
                case (HybridHeadState target, HybridHeadState origin):
                    if (target.Attention is not null) Copy(target.Attention, origin.Attention);
                    Copy(target.Mamba, origin.Mamba);
                    break;
            }
        }
        for (int i = 0; i < whole.Layers.Count; i++) Copy(whole.Layers[i], source.whole.Layers[i]);
        lengths[to] = source.lengths[from];
    }

    /// <summary>
    /// The state of <paramref name="row"/> after its last <paramref name="block"/> tokens: every recurrent layer's
    /// state, and the keys/values of those positions that a later query can still see (all of them for full attention,
    /// at most the window's W+1 for sliding-window layers).
    /// </summary>
    public PrefixState Snapshot(int row, int block)
    {
        using var scope = NewDisposeScope();
        long end = lengths[row];
        var layers = new Tensor[]?[whole.Layers.Count];
        Tensor[]? Of(IMixerState? layer) => layer switch
        {
            RecurrentState s => [.. s.Conv.Select(c => c[row].clone()), s.Recurrent[row].clone()],
            AttentionState s => KvOfPositions(s, row, Math.Max(end - block, end - s.RingLength), end),
            HybridHeadState s => [.. Of(s.Attention) ?? [], .. Of(s.Mamba)!],     // keys, values, positions (if its own), Mamba states
            _ => null,
        };
        for (int i = 0; i < layers.Length; i++)
        {
            layers[i] = Of(whole.Layers[i]);
            foreach (var t in layers[i] ?? []) t.DetachFromDisposeScope();
        }
        return new PrefixState(layers, end);
    }

    static Tensor[] KvOfPositions(AttentionState state, int row, long from, long end)
    {
        var positions = arange(from, end, device: state.Keys.device);
        var slots = state.SlotOf(positions);
        return [state.Keys[row].index_select(1, slots), state.Values[row].index_select(1, slots), positions];
    }

    /// <summary>
    /// Sets <paramref name="row"/> to the state after a cached prefix: <paramref name="chain"/> are the prefix's blocks in
    /// order; recurrent layers take the last block's state, attention layers the keys of every block still visible.
    /// </summary>
    public void Restore(int row, IReadOnlyList<PrefixState> chain)
    {
        Reset(row);
        using var scope = NewDisposeScope();
        var last = chain[^1];
        // offset: where the layer's tensors start in its snapshot (a hybrid-head layer's Mamba states follow its keys).
        void Put(IMixerState? layer, int i, int offset)
        {
            switch (layer)
            {
                case RecurrentState state:
                    var saved = last.Layers[i]!;
                    for (int c = 0; c < state.Conv.Length; c++) state.Conv[c][row].copy_(saved[offset + c]);
                    state.Recurrent[row].copy_(saved[offset + state.Conv.Length]);
                    break;
                case AttentionState state:
                    long from = last.End - state.RingLength;
                    foreach (var block in chain)
                    {
                        var kv = block.Layers[i]!;
                        long first = block.End - kv[offset + 2].shape[0], skip = Math.Max(0, from - first);
                        if (skip >= kv[offset + 2].shape[0]) continue;
                        long n = kv[offset + 2].shape[0] - skip;
                        WriteByPosition(state, row, kv[offset].narrow(1, skip, n), kv[offset + 1].narrow(1, skip, n),
                                        kv[offset + 2].narrow(0, skip, n));
                    }
                    break;
                case HybridHeadState state:
                    Put(state.Attention, i, offset);
                    Put(state.Mamba, i, offset + (state.Attention is null ? 0 : 3));
                    break;
            }
        }
        for (int i = 0; i < whole.Layers.Count; i++) Put(whole.Layers[i], i, 0);
        lengths[row] = last.End;
    }

    public void Dispose() => whole.Dispose();
}

/// <summary>
/// A snapshot of one slot after a block of prompt tokens ending at position <see cref="End"/> (meta tokens included):
/// per layer, the recurrent state (conv histories then the matrix state) or the block's visible keys, values and positions.
/// </summary>
internal sealed class PrefixState(Tensor[]?[] layers, long end) : IDisposable
{
    public Tensor[]?[] Layers { get; } = layers;
    public long End { get; } = end;
    public long Bytes { get; } = layers.Sum(l => l?.Sum(t => t.NumberOfElements * t.ElementSize) ?? 0);

    public void Dispose()
    {
        foreach (var t in Layers.SelectMany(l => l ?? [])) t.Dispose();
    }
}
