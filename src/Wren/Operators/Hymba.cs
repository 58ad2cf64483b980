using TorchSharp;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Operators;

/// <summary>
/// A Hymba hybrid-head layer (Dong et al. 2024; NVIDIA's modeling_hymba.py, <c>HymbaBlock</c>): one fused
/// <c>in_proj</c> whose rows are q | k | v | x | z (k and v <c>num_key_value_heads / num_attention_heads</c> of hidden and
/// of d_inner wide); attention heads (GQA, optional q/k RMSNorm, RoPE; value heads d_inner / num_attention_heads wide, as the
/// code overwrites <c>v_head_dim</c>; no o_proj) beside Mamba-1 heads over the same input (conv with bias, SiLU;
/// <c>x_proj.0</c> → dt | B | C, each through its RMSNorm when <c>mamba_inner_layernorms</c>; Δ = softplus(dt_proj.0(dt))
/// with the bias inside; A = −exp(A_log.0); D.0 skip; y·silu(z)); then
/// <c>out_proj((RMSNorm₁(attention) + RMSNorm₂(mamba)) / 2)</c>. HF module name <c>mamba</c>, parameter names as released.
/// Attention semantics of the released <c>flex</c> class: full attention at global_attn_idx, elsewhere key j is visible to
/// query i when <c>j ≤ i ∧ (i − j ≤ W ∨ j &lt; M)</c> — the M meta tokens never leave the window. Cross-layer KV sharing
/// (<c>kv_reuse_group</c>): a consumer layer has no k/v rows in in_proj and no KV cache; it attends, through its own window,
/// over the keys (after k_norm and RoPE) and values its group's producer attended over in the same forward, rotating only its
/// own queries.
/// </summary>
internal sealed class Hymba : Mixer
{
    readonly Linear in_proj, out_proj;
    readonly ShortConv conv1d;
    readonly TorchSharp.Modules.ModuleList<Linear> x_proj;
    readonly TorchSharp.Modules.ModuleList<Mamba1.TimestepProjection> dt_proj;
#pragma warning disable IDE1006   // released checkpoint names (A_log.0, D.0, B_layernorm), so strict loading needs no key map
    readonly TorchSharp.Modules.ParameterList A_log, D;
    readonly RmsNorm? dt_layernorm, B_layernorm, C_layernorm;
#pragma warning restore IDE1006
    readonly RmsNorm pre_avg_layernorm1, pre_avg_layernorm2;
    readonly HymbaAttention self_attn;
    readonly int layer, kvSource, hidden, dInner, dState, dtRank, heads, kvHeads, qkDim, vDim;
    readonly bool sharesKv;
    readonly long sink;

    /// <summary>Width of the key rows of <c>in_proj</c>: <c>int(nkv / nh · hidden)</c> (modeling_hymba.py).</summary>
    static int KeyWidth(HybridConfig c) => (int)((double)c.KvHeads / c.NumAttentionHeads * c.HiddenSize);

    /// <summary>Width of the value rows of <c>in_proj</c>: <c>int(nkv / nh · hidden · mamba_expand)</c> (modeling_hymba.py).</summary>
    static int ValueWidth(HybridConfig c) => (int)((double)c.KvHeads / c.NumAttentionHeads * c.HiddenSize * c.MambaExpand);

    /// <summary>Bytes of a producer's (or an unshared layer's) KV cache: keys nkv × hidden/nh, values nkv × d_inner/nh and a
    /// position per slot; M + W + 1 slots in a windowed layer (the meta tokens stay).</summary>
    static long KvBytes(HybridConfig c, int layer, long positions, int elementSize) =>
        (((long)KeyWidth(c) + ValueWidth(c)) * elementSize + 8)
        * (c.WindowOf(layer) is { } w ? Math.Min(positions, c.NumMemoryTokens + w + 1) : positions);

