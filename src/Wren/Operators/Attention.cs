using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Common;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// Causal softmax attention with GQA, optional per-head q/k RMSNorm (eps 1e-6), RoPE after the norm,
/// and an optional sliding window W: query i sees keys j with i − W ≤ j ≤ i (W+1 keys, flash-attn's
/// convention, which the Nemotron-Flash full forward uses). HF module name: <c>self_attn</c>.
/// </summary>
internal sealed class Attention : Mixer, IFusedDecoder
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly RmsNorm? q_norm, k_norm;
    readonly Rotary? rotary;
    readonly int heads, kvHeads, qkDim, vDim;

    /// <summary>Sliding window W, or null for full attention.</summary>
    public int? Window { get; }

    /// <summary>
    /// Layer type "a". Validation follows the released Nemotron-Flash attention (the released modeling_nemotron_flash.py); the KV
    /// cache holds keys, values and an int64 position per slot, W+1 slots for a sliding window; a windowed layer is
    /// its own latency-table entry ("a:w512"); the search space knows it as "a" (global) and "swa" (windowed).
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "a",
        ModuleName = "self_attn",
        Description = "softmax attention: GQA, RoPE, optional q/k norm and sliding window",
        Create = (config, layer, placement) => new Attention(config, layer, placement),
        Validate = ValidateConfig,
        StateBytes = (config, layer, positions, elementSize) =>
            SlotBytes(config, elementSize) * (config.WindowOf(layer) is { } w ? Math.Min(positions, w + 1) : positions),
        LatencyVariant = (config, layer) => config.WindowOf(layer) is { } w ? $"w{w}" : null,
        WithLatencyVariant = (config, variant, layers) => variant is null
            ? config with { GlobalAttnIdx = [.. (config.GlobalAttnIdx ?? []).Union(layers)] }
            : config with
            {
                SlidingWindow = int.Parse(variant[1..]),
                GlobalAttnIdx = config.GlobalAttnIdx ?? [],
                AttnImplementation = "flash_attention_2",
            },
        CostGrowsWithContext = true,
        SearchNames = [new("a"), new("swa", SlidingWindow: true)],
    };

    /// <summary>Bytes one KV slot costs (keys, values and the slot's int64 position).</summary>
    internal static long SlotBytes(HybridConfig config, int elementSize) =>
        (long)config.KvHeads * (config.AttnQkHeadDim + config.AttnVHeadDim) * elementSize + 8;

    internal static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.KqNorm is null) fail("kq_norm is required when attention layers exist (\"rms\" or \"none\"); the Nemotron-Flash code " +
                                   "raises without it");
        if (c.KqNorm is not ("rms" or "none")) fail($"kq_norm '{c.KqNorm}' is not supported (use \"rms\" or \"none\")");
        if (c.AttnHiddenSize != -1 && c.AttnHiddenSize != c.HiddenSize)
            fail($"attn_hidden_size must be -1 or hidden_size ({c.HiddenSize}), got {c.AttnHiddenSize}");
        if (c.KvHeads <= 0 || c.NumAttentionHeads % c.KvHeads != 0)
            fail($"num_attention_heads ({c.NumAttentionHeads}) must be a multiple of num_key_value_heads ({c.KvHeads})");
        if ((c.KqHeadDim <= 0 || c.VHeadDim <= 0) && c.HiddenSize % c.NumAttentionHeads != 0)
            fail($"hidden_size ({c.HiddenSize}) must be divisible by num_attention_heads ({c.NumAttentionHeads})");
        if (c.Rope && c.AttnQkHeadDim % 2 != 0) fail($"the attention q/k head dim ({c.AttnQkHeadDim}) must be even when rope is on");
        if (c.AttnImplementation is not ("flash_attention_2" or "fused_mha"))
            fail($"attn_implementation_new '{c.AttnImplementation}' is not supported: only \"flash_attention_2\" (and \"fused_mha\", the " +
                 "same maths without sliding windows; \"flex\" in a config with model_type \"hymba\") have specified semantics; the " +
                 "\"sdpa\" variant has different weights (no q/k norm) and RoPE scaling");
        if (c.RopeType is not (null or "default" or "ntk" or "dynamic_ntk"))
            fail($"rope_type '{c.RopeType}' is not supported (null, \"default\", \"ntk\", \"dynamic_ntk\")");
        if (c.RopeType is "ntk" or "dynamic_ntk"
            && (c.OrigMaxPositionEmbeddings is null or <= 0 || c.MaxPositionEmbeddings is null or <= 0))
            fail($"rope_type '{c.RopeType}' needs max_position_embeddings and orig_max_position_embeddings");
        if (c.SlidingWindow is { } w)
        {
            if (w <= 0) fail("sliding_window must be positive or null");
            if (c.GlobalAttnIdx is null) fail("global_attn_idx must be a list when sliding_window is set");
        }
    }

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
        return new AttentionState(shape.Batch, kvHeads, capacity, qkDim, vDim, Window, q_proj.ActivationType, device);
    }

    public OperatorForm FormOf(MixerInput input) =>
        DecodeForm.Choose(input, (input.State as AttentionState)?.Keys, (input.State as AttentionState)?.Values, q_norm?.Weight,
                          k_norm?.Weight);

    public override Tensor forward(MixerInput input)
    {
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input, (AttentionState)input.State!);
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

        var o = AttendCached(q, k, v, input, Window);                                      // [B, nh, T, dv]
        return o_proj.forward(o.transpose(1, 2).reshape(B, T, heads * vDim)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>): the q, k, v projections in one matrix–vector pass; per row
    /// one pass over the heads: q/k RMSNorm and RoPE (the row's cos/sin computed once), the new key and value written
    /// straight into their cache slot (<see cref="AttentionState.ReserveDecodeSlots"/>); then single-query attention over
    /// the cache (<see cref="Attend"/>, blocks of slots in chunks over the kernel threads) into one buffer, and o_proj.
    /// input.Hidden [B, 1, hidden] float32, input.Positions [B, 1] int64. Tests hold it to the recurrent form.
    /// </summary>
    unsafe Tensor FusedStep(MixerInput input, AttentionState cache)
    {
        using var scope = NewDisposeScope();
        long B = input.Hidden.shape[0], cap = cache.Capacity;
        KernelTensors.RequireInPlace(cache.Keys, "keys", ScalarType.Float32, B, kvHeads, cap, qkDim);
        KernelTensors.RequireInPlace(cache.Values, "values", ScalarType.Float32, B, kvHeads, cap, vDim);
        KernelTensors.RequireInPlace(cache.Positions, "key positions", ScalarType.Int64, B, cap);
        var positions = input.Positions.contiguous();
        KernelTensors.Require(positions, "positions", ScalarType.Int64, B, 1);
        var rows = new ReadOnlySpan<long>(KernelTensors.Longs(positions), (int)B);
        foreach (long position in rows) rotary?.CheckPosition(position);
        var qkv = Linear.ProjectMany(input.Hidden, q_proj, k_proj, v_proj).Select(t => t.contiguous()).ToArray();
        Span<long> slots = stackalloc long[(int)B];
        cache.ReserveDecodeSlots(rows, slots);
        float* q = KernelTensors.Floats(qkv[0]), k = KernelTensors.Floats(qkv[1]), v = KernelTensors.Floats(qkv[2]);
        float* keys = KernelTensors.Floats(cache.Keys), values = KernelTensors.Floats(cache.Values);
        long* keyPositions = KernelTensors.Longs(cache.Positions);
        float* qNorm = q_norm is null ? null : KernelTensors.Floats(q_norm.Weight);
        float* kNorm = k_norm is null ? null : KernelTensors.Floats(k_norm.Weight);
        float eps = (float)(q_norm?.Eps ?? 0);
        float* cos = stackalloc float[qkDim / 2 + 1], sin = stackalloc float[qkDim / 2 + 1];
        for (long b = 0; b < B; b++)
        {
            rotary?.Angles(rows[(int)b], cos, sin);
            for (long h = 0; h < heads + kvHeads; h++)
            {
                float* head = h < heads ? q + (b * heads + h) * qkDim : k + (b * kvHeads + h - heads) * qkDim;
                if (qNorm is not null) StepMath.RmsNormalize(head, h < heads ? qNorm : kNorm, qkDim, eps);
                if (rotary is not null) Rotary.Rotate(head, cos, sin, qkDim);
            }
            for (long j = 0; j < kvHeads; j++)
            {
                long at = (b * kvHeads + j) * cap + slots[(int)b];
                new Span<float>(k + (b * kvHeads + j) * qkDim, qkDim).CopyTo(new Span<float>(keys + at * qkDim, qkDim));
                new Span<float>(v + (b * kvHeads + j) * vDim, vDim).CopyTo(new Span<float>(values + at * vDim, vDim));
            }
            keyPositions[b * cap + slots[(int)b]] = rows[(int)b];
        }
        var o = zeros(B, 1, heads * vDim);
        Attend(q, keys, values, Math.Min(cache.Count, cap), cache.NeedsMask(Window) ? keyPositions : null, KernelTensors.Longs(positions),
               Window, 0, KernelTensors.Floats(o), B, heads, kvHeads, cap, qkDim, vDim);
        return o_proj.forward(o).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attention of new queries over the new keys and, with an <see cref="AttentionState"/> in <c>input.State</c>, the cached
    /// ones (the new keys and values enter the cache): q [B, nh, T, dqk], k [B, nkv, T, dqk], v [B, nkv, T, dv], after q/k
    /// norm and RoPE; causal, inside the window W (W+1 keys) when given, pad keys masked. Returns [B, nh, T, dv]. A decode
    /// step on float32 CPU tensors takes <see cref="FusedDecode"/>. <see cref="StoreKv"/> then <see cref="AttendOver"/>.
    /// </summary>
    internal static Tensor AttendCached(Tensor q, Tensor k, Tensor v, MixerInput input, int? window) =>
        AttendOver(q, StoreKv(k, v, input), input, window, 0);

    /// <summary>
    /// Stores the new keys k [B, nkv, T, dqk] and values v [B, nkv, T, dv] (after q/k norm and RoPE) in the
    /// <see cref="AttentionState"/> of <c>input.State</c>, if any, and returns every key the new queries may attend over.
    /// </summary>
    internal static KvView StoreKv(Tensor k, Tensor v, MixerInput input)
    {
        var padding = input.Padding;
        var newKeyPositions = padding is null ? input.Positions : input.Positions.MaskedFill(padding.Mask.logical_not(), -1);
        if (input.State is AttentionState state)
        {
            var (keys, values, positions) = state.Append(k, v, newKeyPositions, padding is not null);
            return new KvView(keys, values, positions, state);
        }
        if (input.State is not null) throw new ArgumentException("attention needs an AttentionState");
        return new KvView(k, v, newKeyPositions, null);
    }

    /// <summary>
    /// Attention of q [B, nh, T, dqk] (positions <c>input.Positions</c>) over <paramref name="kv"/>: key j is visible to
    /// query i when j ≤ i and, with a window W, i − j ≤ W or j &lt; <paramref name="sink"/> (Hymba's meta tokens never leave
    /// the window: modeling_hymba.py's flex mask, <c>causal ∧ (window ∨ kv_idx &lt; M)</c>); pad keys never. Returns
    /// [B, nh, T, dv].
    /// </summary>
    internal static Tensor AttendOver(Tensor q, KvView kv, MixerInput input, int? window, long sink)
    {
        long T = q.shape[2];
        var cache = kv.Cache;
        bool needsMask = cache?.NeedsMask(window) ?? false;
        if (DecodeForm.Choose(T, cache?.Keys, q) == OperatorForm.Fused)
            return FusedDecode(q, cache!.Keys, cache.Values, Math.Min(cache.Count, cache.Capacity), needsMask ? cache.Positions : null,
                               input.Positions, window, sink);
        Tensor? mask = null;
        bool causal = false;
        if (cache is null && input.Padding is null && window is null) causal = true;            // plain full forward
        else if (T > 1 || needsMask)                                                  // otherwise a decode step sees every cached key
            mask = BuildMask(input.Positions, kv.Positions, window, sink, input.Padding);
        return Attend(q, kv.Keys, kv.Values, mask, causal);
    }

    /// <summary>
    /// [B, 1, T, S] boolean mask: key j is visible to query i when it is a real key (position ≥ 0), not in the
    /// future, and inside the window or below <paramref name="sink"/>. Pad queries see every slot so their rows stay finite
    /// (they are never read).
    /// </summary>
    static Tensor BuildMask(Tensor queryPositions, Tensor keyPositions, int? window, long sink, LeftPadding? padding)
    {
        var qp = queryPositions.unsqueeze(2);                 // [B, T, 1]
        var kp = keyPositions.unsqueeze(1);                   // [B, 1, S]
        var allowed = (kp >= 0).logical_and(kp <= qp);
        if (window is { } w) allowed = allowed.logical_and((qp - kp <= w).logical_or(kp < sink));
        if (padding is not null) allowed = allowed.logical_or(padding.Mask.logical_not().unsqueeze(2));
        return allowed.unsqueeze(1);
    }

    static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        long B = q.shape[0], heads = q.shape[1], T = q.shape[2], qkDim = q.shape[3], kvHeads = k.shape[1], vDim = v.shape[3];
        long group = heads / kvHeads;
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

    /// <summary>
    /// The fused CPU decode step: single-query attention over a KV cache. q [B, nh, 1, d] against the first
    /// <paramref name="slots"/> slots of keys [B, nkv, cap, d] and values [B, nkv, cap, dv] (float32, contiguous), reading
    /// each KV head once for all of its query heads. With <paramref name="keyPositions"/> [B, cap] (int64; −1 = empty or
    /// pad), a slot counts only if its position is in [query − window, query] or in [0, <paramref name="sink"/>); null means
    /// every slot counts. <paramref name="queryPositions"/> [B, 1] int64. Returns [B, nh, 1, dv]. Tests hold it to the libtorch
    /// path.
    /// </summary>
    internal static unsafe Tensor FusedDecode(Tensor q, Tensor keys, Tensor values, long slots, Tensor? keyPositions, Tensor queryPositions,
                                              int? window, long sink = 0)
    {
        long B = q.shape[0], nh = q.shape[1], d = q.shape[3], nkv = keys.shape[1], cap = keys.shape[2], dv = values.shape[3];
        KernelTensors.Require(q, "q", ScalarType.Float32, B, nh, 1, d);
        KernelTensors.RequireInPlace(keys, "keys", ScalarType.Float32, B, nkv, cap, d);
        KernelTensors.RequireInPlace(values, "values", ScalarType.Float32, B, nkv, cap, dv);
        if (keyPositions is not null) KernelTensors.RequireInPlace(keyPositions, "key positions", ScalarType.Int64, B, cap);
        KernelTensors.Require(queryPositions, "query positions", ScalarType.Int64, B, 1);
        if (nh % nkv != 0) throw new ArgumentException($"q: {nh} query heads are not a multiple of the {nkv} KV heads");
        if (slots < 0 || slots > cap) throw new ArgumentException($"keys: {slots} slots asked of a cache of {cap}");
        using var qc = q.contiguous();
        using var qp = queryPositions.reshape(B).contiguous();
        var o = zeros(B, nh, 1, dv);
        float* pq = KernelTensors.Floats(qc), pk = KernelTensors.Floats(keys);
        float* pv = KernelTensors.Floats(values), po = KernelTensors.Floats(o);
        long* kpos = keyPositions is null ? null : KernelTensors.Longs(keyPositions);
        long* qpos = KernelTensors.Longs(qp);
        Attend(pq, pk, pv, slots, kpos, qpos, window, sink, po, B, nh, nkv, cap, d, dv);
        return o;
    }

    /// <summary>Slots per block of <see cref="Attend"/> (256 KB of keys and values at d = 128): a long cache gives the threads many
    /// small chunks.</summary>
    const long SlotBlock = 256;

    /// <summary>
    /// Single-query attention of q [B, nh, d] over the first <paramref name="slots"/> slots of keys [B, nkv, cap, d] and
    /// values [B, nkv, cap, dv] into o [B, nh, dv] (zeroed), masked as <see cref="FusedDecode"/> says. Each KV head's
    /// slots are cut into blocks of <see cref="SlotBlock"/> (flash-decoding): a block gives each of its query heads a
    /// local max m, sum l and unnormalized output, the blocks are claimed in chunks by the kernel threads, and the
    /// partial results are merged as <c>o = Σ e^(m_c − M) o_c / Σ e^(m_c − M) l_c</c> (M the largest m_c).
    /// </summary>
    static unsafe void Attend(float* q, float* keys, float* values, long slots, long* keyPositions, long* queryPositions, int? window,
                              long sink, float* o, long B, long nh, long nkv, long cap, long d, long dv)
    {
        long group = nh / nkv, blocks = Math.Max(1, (slots + SlotBlock - 1) / SlotBlock), units = B * nkv * blocks, stride = dv + 2;
        float scale = 1f / MathF.Sqrt(d);
        var partials = ArrayPool<float>.Shared.Rent((int)(units * group * stride));
        fixed (float* pinned = partials)
        {
            float* parts = pinned;                      // per (unit, query head): m, l, then the unnormalized output [dv]
            StepMath.ForUnits(units, Math.Min(slots, SlotBlock) * (d + dv), (begin, end) =>
            {
                var scores = new float[group * SlotBlock];
                for (long unit = begin; unit < end; unit++)
                {
                    long head = unit / blocks, b = head / nkv, first = unit % blocks * SlotBlock;
                    AttendBlock(q + head * group * d, keys + (head * cap + first) * d, values + (head * cap + first) * dv,
                                keyPositions is null ? null : keyPositions + b * cap + first, queryPositions[b], window, sink, scores,
                                parts + unit * group * stride, group, Math.Min(SlotBlock, slots - first), d, dv, scale);
                }
            });
            for (long head = 0; head < B * nkv; head++)
                for (long g = 0; g < group; g++)
                {
                    float* og = o + (head * group + g) * dv;
                    float max = float.NegativeInfinity, total = 0;
                    for (long c = 0; c < blocks; c++) max = MathF.Max(max, parts[((head * blocks + c) * group + g) * stride]);
                    for (long c = 0; c < blocks; c++)
                    {
                        float* part = parts + ((head * blocks + c) * group + g) * stride;
                        if (part[1] == 0) continue;         // no visible slot in this block
                        float weight = MathF.Exp(part[0] - max);
                        total += weight * part[1];
                        for (long i = 0; i < dv; i++) og[i] += weight * part[2 + i];
                    }
                    if (total > 0) for (long i = 0; i < dv; i++) og[i] /= total;
                }
        }
        ArrayPool<float>.Shared.Return(partials);
    }

    /// <summary>
    /// One block of <paramref name="slots"/> slots for the <paramref name="group"/> query heads of one KV head: per query
    /// head, <c>m = max s</c>, <c>l = Σ e^(s − m)</c> and <c>Σ e^(s − m) v</c> into <paramref name="partial"/> [group, 2 + dv],
    /// with <c>s = q·k / √d</c> (−∞ for a slot the mask hides; l = 0 when every slot is hidden).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void AttendBlock(float* q, float* K, float* V, long* keyPositions, long queryPosition, int? window, long sink,
                                   float[] scores, float* partial, long group, long slots, long d, long dv, float scale)
    {
        int w = Vector<float>.Count;
        long stride = dv + 2;
        fixed (float* sc = scores)
        {
            for (long s = 0; s < slots; s++)              // scores = q·k / √d, one pass over the keys
            {
                bool visible = keyPositions is null || (keyPositions[s] >= 0 && keyPositions[s] <= queryPosition
                                                        && (window is not { } win || queryPosition - keyPositions[s] <= win
                                                            || keyPositions[s] < sink));
                float* key = K + s * d;
                for (long g = 0; g < group; g++)
                {
                    if (!visible) { sc[g * slots + s] = float.NegativeInfinity; continue; }
                    float* qg = q + g * d;
                    var acc = Vector<float>.Zero;
                    float dot = 0;
                    long i = 0;
                    for (; i + w <= d; i += w) acc += Vector.Load(qg + i) * Vector.Load(key + i);
                    for (; i < d; i++) dot += qg[i] * key[i];
                    sc[g * slots + s] = (Vector.Sum(acc) + dot) * scale;
                }
            }
            for (long g = 0; g < group; g++)              // local softmax numerators per query head
            {
                float* row = sc + g * slots, stats = partial + g * stride;
                float max = float.NegativeInfinity;
                for (long s = 0; s < slots; s++) max = MathF.Max(max, row[s]);
                float total = 0;
                for (long s = 0; s < slots; s++) { row[s] = max == float.NegativeInfinity ? 0 : MathF.Exp(row[s] - max); total += row[s]; }
                stats[0] = max;
                stats[1] = total;
                new Span<float>(stats + 2, (int)dv).Clear();
            }
            for (long s = 0; s < slots; s++)              // Σ e^(s − m)·v, one pass over the values
            {
                float* value = V + s * dv;
                for (long g = 0; g < group; g++)
                {
                    float p = sc[g * slots + s];
                    if (p == 0) continue;
                    var pv = new Vector<float>(p);
                    float* og = partial + g * stride + 2;
                    long i = 0;
                    for (; i + w <= dv; i += w) Vector.Store(Vector.Load(og + i) + pv * Vector.Load(value + i), og + i);
                    for (; i < dv; i++) og[i] += p * value[i];
                }
            }
        }
    }
}

