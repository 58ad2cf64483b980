using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// Gated linear attention (Yang et al. 2023, "Gated Linear Attention Transformers with Hardware-Efficient Training") as
/// fla's <c>fla/layers/gla.py</c> with its defaults (no short conv, no feature map, output gate on): q, k [B, T, H, K] with
/// K = int(hidden·expand_k)/H, v [B, T, H, V] with V = int(hidden·expand_v)/H; a low-rank key gate
/// <c>gk = logsigmoid(gk_proj(x)) / 16</c> (gk_proj: hidden → 16 → H·K, the second with a bias); per head, with state
/// S [K, V] (float32):
/// <code>
///   S_t = diag(exp(gk_t)) S_{t−1} + k_t v_tᵀ;   o_t = S_tᵀ (q_t·K^(−1/2))     (fla/ops/gla/naive.py)
/// </code>
/// then <c>o_proj(RMSNorm(o) ⊙ silu(g_proj(x)))</c> per head (fla's FusedRMSNormGated <c>g_norm_swish_gate</c>:
/// normalize, then gate; eps = rms_norm_eps as fla's GLAConfig.norm_eps). Wren layer type "gla", module <c>attn</c> (fla's
/// GLABlock), so <c>model.layers.{i}.attn.q_proj.weight</c> and the rest carry fla's names. The math forms take fla's
/// time-first layout and q already scaled: <see cref="Recurrent"/> is the specification, <see cref="Chunked"/> the
/// parallel form, <see cref="FusedRecurrent"/> the CPU decode step.
/// </summary>
internal sealed class GatedLinearAttention : Mixer, IFusedDecoder
{
    /// <summary>fla's <c>gate_low_rank_dim</c> (GLABlock keeps the layer's default).</summary>
    public const int GateLowRankDim = 16;

    /// <summary>fla's <c>gate_logit_normalizer</c>: the key gate is logsigmoid(·) divided by this (GLABlock keeps the default).</summary>
    public const float GateLogitNormalizer = 16f;

    readonly Linear q_proj, k_proj, v_proj, g_proj, o_proj;
    readonly LowRankGate gk_proj;
    readonly RmsNorm g_norm_swish_gate;
    readonly int heads, keyDim, valueDim;

