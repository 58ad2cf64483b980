using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Operators;

/// <summary>
/// RWKV-7 "Goose" time mixing as fla's <c>fla/layers/rwkv7.py</c> (RWKV7Attention), heads of d = hidden / num_attention_heads:
/// <code>
///   x' = shift(x) (the previous token; the state's at the start),  x_* = x + (x' − x)·x_*   (r, w, k, v, a, g)
///   r = r_proj(x_r);  w = −e^(−1/2)·σ(w_lora(x_w));  k = k_proj(x_k);  v = v_proj(x_v)
///   v ← lerp(v, v_first, σ(v_lora(x_v)))    (every rwkv7 layer but the first; v_first = the first one's v)
///   a = σ(a_lora(x_a));  g = g_lora(x_g);  kk = L2Norm_head(k ⊙ k_k);  k ← k ⊙ (1 + (a − 1) ⊙ k_a)
///   S_t = diag(e^w) S_{t−1} + (kk ⊙ a)(−kkᵀ S_{t−1}) + k vᵀ,  o_t = S_tᵀ r_t       (per head, S [d, d] float32)
///   y = o_proj((GroupNorm_head(o) + (Σ_head r ⊙ k ⊙ r_k)·v) ⊙ g)
/// </code>
/// w_lora is lora.0 → tanh → lora.2 (+bias), a_lora and v_lora have no middle activation, g_lora is lora.0 → σ → lora.2
/// without bias (fla's LoRA); GroupNorm has one group per head and eps d·1e-5. The recurrence is fla's DPLR delta rule
/// (<see cref="Dplr"/>) with a = −kk, b = kk ⊙ a. The decode state is the last token's input (the token shift, a conv window
/// of one) and S. HF module name <c>attn</c> (fla's <c>model.layers.{i}.attn.</c>, so fla checkpoints load by name).
/// </summary>
internal sealed class Rwkv7 : Mixer, IFusedDecoder
{
    /// <summary>fla's bound on the log-decay: w = −e^(−1/2)·σ(·) ∈ (−0.6065, 0).</summary>
    const double DecayScale = 0.6065306597126334;

    /// <summary>fla's layer norm_eps; the GroupNorm's eps is head width × this.</summary>
    const double NormEps = 1e-5;

#pragma warning disable IDE1006   // fla checkpoint names, so strict loading needs no key map
    readonly Parameter x_r, x_w, x_k, x_v, x_a, x_g, k_k, k_a, r_k;
#pragma warning restore IDE1006
    readonly Linear r_proj, k_proj, v_proj, o_proj;
    readonly LowRankAdapter w_lora, a_lora, g_lora;
    readonly LowRankAdapter? v_lora;
    readonly HeadGroupNorm g_norm;
    readonly int heads, headDim, layer;