/// <summary>
/// The keys [B, nkv, S, dqk], values [B, nkv, S, dv] and key positions [B, S] (−1: empty or pad) that a forward's new queries
/// attend over, and the cache they live in (null without one). A Hymba layer that shares its KV hands this to its group's
/// consumers through the <see cref="LayerCarry"/>.
/// </summary>
internal sealed record KvView(Tensor Keys, Tensor Values, Tensor Positions, AttentionState? Cache);

/// <summary>
/// KV cache of one attention layer: keys/values [B, nkv, capacity, d] and the absolute position of every
/// slot [B, capacity] (−1 for empty or pad slots). Slots are written in order, modulo the capacity: for a
/// sliding window that is a ring whose oldest slot falls out of every future query's window. The first
/// <see cref="Pinned"/> slots (Hymba's meta tokens, which never leave a window) are outside the ring: write index i goes to
/// slot i below it and to <c>P + (i − P) mod (capacity − P)</c> from it on (<see cref="SlotOf"/>).
/// </summary>
internal sealed class AttentionState : IMixerState
{
    public Tensor Keys { get; }
    public Tensor Values { get; }
    public Tensor Positions { get; }
    public long Capacity { get; }
    public int? Window { get; }
    /// <summary>Leading slots that are never overwritten (P): the meta tokens of a windowed Hymba layer; 0 elsewhere.</summary>
    public long Pinned { get; }
    /// <summary>Slots of the ring: capacity − <see cref="Pinned"/>.</summary>
    public long RingLength => Capacity - Pinned;
    /// <summary>Slots written so far (the same for every row: pads take slots too).</summary>
    public long Count { get; private set; }
    public bool HasPads { get; private set; }