    /// <summary>
    /// Layer type "gla", module <c>attn</c>. State per sequence: S [H, K, V] in float32 (no conv). Initialization as fla's
    /// GLA model (<c>_init_weights</c>): every projection N(0, 0.02), the gate bias 0, the norm weight 1.
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "gla",
        ModuleName = "attn",
        Description = "Gated linear attention (fla's GLA, chunked)",
        Create = (config, layer, placement) => new GatedLinearAttention(config, placement),
        Validate = ValidateConfig,
        StateBytes = (c, _, _, _) => 4L * KeyWidth(c) * ValueWidth(c) / c.NumAttentionHeads,
        Initialize = p => p.Name switch
        {
            "gk_proj.1.bias" => zeros_like(p.Parameter),
            "g_norm_swish_gate.weight" => ones_like(p.Parameter),
            _ => null,
        },
        SearchNames = [new("gla")],
    };

    /// <summary>fla's <c>key_dim = int(hidden_size · expand_k)</c>.</summary>
    static int KeyWidth(HybridConfig c) => (int)(c.HiddenSize * c.ExpandK);

    /// <summary>fla's <c>value_dim = int(hidden_size · expand_v)</c>.</summary>
    static int ValueWidth(HybridConfig c) => (int)(c.HiddenSize * c.ExpandV);

    static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.ExpandK <= 0 || c.ExpandV <= 0) fail($"expand_k ({c.ExpandK}) and expand_v ({c.ExpandV}) must be positive for GLA");
        if (KeyWidth(c) == 0 || KeyWidth(c) % c.NumAttentionHeads != 0)
            fail($"int(hidden_size·expand_k) = {KeyWidth(c)} must be a positive multiple of num_attention_heads " +
                 $"({c.NumAttentionHeads}) for GLA key heads");
        if (ValueWidth(c) == 0 || ValueWidth(c) % c.NumAttentionHeads != 0)
            fail($"int(hidden_size·expand_v) = {ValueWidth(c)} must be a positive multiple of num_attention_heads " +
                 $"({c.NumAttentionHeads}) for GLA value heads");
    }

    public GatedLinearAttention(HybridConfig config, Placement placement) : base(nameof(GatedLinearAttention))
    {
        int hidden = config.HiddenSize;
        heads = config.NumAttentionHeads;
        keyDim = KeyWidth(config);
        valueDim = ValueWidth(config);
        q_proj = new Linear(hidden, keyDim, placement);
        k_proj = new Linear(hidden, keyDim, placement);
        v_proj = new Linear(hidden, valueDim, placement);
        g_proj = new Linear(hidden, valueDim, placement);
        gk_proj = new LowRankGate(hidden, GateLowRankDim, keyDim, placement);
        g_norm_swish_gate = new RmsNorm(valueDim / heads, config.RmsNormEps, placement);
        o_proj = new Linear(valueDim, hidden, placement);
        RegisterComponents();
    }

    int HeadK => keyDim / heads;
    int HeadV => valueDim / heads;

    public override IMixerState NewState(CacheShape shape, Device device) =>
        new RecurrentState([], zeros([shape.Batch, heads, HeadK, HeadV], ScalarType.Float32, device));

    public OperatorForm FormOf(MixerInput input) =>
        DecodeForm.Choose(input, ((RecurrentState?)input.State)?.Recurrent, g_norm_swish_gate.Weight, gk_proj.Up.Bias);

    public override Tensor forward(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input.Hidden, state!);
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var projected = Linear.ProjectMany(x, q_proj, k_proj, v_proj, g_proj);
        var q = projected[0].reshape(B, T, heads, HeadK) * Math.Pow(HeadK, -0.5);
        var k = projected[1].reshape(B, T, heads, HeadK);
        var v = projected[2].reshape(B, T, heads, HeadV);
        var gk = nn.functional.logsigmoid(gk_proj.forward(x).to(ScalarType.Float32)).reshape(B, T, heads, HeadK) / GateLogitNormalizer;
        if (input.Padding is not null)                                   // k = 0 and no decay: pads leave S unchanged
        {
            var real = input.Padding.Mask.unsqueeze(-1).unsqueeze(-1);    // [B, T, 1, 1]
            k = k * real.to(k.dtype);
            gk = gk * real;
        }
        var S = state?.Recurrent;
        (Tensor Output, Tensor? State) result = DecodeForm.Choose(T, S, q, k, v) switch
        {
            OperatorForm.Fused => (FusedRecurrent(q, k, v, gk, S!), null),
            OperatorForm.Recurrent => Recurrent(q, k, v, gk, S),
            _ => Chunked(q, k, v, gk, S),
        };
        if (result.State is not null) S?.copy_(result.State);
        var normed = g_norm_swish_gate.forward(result.Output.to(x.dtype)).reshape(B, T, valueDim);
        return o_proj.forward(normed * nn.functional.silu(projected[3])).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>): the q, k, v, g and low-rank gate projections in one
    /// matrix–vector pass, the gate's second projection, then per head, in chunks over the kernel threads, one pass: q
    /// scaled by K^(−1/2), the decays <c>exp(logsigmoid(gk)/16)</c>, the state update and read-out
    /// (<see cref="FusedHead"/>), the per-head RMSNorm and the gate <c>silu(g)</c>; then o_proj. x [B, 1, hidden] float32;
    /// the state is updated in place. Tests hold it to the recurrent form and the chunked form.
    /// </summary>
    unsafe Tensor FusedStep(Tensor x, RecurrentState state)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0];
        int K = HeadK, V = HeadV;
        KernelTensors.RequireInPlace(state.Recurrent, "state", ScalarType.Float32, B, heads, K, V);
        var projected = Linear.ProjectMany(x, q_proj, k_proj, v_proj, g_proj, gk_proj.Down).Select(t => t.contiguous()).ToArray();
        var gates = gk_proj.Up.forward(projected[4]).contiguous();                 // [B, 1, H·K], bias added
        float* q = KernelTensors.Floats(projected[0]), k = KernelTensors.Floats(projected[1]), v = KernelTensors.Floats(projected[2]);
        float* g = KernelTensors.Floats(projected[3]), gk = KernelTensors.Floats(gates), S = KernelTensors.Floats(state.Recurrent);
        float* normWeight = KernelTensors.Floats(g_norm_swish_gate.Weight);
        var o = empty(B, 1, valueDim);
        float* po = KernelTensors.Floats(o);
        float scale = MathF.Pow(K, -0.5f), eps = (float)g_norm_swish_gate.Eps;
        StepMath.ForUnits(B * heads, (long)K * V, (begin, end) =>
        {
            float* decay = stackalloc float[K];
            for (long bh = begin; bh < end; bh++)
            {
                long keys = bh * K, values = bh * V;
                for (int i = 0; i < K; i++)
                {
                    q[keys + i] *= scale;
                    decay[i] = MathF.Exp(StepMath.LogSigmoid(gk[keys + i]) / GateLogitNormalizer);
                }
                float* oh = po + values;
                FusedHead(q + keys, k + keys, v + values, decay, S + bh * K * V, oh, K, V);
                StepMath.RmsNormalize(oh, normWeight, V, eps);
                for (int i = 0; i < V; i++) oh[i] *= StepMath.Silu(g[values + i]);
            }
        });
        return o_proj.forward(o).MoveToOuterDisposeScope();
    }

    /// <summary>Token-by-token form (fla's <c>naive_recurrent_gla</c>): the specification, and the decode step off the CPU
    /// kernels. Shapes as in <see cref="Chunked"/>.</summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor q, Tensor k, Tensor v, Tensor gk, Tensor? state0)
    {
        using var scope = NewDisposeScope();
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        var S = state0?.to(ScalarType.Float32) ?? zeros([B, H, K, V], ScalarType.Float32, q.device);
        var outputs = new Tensor[T];
        for (long t = 0; t < T; t++)
        {
            var decay = gk.select(1, t).to(ScalarType.Float32).exp().unsqueeze(-1);                    // [B, H, K, 1]
            var kt = k.select(1, t).to(ScalarType.Float32).unsqueeze(-1);                              // [B, H, K, 1]
            S = decay * S + kt * v.select(1, t).to(ScalarType.Float32).unsqueeze(-2);                  // + k vᵀ
            outputs[t] = q.select(1, t).to(ScalarType.Float32).unsqueeze(-2).matmul(S).squeeze(-2);    // Sᵀq  [B, H, V]
        }
        return (stack(outputs, 1).MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Chunked form. q, k [B, T, H, K] (q scaled), v [B, T, H, V], gk [B, T, H, K] (log-decays ≤ 0), state0 [B, H, K, V] or
    /// null (zeros); returns (o [B, T, H, V], final state [B, H, K, V]), float32. Per chunk of C tokens, with G the in-chunk
    /// inclusive cumsum of gk (per key channel, so every exponent below is ≤ 0):
    /// <code>
    ///   A_ij = Σ_k q_ik k_jk exp(G_ik − G_jk)  (j ≤ i; the masked segment sum per channel);   O = A V + (Q ⊙ e^G) S_in
    ///   S_out = diag(e^{G_C}) S_in + (K ⊙ e^{G_C − G})ᵀ V
    /// </code>
    /// The pairwise decays are [C, C] per key channel, hence the short default chunk. Zero-padded tokens (k = 0, gk = 0)
    /// change nothing.
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor q, Tensor k, Tensor v, Tensor gk, Tensor? state0, int chunk = 16)
    {
        using var scope = NewDisposeScope();
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        long C = Math.Min(chunk, Math.Max(T, 1));
        Tensor Prep(Tensor x) => ChunkMath.PadTo(x.to(ScalarType.Float32).transpose(1, 2), 2, C);   // [B, H, T', ·]
        var qc = Prep(q); var kc = Prep(k); var vc = Prep(v); var gc = Prep(gk);
        long n = qc.shape[2] / C;
        qc = qc.reshape(B, H, n, C, K); kc = kc.reshape(B, H, n, C, K); vc = vc.reshape(B, H, n, C, V); gc = gc.reshape(B, H, n, C, K);

        var G = gc.cumsum(3);                                                     // [B, H, n, C, K]
        var gLast = G.narrow(3, C - 1, 1);                                        // G_C [B, H, n, 1, K]
        var decay = ChunkMath.SegmentSum(gc.transpose(-1, -2)).exp();             // [B, H, n, K, C, C]: exp(G_i − G_j), 0 above
        var scores = (qc.transpose(-1, -2).unsqueeze(-1) * kc.transpose(-1, -2).unsqueeze(-2) * decay).sum(3);   // A [B, H, n, C, C]
        var intra = scores.matmul(vc);                                            // [B, H, n, C, V]
        var chunkStates = (kc * (gLast - G).exp()).transpose(-1, -2).matmul(vc);  // [B, H, n, K, V]
        var chunkDecay = gLast.exp().transpose(-1, -2);                           // [B, H, n, K, 1]

        var S = state0?.to(ScalarType.Float32) ?? zeros([B, H, K, V], ScalarType.Float32, q.device);
        var incoming = new Tensor[n];
        for (long c = 0; c < n; c++)
        {
            incoming[c] = S;
            S = chunkDecay.select(2, c) * S + chunkStates.select(2, c);
        }
        var o = intra + (qc * G.exp()).matmul(stack(incoming, 2));               // [B, H, n, C, V]
        o = o.reshape(B, H, n * C, V).narrow(2, 0, T).transpose(1, 2);            // [B, T, H, V]
        return (o.MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The fused CPU decode step (fla's <c>fused_recurrent_gla</c>): q, k, gk [B, 1, H, K] (q scaled), v [B, 1, H, V], all
    /// float32 on the CPU; state [B, H, K, V] float32, contiguous, updated in place. Returns o [B, 1, H, V]. Tests hold it
    /// to <see cref="Recurrent"/>.
    /// </summary>
    internal static unsafe Tensor FusedRecurrent(Tensor q, Tensor k, Tensor v, Tensor gk, Tensor state)
    {
        long B = q.shape[0], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        KernelTensors.Require(q, "q", ScalarType.Float32, B, 1, H, K);
        KernelTensors.Require(k, "k", ScalarType.Float32, B, 1, H, K);
        KernelTensors.Require(v, "v", ScalarType.Float32, B, 1, H, V);
        KernelTensors.Require(gk, "gk", ScalarType.Float32, B, 1, H, K);
        KernelTensors.RequireInPlace(state, "state", ScalarType.Float32, B, H, K, V);
        using var qc = q.contiguous(); using var kc = k.contiguous(); using var vc = v.contiguous();
        using var decays = gk.exp();
        var o = empty(B, 1, H, V);
        float* pq = KernelTensors.Floats(qc), pk = KernelTensors.Floats(kc), pv = KernelTensors.Floats(vc);
        float* pd = KernelTensors.Floats(decays), ps = KernelTensors.Floats(state), po = KernelTensors.Floats(o);
        StepMath.ForUnits(B * H, K * V, (begin, end) =>
        {
            for (long bh = begin; bh < end; bh++)
                FusedHead(pq + bh * K, pk + bh * K, pv + bh * V, pd + bh * K, ps + bh * K * V, po + bh * V, K, V);
        });
        return o;
    }

    /// <summary>
    /// One head of the fused step: <c>S ← diag(decay) S + k vᵀ;  o = Sᵀq</c> with q, k, decay [K], v [V], state S [K, V]
    /// updated in place, o [V] written. Also the core of mLSTM's fused step (a per-head decay repeated over K).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void FusedHead(float* q, float* k, float* v, float* decay, float* S, float* o, long K, long V)
    {
        int w = Vector<float>.Count;
        for (long j = 0; j < V; j++) o[j] = 0;
        for (long i = 0; i < K; i++)
        {
            var d = new Vector<float>(decay[i]);
            var ki = new Vector<float>(k[i]);
            var qi = new Vector<float>(q[i]);
            float* row = S + i * V;
            long j = 0;
            for (; j + w <= V; j += w)
            {
                var updated = d * Vector.Load(row + j) + ki * Vector.Load(v + j);
                Vector.Store(updated, row + j);
                Vector.Store(Vector.Load(o + j) + qi * updated, o + j);
            }
            for (; j < V; j++) { row[j] = decay[i] * row[j] + k[i] * v[j]; o[j] += q[i] * row[j]; }
        }
    }

    /// <summary>fla's low-rank gate <c>nn.Sequential(Linear(hidden, r), Linear(r, H·K, bias))</c>: parameters
    /// <c>0.weight</c>, <c>1.weight</c>, <c>1.bias</c>.</summary>
    sealed class LowRankGate : nn.Module<Tensor, Tensor>
    {
        public Linear Down { get; }
        public Linear Up { get; }

        public LowRankGate(long input, long rank, long output, Placement placement) : base(nameof(LowRankGate))
        {
            Down = new Linear(input, rank, placement);
            Up = new Linear(rank, output, placement, withBias: true);
            register_module("0", Down);
            register_module("1", Up);
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return Up.forward(Down.forward(x)).MoveToOuterDisposeScope();
        }
    }
}