    /// <summary>
    /// Layer type "rwkv7", module <c>attn</c>. State per sequence: the token shift [hidden, 1] in the model dtype and S
    /// [nh, d, d] in float32. Initialization as fla's <c>RWKV7Attention._initialize_weights</c> (depth-dependent lerp factors,
    /// decay and a biases, orthogonal r/k/v, zero o_proj and LoRA down-projections), with layer i of L in place of fla's
    /// layer_idx of num_hidden_layers.
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "rwkv7",
        ModuleName = "attn",
        Description = "RWKV-7 (chunked DPLR delta rule)",
        Create = (config, layer, placement) => new Rwkv7(config, layer, placement),
        Validate = ValidateConfig,
        StateBytes = (c, _, _, elementSize) =>
            (long)c.HiddenSize * elementSize + 4L * c.NumAttentionHeads * c.LinearHeadDim * c.LinearHeadDim,
        Initialize = InitialValue,
        SearchNames = [new("rwkv7")],
    };

    static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.HiddenSize % c.NumAttentionHeads != 0)
            fail($"hidden_size ({c.HiddenSize}) must be divisible by num_attention_heads ({c.NumAttentionHeads}) for RWKV-7 heads");
        if (c.LinearHeadDim < 2) fail($"RWKV-7 heads need at least 2 channels (hidden_size / num_attention_heads = {c.LinearHeadDim})");
        foreach (var (key, value) in new[]
                 {
                     ("decay_low_rank_dim", c.DecayLowRankDim), ("gate_low_rank_dim", c.GateLowRankDim),
                     ("a_low_rank_dim", c.ALowRankDim), ("v_low_rank_dim", c.VLowRankDim),
                 })
            if (value is <= 0) fail($"{key} must be positive (or absent for fla's default), got {value}");
    }

    /// <summary>
    /// fla's default LoRA rank when the config gives none: <c>max(32, round(m·√hidden·f / 32)·32)</c> with m = 2.5 (decay,
    /// a), 5 (gate, f = 1) and 1.7 (v), f = d / 64; Python's round (half to even).
    /// </summary>
    static int DefaultRank(HybridConfig c, double multiplier, bool scaledByHead)
    {
        double factor = scaledByHead ? c.LinearHeadDim / 64.0 : 1;
        return Math.Max(32, (int)Math.Round(multiplier * Math.Sqrt(c.HiddenSize) * factor / 32, MidpointRounding.ToEven) * 32);
    }

    /// <summary>True for the first rwkv7 layer of the model: it makes v_first and has no v_lora.</summary>
    static bool IsFirst(HybridConfig c, int layer) =>
        Enumerable.Range(0, layer).All(i => OperatorRegistry.Of(c, i).Name != Spec.Name);

    public Rwkv7(HybridConfig config, int layer, Placement placement) : base(nameof(Rwkv7))
    {
        int hidden = config.HiddenSize;
        heads = config.NumAttentionHeads;
        headDim = config.LinearHeadDim;
        this.layer = layer;
        x_r = placement.Empty(1, 1, hidden);
        x_w = placement.Empty(1, 1, hidden);
        x_k = placement.Empty(1, 1, hidden);
        x_v = placement.Empty(1, 1, hidden);
        x_a = placement.Empty(1, 1, hidden);
        x_g = placement.Empty(1, 1, hidden);
        k_k = placement.Empty(hidden);
        k_a = placement.Empty(hidden);
        r_k = placement.Empty(heads, headDim);
        r_proj = new Linear(hidden, hidden, placement);
        k_proj = new Linear(hidden, hidden, placement);
        v_proj = new Linear(hidden, hidden, placement);
        o_proj = new Linear(hidden, hidden, placement);
        w_lora = new LowRankAdapter(hidden, hidden, config.DecayLowRankDim ?? DefaultRank(config, 2.5, true), LowRankActivation.Tanh, true,
                                    placement);
        if (!IsFirst(config, layer))
            v_lora = new LowRankAdapter(hidden, hidden, config.VLowRankDim ?? DefaultRank(config, 1.7, true), LowRankActivation.None, true,
                                        placement);
        a_lora = new LowRankAdapter(hidden, hidden, config.ALowRankDim ?? DefaultRank(config, 2.5, true), LowRankActivation.None, true,
                                    placement);
        g_lora = new LowRankAdapter(hidden, hidden, config.GateLowRankDim ?? DefaultRank(config, 5, false), LowRankActivation.Sigmoid,
                                    false, placement);
        g_norm = new HeadGroupNorm(hidden, heads, headDim * NormEps, placement);
        RegisterComponents();
    }

    /// <summary>fla's initialization of one parameter (see <see cref="Spec"/>); null for none of this layer's.</summary>
    static Tensor? InitialValue(ParameterInit p)
    {
        var c = p.Config;
        long H = c.HiddenSize, d = c.LinearHeadDim;
        int L = c.NumLayers, i = p.Layer;
        double ratio0To1 = (double)i / Math.Max(L - 1, 1), ratio1ToAlmost0 = 1.0 - (double)i / L;
        var n = arange(H, ScalarType.Float64);
        var linear = n / (H - 1) - 0.5;
        var zigzag = ((n % d) - (d - 1) / 2.0) / ((d - 1) / 2.0);
        zigzag = zigzag * zigzag.abs();
        var ddd = (n / H).reshape(1, 1, H);
        Tensor Lerp(double power) => 1.0 - ddd.pow(power * ratio1ToAlmost0);
        var value = p.Name switch
        {
            "x_r" => Lerp(0.2),
            "x_w" => Lerp(0.9),
            "x_k" => Lerp(0.7),
            "x_v" => Lerp(0.7),
            "x_a" => Lerp(0.9),
            "x_g" => Lerp(0.2),
            "k_k" => 0.71 - linear * 0.1,
            "k_a" => full_like(p.Parameter, 1.02, ScalarType.Float32),
            "r_k" => full_like(p.Parameter, -0.04, ScalarType.Float32),
            "w_lora.lora.2.bias" => -6 + 6 * (n / (H - 1)).pow(1 + Math.Pow(ratio0To1, 0.3)) + 0.5 + zigzag * 2.5,
            "a_lora.lora.2.bias" => -0.19 + zigzag * 0.3 + linear * 0.4,
            "v_lora.lora.2.bias" => 0.73 - linear * 0.4,
            "g_norm.weight" => full_like(p.Parameter, Math.Pow((i + 1.0) / L, 0.7), ScalarType.Float32),
            "g_norm.bias" or "o_proj.weight" => zeros_like(p.Parameter, ScalarType.Float32),
            "r_proj.weight" or "v_proj.weight" => Initialization.Orthogonal(p.Parameter, 1, p.Generator),
            "k_proj.weight" => Initialization.Orthogonal(p.Parameter, 0.1, p.Generator),
            _ when p.Name.EndsWith(".lora.0.weight", StringComparison.Ordinal) => zeros_like(p.Parameter, ScalarType.Float32),
            _ when p.Name.EndsWith(".lora.2.weight", StringComparison.Ordinal) => LowRankUpWeight(p),
            _ => null,
        };
        return value?.to(ScalarType.Float32);
    }

    /// <summary>fla's LoRA up-projection [out, rank]: orthogonal with gain 0.1·(√(rank/out) when rank &gt; out, else 1).</summary>
    static Tensor LowRankUpWeight(ParameterInit p)
    {
        long rows = p.Parameter.shape[0], cols = p.Parameter.shape[1];
        double gain = cols > rows ? Math.Sqrt((double)cols / rows) : 1;
        return Initialization.Orthogonal(p.Parameter, gain * 0.1, p.Generator);
    }

    public override IMixerState NewState(CacheShape shape, Device device) =>
        new RecurrentState([zeros([shape.Batch, x_r.shape[2], 1], x_r.dtype, device)],
            zeros([shape.Batch, heads, headDim, headDim], ScalarType.Float32, device));

    /// <summary>Every small parameter the fused step reads (the matrices go through the matrix–vector kernels of any
    /// precision).</summary>
    Tensor?[] StepParameters(MixerInput input) =>
        [x_r, x_w, x_k, x_v, x_a, x_g, k_k, k_a, r_k, g_norm.Weight, g_norm.Bias, w_lora.Bias, a_lora.Bias, v_lora?.Bias,
         v_lora is null ? null : input.Carry?.FirstValues];

    public OperatorForm FormOf(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        return DecodeForm.Choose(input, state?.Recurrent, [state?.Conv[0], .. StepParameters(input)]);
    }

    /// <summary>v_first for a later rwkv7 layer, or an error naming what is missing.</summary>
    Tensor FirstValues(MixerInput input) =>
        input.Carry?.FirstValues ?? throw new InvalidOperationException(
            $"rwkv7 layer {layer}: the first rwkv7 layer's values (MixerInput.Carry) are missing; run it through the model's layer stack");

    public override Tensor forward(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input, state!);
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var delta = TokenShift(x, state?.Conv[0], input.Padding) - x;
        Tensor Mix(Tensor factor) => x.addcmul(delta, factor, 1);
        var xv = Mix(x_v);
        var r = r_proj.forward(Mix(x_r));
        var w = w_lora.forward(Mix(x_w)).to(ScalarType.Float32).sigmoid() * -DecayScale;
        var k = k_proj.forward(Mix(x_k));
        var v = v_proj.forward(xv);
        if (v_lora is null) { if (input.Carry is not null) input.Carry.FirstValues = v; }
        else v = v.lerp(FirstValues(input), v_lora.forward(xv).sigmoid());
        var a = a_lora.forward(Mix(x_a)).sigmoid();
        var g = g_lora.forward(Mix(x_g));
        Tensor Heads(Tensor t) => t.reshape(B, T, heads, headDim);
        var kk = ChunkMath.L2Norm(Heads(k * k_k));
        k = k.addcmul(k * (a - 1), k_a, 1);
        var beta = kk * Heads(a);
        if (input.Padding is not null)
        {
            var mask = input.Padding.Mask.unsqueeze(-1);             // pads: no decay, no write, no low-rank term
            v = v * mask;
            w = w * mask;
            beta = beta * mask.unsqueeze(-1);
        }
        var S = state?.Recurrent;
        var (rh, wh, kh, vh) = (Heads(r), Heads(w), Heads(k), Heads(v));
        (Tensor Output, Tensor? State) result = DecodeForm.Choose(T, S, rh, wh, kh, vh, kk, beta) switch
        {
            OperatorForm.Fused => (Dplr.FusedRecurrent(rh, wh, kh, vh, -kk, beta, S!), null),
            OperatorForm.Recurrent => Dplr.Recurrent(rh, wh, kh, vh, -kk, beta, S),
            _ => Dplr.Chunked(rh, wh, kh, vh, -kk, beta, S),
        };
        if (result.State is not null) S?.copy_(result.State);
        var o = g_norm.forward(result.Output.to(x.dtype).reshape(B, T, -1));
        var bonus = (rh * kh * r_k).sum(-1, keepdim: true) * vh;        // fla's gate_output_correction
        return o_proj.forward((o + bonus.reshape(B, T, -1)) * g).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The token shift: the previous token's input for each of x [B, T, C] (the history [B, C, 1] at the first, zeros
    /// without one), pads skipped as if absent (<see cref="LeftPadding.ConvGatherIndex"/>, a conv window of one); the history
    /// becomes the last real input.
    /// </summary>
    static Tensor TokenShift(Tensor x, Tensor? history, LeftPadding? padding)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], T = x.shape[1], C = x.shape[2];
        var past = history?.transpose(1, 2) ?? zeros([B, 1, C], x.dtype, x.device);
        var seq = cat([past, x], 1);                                              // [B, 1+T, C]
        if (padding is not null) seq = seq.gather(1, padding.ConvGatherIndex(1, T).unsqueeze(-1).expand(B, 1 + T, C));
        history?.copy_(seq.narrow(1, T, 1).transpose(1, 2));
        return seq.narrow(1, 0, T).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>) on x [B, 1, hidden] float32: one pass makes the six lerps
    /// and moves the token shift; the projections and LoRA down-projections go through the matrix–vector kernels (v_proj with
    /// v_lora's, which read the same input), the LoRA middles in place, then the up-projections; then per head, in chunks
    /// over the kernel threads, one pass: biases, σ and the decay e^w, the value lerp, kk and its L2 norm, the k update,
    /// the DPLR update and read-out (<see cref="Dplr.FusedHead"/>), GroupNorm, the r·k·r_k bonus and the gate; then
    /// o_proj. The state is updated in place. Tests hold it to the recurrent form and the chunked form.
    /// </summary>
    unsafe Tensor FusedStep(MixerInput input, RecurrentState state)
    {
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], hidden = (long)heads * headDim;
        KernelTensors.RequireInPlace(state.Conv[0], "token-shift state", ScalarType.Float32, B, hidden, 1);
        KernelTensors.RequireInPlace(state.Recurrent, "state", ScalarType.Float32, B, heads, headDim, headDim);
        using var xc = x.contiguous();
        Parameter[] factors = [x_r, x_w, x_k, x_v, x_a, x_g];
        var mixed = factors.Select(_ => empty(B, 1, hidden)).ToArray();
        float* px = KernelTensors.Floats(xc), shift = KernelTensors.Floats(state.Conv[0]);
        for (int j = 0; j < factors.Length; j++)
        {
            float* mu = KernelTensors.Floats(factors[j]), m = KernelTensors.Floats(mixed[j]);
            for (long i = 0; i < B * hidden; i++) m[i] = px[i] + (shift[i] - px[i]) * mu[i % hidden];
        }
        for (long i = 0; i < B * hidden; i++) shift[i] = px[i];
        var r = r_proj.forward(mixed[0]).contiguous();
        var wLow = w_lora.Down(mixed[1]).contiguous();
        var k = k_proj.forward(mixed[2]).contiguous();
        var projected = Linear.ProjectMany(mixed[3], v_lora is null ? [v_proj] : [v_proj, v_lora.DownProjection]);
        var v = projected[0].contiguous();
        var aLow = a_lora.Down(mixed[4]).contiguous();
        var gLow = g_lora.Down(mixed[5]).contiguous();
        LowRankAdapter.Activate(wLow, LowRankActivation.Tanh);
        LowRankAdapter.Activate(gLow, LowRankActivation.Sigmoid);
        var wRaw = w_lora.Up(wLow).contiguous();
        var aRaw = a_lora.Up(aLow).contiguous();
        var g = g_lora.Up(gLow).contiguous();
        Tensor? vRaw = v_lora?.Up(projected[1].contiguous()).contiguous();
        if (v_lora is null && input.Carry is not null) input.Carry.FirstValues = v;
        Tensor? first = v_lora is null ? null : FirstValues(input).contiguous();
        if (first is not null) KernelTensors.Require(first, "first layer's values", ScalarType.Float32, B, 1, hidden);
        var o = empty(B, 1, hidden);
        float* pr = KernelTensors.Floats(r), pk = KernelTensors.Floats(k), pv = KernelTensors.Floats(v), pg = KernelTensors.Floats(g);
        float* pw = KernelTensors.Floats(wRaw), pa = KernelTensors.Floats(aRaw), po = KernelTensors.Floats(o);
        float* pvRaw = vRaw is null ? null : KernelTensors.Floats(vRaw), pFirst = first is null ? null : KernelTensors.Floats(first);
        float* wBias = KernelTensors.Floats(w_lora.Bias!), aBias = KernelTensors.Floats(a_lora.Bias!);
        float* vBias = v_lora is null ? null : KernelTensors.Floats(v_lora.Bias!);
        float* kScale = KernelTensors.Floats(k_k), kMix = KernelTensors.Floats(k_a), bonusScale = KernelTensors.Floats(r_k);
        float* normWeight = KernelTensors.Floats(g_norm.Weight), normBias = KernelTensors.Floats(g_norm.Bias);
        float* S = KernelTensors.Floats(state.Recurrent);
        float eps = (float)g_norm.Eps, scale = (float)-DecayScale;
        int d = headDim;
        StepMath.ForUnits(B * heads, (long)d * d, (begin, end) =>
        {
            float* scratch = stackalloc float[5 * d];
            float* decay = scratch, kk = scratch + d, kNew = scratch + 2 * d, beta = scratch + 3 * d, u = scratch + 4 * d;
            for (long bh = begin; bh < end; bh++)
            {
                long b = bh / heads, h = bh % heads, start = h * d, row = b * hidden + start;
                float* vh = pv + row;
                for (long i = 0; i < d; i++)
                {
                    long c = start + i;
                    decay[i] = MathF.Exp(scale * StepMath.Sigmoid(pw[row + i] + wBias[c]));
                    if (pvRaw is not null) vh[i] += (pFirst![row + i] - vh[i]) * StepMath.Sigmoid(pvRaw[row + i] + vBias[c]);
                    kk[i] = pk[row + i] * kScale[c];
                }
                StepMath.L2Normalize(kk, d, 1f);
                float bonus = 0;
                for (long i = 0; i < d; i++)
                {
                    long c = start + i;
                    float ai = StepMath.Sigmoid(pa[row + i] + aBias[c]), ki = pk[row + i];
                    kNew[i] = ki + ki * (ai - 1) * kMix[c];
                    beta[i] = kk[i] * ai;
                    kk[i] = -kk[i];
                    bonus += pr[row + i] * kNew[i] * bonusScale[c];
                }
                float* oh = po + row;
                Dplr.FusedHead(pr + row, decay, kNew, vh, kk, beta, S + bh * d * d, oh, u, d, d);
                HeadGroupNorm.Normalize(oh, normWeight + start, normBias + start, d, eps);
                for (long i = 0; i < d; i++) oh[i] = (oh[i] + bonus * vh[i]) * pg[row + i];
            }
        });
        return o_proj.forward(o).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The diagonal-plus-low-rank (DPLR) delta rule, fla's <c>ops/generalized_delta_rule/dplr</c> under RWKV-7. Per head, with