    /// <summary>
    /// Serving: rows hold different lengths, and the key at position p of every row sits in slot p mod capacity (the
    /// slot a batch-1 cache starting at position 0 uses), so a row decodes exactly as it would alone. Set on views.
    /// </summary>
    public bool Ragged { get; }

    /// <summary>
    /// False when every stored slot is a real key that the newest query sees through <paramref name="window"/> (the reader's:
    /// a Hymba consumer may read a global producer's cache through its own window), so a decode step needs no mask.
    /// </summary>
    public bool NeedsMask(int? window) => HasPads || Ragged || (window is { } w && Math.Min(Count, Capacity) > w + 1 + Pinned);

    public AttentionState(long batch, long kvHeads, long capacity, long qkDim, long vDim, int? window, ScalarType dtype, Device device,
                          long pinned = 0)
    {
        if (pinned < 0 || pinned > capacity) throw new ArgumentException($"{pinned} pinned slots in a cache of {capacity}", nameof(pinned));
        Keys = zeros([batch, kvHeads, capacity, qkDim], dtype, device).DetachFromDisposeScope();
        Values = zeros([batch, kvHeads, capacity, vDim], dtype, device).DetachFromDisposeScope();
        Positions = full([batch, capacity], -1L, ScalarType.Int64, device).DetachFromDisposeScope();
        Capacity = capacity;
        Window = window;
        Pinned = pinned;
    }