    /// <summary>
    /// Layer type "hymba". State per sequence: the attention KV cache (<see cref="KvBytes"/>; none in a layer that reuses
    /// another layer's KV) and Mamba-1's conv history and SSM state. Initialization of the Mamba heads as mamba_ssm's
    /// (<see cref="Mamba1"/>); the norms 1.
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "hymba",
        ModuleName = "mamba",
        Description = "Hymba hybrid heads (attention and Mamba-1 side by side)",
        Create = (config, layer, placement) => new Hymba(config, layer, placement),
        Validate = ValidateConfig,
        SearchNames = [new("hymba")],
        StateBytes = (c, layer, positions, elementSize) =>
            (c.KvSourceOf(layer) == layer ? KvBytes(c, layer, positions, elementSize) : 0)
            + (long)c.MambaDInner * (c.MambaDConv - 1) * elementSize + 4L * c.MambaDInner * c.MambaDState,
        Initialize = p => p.Name switch
        {
            "A_log.0" => Mamba1.Spec.Initialize(p with { Name = "A_log" }),
            "D.0" => ones_like(p.Parameter),
            "dt_proj.0.weight" => Mamba1.Spec.Initialize(p with { Name = "dt_proj.weight" }),
            "dt_proj.0.bias" => Mamba1.Spec.Initialize(p with { Name = "dt_proj.bias" }),
            "pre_avg_layernorm1.weight" or "pre_avg_layernorm2.weight" => ones_like(p.Parameter),
            _ => Mamba1.Spec.Initialize(p),
        },
        LatencyVariant = Attention.Spec.LatencyVariant,
        WithLatencyVariant = Attention.Spec.WithLatencyVariant,
        CostGrowsWithContext = true,
    };

    static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        Attention.ValidateConfig(c, fail);
        if (c.MambaExpand <= 0 || c.MambaDState <= 0 || c.MambaDConv <= 0)
            fail("mamba_expand, mamba_d_state and mamba_d_conv must be positive");
        if (c.MambaDtRank is <= 0) fail($"mamba_dt_rank ({c.MambaDtRank}) must be positive (leave it out for ⌈hidden_size / 16⌉)");
        if (c.MambaDInner % c.NumAttentionHeads != 0)
            fail($"mamba_expand·hidden_size ({c.MambaDInner}) must be divisible by num_attention_heads ({c.NumAttentionHeads}): Hymba's " +
                 "value heads are d_inner / num_attention_heads wide");
        if (KeyWidth(c) != c.KvHeads * c.AttnQkHeadDim || ValueWidth(c) != c.KvHeads * (c.MambaDInner / c.NumAttentionHeads))
            fail($"in_proj's k/v widths int(num_key_value_heads / num_attention_heads · hidden_size) = {KeyWidth(c)} and " +
                 $"int(… · mamba_expand) = {ValueWidth(c)} do not split into {c.KvHeads} heads");
        if (c.MambaProjBias == true) fail("mamba_proj_bias true (biases on in_proj and out_proj) is not supported");
    }

    public Hymba(HybridConfig config, int layer, Placement placement) : base(nameof(Hymba))
    {
        this.layer = layer;
        kvSource = config.KvSourceOf(layer);
        sharesKv = config.SharesKv(layer);
        hidden = config.HiddenSize;
        dInner = config.MambaDInner;
        dState = config.MambaDState;
        dtRank = config.MambaTimestepRank;
        heads = config.NumAttentionHeads;
        kvHeads = config.KvHeads;
        qkDim = config.AttnQkHeadDim;
        vDim = dInner / heads;
        Window = config.WindowOf(layer);
        sink = Window is null ? 0 : config.NumMemoryTokens;
        int kvRows = ReusesKv ? 0 : KeyWidth(config) + ValueWidth(config);
        in_proj = new Linear(hidden, hidden + kvRows + 2 * dInner, placement);
        conv1d = new ShortConv(dInner, config.MambaDConv, withBias: config.MambaConvBias ?? true, placement);
        var fp32 = placement with { Dtype = ScalarType.Float32 };
        x_proj = new TorchSharp.Modules.ModuleList<Linear>(new Linear(dInner, dtRank + 2 * dState, placement));
        dt_proj = new TorchSharp.Modules.ModuleList<Mamba1.TimestepProjection>(new Mamba1.TimestepProjection(dtRank, dInner, fp32));
        A_log = new TorchSharp.Modules.ParameterList(fp32.Empty(dInner, dState));
        D = new TorchSharp.Modules.ParameterList(fp32.Empty(dInner));
        if (config.MambaInnerLayernorms == true)
        {
            dt_layernorm = new RmsNorm(dtRank, config.RmsNormEps, placement);
            B_layernorm = new RmsNorm(dState, config.RmsNormEps, placement);
            C_layernorm = new RmsNorm(dState, config.RmsNormEps, placement);
        }
        pre_avg_layernorm1 = new RmsNorm(dInner, config.RmsNormEps, placement);
        pre_avg_layernorm2 = new RmsNorm(dInner, config.RmsNormEps, placement);
        self_attn = new HymbaAttention(config, placement);
        out_proj = new Linear(dInner, hidden, placement);
        RegisterComponents();
    }

    /// <summary>Sliding window W of the attention heads, or null at a global layer.</summary>
    public int? Window { get; }

    /// <summary>True when this layer attends over another layer's keys and values (a kv_reuse_group consumer).</summary>
    bool ReusesKv => kvSource != layer;

    /// <summary>
    /// The layer's decode state: a KV cache unless it reuses another layer's (M + W + 1 slots plus the left padding when
    /// windowed, the M meta-token slots pinned), and the Mamba-1 states.
    /// </summary>
    public override IMixerState NewState(CacheShape shape, Device device)
    {
        AttentionState? attention = null;
        if (!ReusesKv)
        {
            int capacity = shape.MaxLength + shape.MaxLeftPad;
            if (Window is { } w) capacity = (int)Math.Min(capacity, sink + w + 1 + shape.MaxLeftPad);
            attention = new AttentionState(shape.Batch, kvHeads, capacity, qkDim, vDim, Window, in_proj.ActivationType, device,
                                           Math.Min(sink, capacity));
        }
        var mamba = new RecurrentState([conv1d.NewState(shape.Batch, device)],
                                       zeros([shape.Batch, dInner, dState], ScalarType.Float32, device));
        return new HybridHeadState(attention, mamba);
    }

    public override Tensor forward(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var state = input.State as HybridHeadState;
        if (input.State is not null && state is null) throw new ArgumentException("a hymba layer needs a HybridHeadState");
        var h = input.Hidden;
        long B = h.shape[0], T = h.shape[1];
        int kWidth = kvHeads * qkDim, vWidth = kvHeads * vDim;
        var p = in_proj.forward(h);                                                   // [B, T, q | k | v | x | z], no k | v if reused
        var q = p.narrow(-1, 0, hidden).reshape(B, T, heads, qkDim).transpose(1, 2);             // [B, nh, T, dqk]
        KvView kv;
        int xAt = hidden;
        if (ReusesKv)
        {
            (q, _) = self_attn.NormalizeAndRotate(q, null, input.Positions);
            kv = (input.Carry ?? throw new InvalidOperationException($"hymba layer {layer} reuses layer {kvSource}'s KV: run it " +
                                                                     "inside a model forward")).SharedKvOf(kvSource);
        }
        else
        {
            var k = p.narrow(-1, hidden, kWidth).reshape(B, T, kvHeads, qkDim).transpose(1, 2);      // [B, nkv, T, dqk]
            var v = p.narrow(-1, hidden + kWidth, vWidth).reshape(B, T, kvHeads, vDim).transpose(1, 2);   // [B, nkv, T, dv]
            xAt += kWidth + vWidth;
            (q, var rotated) = self_attn.NormalizeAndRotate(q, k, input.Positions);
            k = rotated!;
            kv = Attention.StoreKv(k, v, input with { State = state?.Attention });
            if (sharesKv) input.Carry?.ShareKv(layer, kv);
        }
        var x = p.narrow(-1, xAt, dInner);
        var z = p.narrow(-1, xAt + dInner, dInner);
        var attention = Attention.AttendOver(q, kv, input, Window, sink)
            .transpose(1, 2).reshape(B, T, heads * vDim);                                         // [B, T, d_inner]

        x = conv1d.Forward(x, state?.Mamba.Conv[0], input.Padding);
        var dbc = x_proj[0].forward(x);                                                 // [B, T, dt | B | C]
        var dt = dbc.narrow(-1, 0, dtRank);
        var Bm = dbc.narrow(-1, dtRank, dState);
        var Cm = dbc.narrow(-1, dtRank + dState, dState);
        if (dt_layernorm is not null) { dt = dt_layernorm.forward(dt); Bm = B_layernorm!.forward(Bm); Cm = C_layernorm!.forward(Cm); }
        var y = Mamba1.Scan(x, dt_proj[0].forward(dt), A_log[0], Bm, Cm, D[0], input.Padding,
                            state?.Mamba.Recurrent);
        var mamba = y.to(h.dtype) * nn.functional.silu(z);
        var mixed = (pre_avg_layernorm1.forward(attention) + pre_avg_layernorm2.forward(mamba)) / 2;
        return out_proj.forward(mixed).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Hymba's attention without projections (<c>attn_only_wo_proj</c>): the q/k RMSNorms when <c>kq_norm</c> is "rms" (under
    /// <c>self_attn.</c> as released) and RoPE.
    /// </summary>
    sealed class HymbaAttention : nn.Module
    {
        readonly RmsNorm? q_norm, k_norm;
        readonly Rotary? rotary;

        public HymbaAttention(HybridConfig config, Placement placement) : base(nameof(HymbaAttention))
        {
            if (config.KqNorm == "rms")
            {
                q_norm = new RmsNorm(config.AttnQkHeadDim, 1e-6, placement);
                k_norm = new RmsNorm(config.AttnQkHeadDim, 1e-6, placement);
            }
            if (config.Rope) rotary = new Rotary(config);
            RegisterComponents();
        }

        /// <summary>q [B, nh, T, d] and k [B, nkv, T, d] (null in a layer that reuses another's keys) → through q_norm and
        /// k_norm (when present) and rotated at <paramref name="positions"/> [B, T], one cos/sin table for both.</summary>
        public (Tensor Q, Tensor? K) NormalizeAndRotate(Tensor q, Tensor? k, Tensor positions)
        {
            if (q_norm is not null) { q = q_norm.forward(q); if (k is not null) k = k_norm!.forward(k); }
            if (rotary is null) return (q, k);
            var (cos, sin) = rotary.Tables(positions, q.dtype);
            return (Rotary.Apply(q, cos, sin), k is null ? null : Rotary.Apply(k, cos, sin));
        }
    }
}

/// <summary>Decode state of a hybrid-head (Hymba) layer: its attention KV cache (null in a layer that reads another layer's) and
/// its Mamba-1 conv and SSM states.</summary>
internal sealed class HybridHeadState(AttentionState? attention, RecurrentState mamba) : IMixerState
{
    public AttentionState? Attention { get; } = attention;
    public RecurrentState Mamba { get; } = mamba;

    public long Bytes => (Attention?.Bytes ?? 0) + Mamba.Bytes;

    public void CopyPrefixFrom(IMixerState prefix)
    {
        var source = (HybridHeadState)prefix;
        if (Attention is not null) Attention.CopyPrefixFrom(source.Attention!);
        Mamba.CopyPrefixFrom(source.Mamba);
    }

    public void Dispose()
    {
        Attention?.Dispose();
        Mamba.Dispose();
    }
}