/// state S [K, V] (float32):
/// <code>
///   S_t = diag(e^{w_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ,   o_t = S_tᵀ r_t   (read after the update)
/// </code>
/// (the low-rank term reads the state before the decay, as fla's naive and fused recurrences). Every form takes fla's
/// time-first layout: r, w (log-decay ≤ 0), k, a, b [B, T, H, K], v [B, T, H, V], state0 [B, H, K, V] or null (zeros);
/// and returns (o [B, T, H, V], final state [B, H, K, V]), float32. A token with w = 0, v = 0 and b = 0 leaves S unchanged.
/// </summary>
internal static class Dplr
{
    /// <summary>Token-by-token form: the specification, and the decode step off the CPU kernels.</summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor r, Tensor w, Tensor k, Tensor v, Tensor a, Tensor b, Tensor? state0)
    {
        using var scope = NewDisposeScope();
        long B = r.shape[0], T = r.shape[1], H = r.shape[2], K = r.shape[3], V = v.shape[3];
        var S = state0?.to(ScalarType.Float32) ?? zeros([B, H, K, V], ScalarType.Float32, r.device);
        var outputs = new Tensor[T];
        Tensor At(Tensor x, long t) => x.select(1, t).to(ScalarType.Float32);       // [B, H, ·]
        for (long t = 0; t < T; t++)
        {
            var read = At(a, t).unsqueeze(-2).matmul(S);                           // aᵀS  [B, H, 1, V]
            S = At(w, t).exp().unsqueeze(-1) * S + At(b, t).unsqueeze(-1) * read + At(k, t).unsqueeze(-1) * At(v, t).unsqueeze(-2);
            outputs[t] = At(r, t).unsqueeze(-2).matmul(S).squeeze(-2);           // Sᵀr  [B, H, V]
        }
        return (stack(outputs, 1).MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Chunked form. Per chunk of C tokens, with G the in-chunk inclusive cumsum of w, G⁻ = G − w (exclusive), and
    /// ã = a⊙e^{G⁻}, r̃ = r⊙e^{G}, b̃ = b⊙e^{−G}, k̃ = k⊙e^{−G}: the low-rank reads u_t = a_tᵀS_{t−1} solve
    /// <code>
    ///   (I − StrictLower(Ã B̃ᵀ)) U = StrictLower(Ã K̃ᵀ) V + Ã S_0
    ///   O = R̃ S_0 + LowerInclDiag(R̃ B̃ᵀ) U + LowerInclDiag(R̃ K̃ᵀ) V
    ///   S_C = e^{G_C} ⊙ S_0 + (B⊙e^{G_C−G})ᵀ U + (K⊙e^{G_C−G})ᵀ V
    /// </code>
    /// (a unit-triangular solve, applied once to [Ã K̃ᵀ V | Ã] per chunk so only U = U₀ + W S_0 waits on the carried state).
    /// e^{−G} ≤ e^{0.61·C}: the default C = 32 keeps it below 3·10⁸ for RWKV-7's bounded decay. Padding tokens (w = v = b = 0)
    /// change nothing.
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor r, Tensor w, Tensor k, Tensor v, Tensor a, Tensor b, Tensor? state0,
                                                        int chunk = 32)
    {
        using var scope = NewDisposeScope();
        long B = r.shape[0], T = r.shape[1], H = r.shape[2], K = r.shape[3], V = v.shape[3];
        long C = Math.Min(chunk, Math.Max(T, 1));
        Tensor Prep(Tensor x)                                                      // [B, H, n, C, ·]
        {
            var padded = ChunkMath.PadTo(x.to(ScalarType.Float32).transpose(1, 2), 2, C);
            return padded.reshape(B, H, padded.shape[2] / C, C, x.shape[3]);
        }
        var (rc, wc, kc, vc, ac, bc) = (Prep(r), Prep(w), Prep(k), Prep(v), Prep(a), Prep(b));
        long n = rc.shape[2];
        var G = wc.cumsum(-2);
        var GLast = G.narrow(-2, C - 1, 1);                                         // [B, H, n, 1, K]
        var aDecayed = ac * (G - wc).exp();
        var rDecayed = rc * G.exp();
        var inverse = (-G).exp();
        var bInverse = (bc * inverse).transpose(-1, -2);
        var kInverse = (kc * inverse).transpose(-1, -2);
        var toEnd = (GLast - G).exp();
        var bToEnd = (bc * toEnd).transpose(-1, -2);                                // [B, H, n, K, C]
        var kToEnd = (kc * toEnd).transpose(-1, -2);
        var lowRank = aDecayed.matmul(bInverse).tril(-1);                           // [B, H, n, C, C]
        var rhs = cat([aDecayed.matmul(kInverse).tril(-1).matmul(vc), aDecayed], -1);
        var solved = linalg.solve_triangular(-lowRank, rhs, upper: false, left: true, unitriangular: true);
        var U0 = solved.narrow(-1, 0, V);                                           // [B, H, n, C, V]
        var W = solved.narrow(-1, V, K);                                            // [B, H, n, C, K]
        var readLowRank = rDecayed.matmul(bInverse).tril(0);
        var local = rDecayed.matmul(kInverse).tril(0).matmul(vc);                  // [B, H, n, C, V]
        var chunkDecay = GLast.exp().transpose(-1, -2);                             // [B, H, n, K, 1]

        var S = state0?.to(ScalarType.Float32) ?? zeros([B, H, K, V], ScalarType.Float32, r.device);
        var outputs = new Tensor[n];
        for (long i = 0; i < n; i++)
        {
            var u = U0.select(2, i) + W.select(2, i).matmul(S);                    // [B, H, C, V]
            outputs[i] = rDecayed.select(2, i).matmul(S) + readLowRank.select(2, i).matmul(u) + local.select(2, i);
            S = chunkDecay.select(2, i) * S + bToEnd.select(2, i).matmul(u) + kToEnd.select(2, i).matmul(vc.select(2, i));
        }
        var o = stack(outputs, 2).reshape(B, H, n * C, V).narrow(2, 0, T).transpose(1, 2);   // [B, T, H, V]
        return (o.MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The fused CPU decode step (fla's <c>fused_recurrent</c>): r, w, k, a, b [B, 1, H, K], v [B, 1, H, V], all float32 on
    /// the CPU; state [B, H, K, V] float32, contiguous, updated in place. Returns o [B, 1, H, V]. Tests hold it to
    /// <see cref="Recurrent"/>.
    /// </summary>
    internal static unsafe Tensor FusedRecurrent(Tensor r, Tensor w, Tensor k, Tensor v, Tensor a, Tensor b, Tensor state)
    {
        long B = r.shape[0], H = r.shape[2], K = r.shape[3], V = v.shape[3];
        var keyed = new[] { (r, "r"), (w, "w"), (k, "k"), (a, "a"), (b, "b") };
        foreach (var (t, name) in keyed) KernelTensors.Require(t, name, ScalarType.Float32, B, 1, H, K);
        KernelTensors.Require(v, "v", ScalarType.Float32, B, 1, H, V);
        KernelTensors.RequireInPlace(state, "state", ScalarType.Float32, B, H, K, V);
        using var scope = NewDisposeScope();
        var decay = w.exp().contiguous();
        var (rc, kc, vc, ac, bc) = (r.contiguous(), k.contiguous(), v.contiguous(), a.contiguous(), b.contiguous());
        var o = empty(B, 1, H, V);
        float* pr = KernelTensors.Floats(rc), pd = KernelTensors.Floats(decay), pk = KernelTensors.Floats(kc);
        float* pv = KernelTensors.Floats(vc), pa = KernelTensors.Floats(ac), pb = KernelTensors.Floats(bc);
        float* ps = KernelTensors.Floats(state), po = KernelTensors.Floats(o);
        StepMath.ForUnits(B * H, K * V, (begin, end) =>
        {
            float* u = stackalloc float[(int)V];
            for (long bh = begin; bh < end; bh++)
                FusedHead(pr + bh * K, pd + bh * K, pk + bh * K, pv + bh * V, pa + bh * K, pb + bh * K, ps + bh * K * V, po + bh * V, u,
                          K, V);
        });
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One head of the fused step: r, decay (= e^w), k, a, b [K], v [V]; state S [K, V] updated in place, o [V] written, u [V]
    /// scratch: <c>u = Sᵀa;  S ← diag(decay) S + b uᵀ + k vᵀ;  o = Sᵀr</c>. Also the core of RWKV-7's fused mixer step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void FusedHead(float* r, float* decay, float* k, float* v, float* a, float* b, float* S, float* o, float* u,
                                          long K, long V)
    {
        int width = Vector<float>.Count;
        for (long j = 0; j < V; j++) { u[j] = 0; o[j] = 0; }
        for (long i = 0; i < K; i++)                       // u ← Sᵀa (before the decay)
        {
            var ai = new Vector<float>(a[i]);
            float* row = S + i * V;
            long j = 0;
            for (; j + width <= V; j += width) Vector.Store(Vector.Load(u + j) + ai * Vector.Load(row + j), u + j);
            for (; j < V; j++) u[j] += a[i] * row[j];
        }
        for (long i = 0; i < K; i++)                       // S ← diag(decay) S + b uᵀ + k vᵀ;  o ← Sᵀr
        {
            var di = new Vector<float>(decay[i]);
            var bi = new Vector<float>(b[i]);
            var ki = new Vector<float>(k[i]);
            var ri = new Vector<float>(r[i]);
            float* row = S + i * V;
            long j = 0;
            for (; j + width <= V; j += width)
            {
                var updated = di * Vector.Load(row + j) + bi * Vector.Load(u + j) + ki * Vector.Load(v + j);
                Vector.Store(updated, row + j);
                Vector.Store(Vector.Load(o + j) + ri * updated, o + j);
            }
            for (; j < V; j++)
            {
                row[j] = decay[i] * row[j] + b[i] * u[j] + k[i] * v[j];
                o[j] += r[i] * row[j];
            }
        }
    }
}

/// <summary>The activation between a LoRA's two projections (fla's LoRA <c>activation</c>: None, tanh or sigmoid).</summary>
internal enum LowRankActivation { None, Tanh, Sigmoid }

/// <summary>
/// fla's LoRA (<c>fla/layers/rwkv6.py</c>): <c>lora = Sequential(Linear(in, rank, bias=False), activation, Linear(rank, out,
/// bias))</c>, so its parameters are <c>lora.0.weight</c>, <c>lora.2.weight</c> and <c>lora.2.bias</c>. x [..., in] → [..., out].
/// </summary>
internal sealed class LowRankAdapter : nn.Module<Tensor, Tensor>
{
    readonly nn.Module<Tensor, Tensor> lora;
    readonly Linear down;
    readonly Linear up;

    public LowRankAdapter(long input, long output, long rank, LowRankActivation activation, bool withBias, Placement placement)
        : base(nameof(LowRankAdapter))
    {
        down = new Linear(input, rank, placement);
        up = new Linear(rank, output, placement, withBias);
        nn.Module<Tensor, Tensor> middle = activation switch
        {
            LowRankActivation.Tanh => nn.Tanh(),
            LowRankActivation.Sigmoid => nn.Sigmoid(),
            _ => nn.Identity(),
        };
        lora = nn.Sequential(("0", down), ("1", middle), ("2", up));
        register_module("lora", lora);
    }

    /// <summary>lora.2's bias [out], or null without one.</summary>
    public Parameter? Bias => up.Bias;

    /// <summary>lora.0, for a fused product with another projection of the same input.</summary>
    public Linear DownProjection => down;

    public override Tensor forward(Tensor x) => lora.forward(x);

    /// <summary>lora.0 alone: [..., rank].</summary>
    public Tensor Down(Tensor x) => down.forward(x);

    /// <summary>lora.2 without its bias (the fused step adds it in its pass): [..., out].</summary>
    public Tensor Up(Tensor hidden) => Linear.Project(hidden, up.Weight, up.Scale);

    /// <summary>In place on a contiguous float32 CPU tensor: the LoRA's middle activation (torch's tanh and sigmoid).</summary>
    public static unsafe void Activate(Tensor x, LowRankActivation activation)
    {
        if (activation == LowRankActivation.None) return;
        KernelTensors.RequireInPlace(x, "low-rank activation", ScalarType.Float32, x.shape);
        float* p = KernelTensors.Floats(x);
        for (long i = 0; i < x.numel(); i++) p[i] = activation == LowRankActivation.Tanh ? MathF.Tanh(p[i]) : StepMath.Sigmoid(p[i]);
    }
}

/// <summary>
/// GroupNorm with one group per head over the last dimension (PyTorch's <c>nn.GroupNorm(heads, channels)</c> on
/// [tokens, channels], fla's g_norm): <c>(x − mean)/sqrt(var + eps)·weight + bias</c> per group, biased variance, in
/// float32. x [..., channels].
/// </summary>
internal sealed class HeadGroupNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight, bias;
    readonly long groups, size;

    public HeadGroupNorm(long channels, long groups, double eps, Placement placement) : base(nameof(HeadGroupNorm))
    {
        weight = placement.Empty(channels);
        bias = placement.Empty(channels);
        this.groups = groups;
        size = channels / groups;
        Eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter Bias => bias;
    public double Eps { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var grouped = x.to(ScalarType.Float32).reshape([.. x.shape[..^1], groups, size]);
        var centered = grouped - grouped.mean([-1], keepdim: true);
        var normed = (centered * (centered.square().mean([-1], keepdim: true) + Eps).rsqrt()).reshape(x.shape);
        return (normed * weight.to(ScalarType.Float32) + bias.to(ScalarType.Float32)).to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>In place, one group of n channels: <c>x ← (x − mean)/sqrt(var + eps)·weight + bias</c> (as
    /// <see cref="forward"/>).</summary>
    public static unsafe void Normalize(float* x, float* weight, float* bias, long n, float eps)
    {
        float mean = 0;
        for (long i = 0; i < n; i++) mean += x[i];
        mean /= n;
        float variance = 0;
        for (long i = 0; i < n; i++) { x[i] -= mean; variance += x[i] * x[i]; }
        float scale = 1f / MathF.Sqrt(variance / n + eps);
        for (long i = 0; i < n; i++) x[i] = x[i] * scale * weight[i] + bias[i];
    }
}