    /// <summary>The slot of write index (or, in a row without pads, position) <paramref name="index"/> ≥ 0.</summary>
    public long SlotOf(long index) => index < Pinned ? index : Pinned + (index - Pinned) % RingLength;

    /// <summary><see cref="SlotOf(long)"/> of every element of <paramref name="indices"/> (int64, ≥ 0).</summary>
    public Tensor SlotOf(Tensor indices) =>
        Pinned == 0 ? indices % Capacity : where(indices < Pinned, indices, (indices - Pinned) % RingLength + Pinned);

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
        Pinned = whole.Pinned;
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
            // Each row writes its own slot, that of its position (the caller keeps Count at the longest row's length).
            using var scope = NewDisposeScope();
            var slot = SlotOf(positions);                                                     // [B, 1]
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
        if (Window is null) throw Full();
        if (T == 1)
        {
            // The slot overwritten holds a key at least W+1 positions older than the new query.
            long slot = SlotOf(Count);
            Keys.narrow(2, slot, 1).copy_(k);
            Values.narrow(2, slot, 1).copy_(v);
            Positions.narrow(1, slot, 1).copy_(positions);
            Count += 1;
            return (Keys, Values, Positions);
        }
        // Several new tokens past the ring's end: attend over old and new together, then keep the pinned and the newest.
        long held = Math.Min(Count, Capacity);
        var allKeys = torch.cat([Keys.narrow(2, 0, held), k], 2);
        var allValues = torch.cat([Values.narrow(2, 0, held), v], 2);
        var allPositions = torch.cat([Positions.narrow(1, 0, held), positions], 1);
        var kept = Enumerable.Range(0, (int)T).Where(j => Count + j < Pinned || Count + j >= Count + T - RingLength).ToArray();
        using (var which = tensor(kept.Select(j => (long)j).ToArray(), device: Keys.device))
        using (var slots = tensor(kept.Select(j => SlotOf(Count + j)).ToArray(), device: Keys.device))
        {
            Keys.index_copy_(2, slots, k.index_select(2, which));
            Values.index_copy_(2, slots, v.index_select(2, which));
            Positions.index_copy_(1, slots, positions.index_select(1, which));
        }
        Count += T;
        return (allKeys, allValues, allPositions);
    }

    WrenException Full() => new($"KV cache is full ({Capacity} positions); create the cache with a larger MaxLength");

    /// <summary>
    /// A one-token decode step without padding: the slot each row's new key goes to, as <see cref="Append"/> would choose
    /// it (a ragged cache: that of its position; otherwise the next slot, round the ring for a sliding window), and
    /// advances <see cref="Count"/>. The caller writes the keys, values and positions there.
    /// </summary>
    internal void ReserveDecodeSlots(ReadOnlySpan<long> positions, Span<long> slots)
    {
        if (Ragged)
        {
            long next = Count;
            for (int b = 0; b < positions.Length; b++)
            {
                slots[b] = SlotOf(positions[b]);
                next = Math.Max(next, positions[b] + 1);
            }
            Count = next;
            return;
        }
        if (Count + 1 > Capacity && Window is null) throw Full();
        slots.Fill(SlotOf(Count));
        Count += 1;
    }

    /// <summary>The slots holding keys, in write order (oldest first): the pinned ones, then the ring's.</summary>
    long[] SlotsInWriteOrder()
    {
        if (Count <= Capacity) return [.. Enumerable.Range(0, (int)Count).Select(i => (long)i)];
        var ring = Enumerable.Range(0, (int)RingLength).Select(i => SlotOf(Count - RingLength + i));
        return [.. Enumerable.Range(0, (int)Pinned).Select(i => (long)i), .. ring];
    }

    public void CopyPrefixFrom(IMixerState prefix)
    {
        var source = (AttentionState)prefix;
        var held = source.SlotsInWriteOrder();
        long n = Math.Min(held.Length, Capacity);
        if (n == 0) return;
        if (n < held.Length)                           // keep the pinned keys and the newest of the rest
        {
            int pinned = (int)Math.Min(source.Pinned, n);
            held = [.. held.Take(pinned), .. held.Skip((int)source.Pinned).TakeLast((int)n - pinned)];
        }
        using var scope = NewDisposeScope();
        var order = tensor(held, device: Keys.device);                                                   // oldest first
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
