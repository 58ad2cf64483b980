using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Common;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Operators;

/// <summary>
/// xLSTM's mLSTM layer (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"; NX-AI/xlstm
/// <c>xlstm/blocks/mlstm/layer.py</c>, <c>cell.py</c>, <c>backends.py</c>) with its defaults (no biases on the projections):
/// <c>proj_up</c> → [x, z] of the inner width; <c>x_c = silu(conv1d(x))</c>; block-diagonal q = q_proj(x_c), k = k_proj(x_c),
/// v = v_proj(x); gate pre-activations ĩ = igate([q, k, v]), f̃ = fgate([q, k, v]) per head; per head, with k scaled by
/// D^(−1/2), log f = logsigmoid(f̃) and the running-max stabiliser m (recurrent_step_stabilized_simple):
/// <code>
///   m_t = max(log f_t + m_{t−1}, ĩ_t);   f' = exp(log f_t + m_{t−1} − m_t);   i' = exp(ĩ_t − m_t)
///   C_t = f' C_{t−1} + i' k_t v_tᵀ;   n_t = f' n_{t−1} + i' k_t;   h_t = C_tᵀ q_t / (max(|n_tᵀ q_t|, exp(−m_t)) + 1e-6)
/// </code>
/// (C is stored [K, V] as xLSTM's step keeps it, the transpose of the paper's v kᵀ); then the per-head LayerNorm
/// <c>outnorm</c> (weight 1 + w, eps 1e-5), <c>+ learnable_skip ⊙ x_c</c>, <c>⊙ silu(z)</c>, <c>proj_down</c>. Wren layer
/// type "mlstm", module <c>xlstm</c> (xLSTM's mLSTMBlock), with xLSTM's parameter names. The state starts at C = 0, n = 0,
/// m = 0 as xLSTM's step does; the chunked form gives the same stabiliser, so every form agrees (parallel_stabilized_simple,
/// which has no state, differs only in where the 1e-6 lands).
/// </summary>
internal sealed class Mlstm : Mixer, IFusedDecoder
{
    /// <summary>The eps added to the normaliser (xLSTM's backends).</summary>
    public const float NormalizerEps = 1e-6f;

    /// <summary>The eps of the per-head output LayerNorm (xLSTM's LayerNorm default).</summary>
    public const double OutNormEps = 1e-5;

    readonly Linear proj_up, proj_down;
    readonly HeadwiseProjection q_proj, k_proj, v_proj;
    readonly CausalConv conv1d;
    readonly Cell mlstm_cell;
#pragma warning disable IDE1006   // xLSTM's checkpoint name
    readonly Parameter learnable_skip;
#pragma warning restore IDE1006
    readonly int inner, heads, headDim;

    /// <summary>
    /// Layer type "mlstm", module <c>xlstm</c>. State per sequence: the conv history [inner, K−1] in the model dtype and, in
    /// float32, per head C [D, D], n [D] and m (one row of D, every entry m): [H, D + 2, D]. Initialization as xLSTM's
    /// <c>reset_parameters</c>: proj_up and q/k/v small-init N(0, 2/(5·hidden)), proj_down Wang N(0, (2/(layers·√hidden))²),
    /// learnable_skip 1, gate weights 0, igate bias N(0, 0.1²), fgate bias linspace(3, 6), outnorm weight 0 (it scales by 1 + w),
    /// the conv PyTorch's default U(±1/√K).
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "mlstm",
        ModuleName = "xlstm",
        Description = "mLSTM (xLSTM's matrix LSTM, chunked)",
        Create = (config, layer, placement) => new Mlstm(config, placement),
        Validate = ValidateConfig,
        StateBytes = (c, _, _, elementSize) =>
            (long)InnerWidth(c) * (c.Conv1dKernelSize - 1) * elementSize
            + 4L * c.NumAttentionHeads * (InnerWidth(c) / c.NumAttentionHeads + 2) * (InnerWidth(c) / c.NumAttentionHeads),
        Initialize = p => p.Name switch
        {
            "proj_up.weight" or "q_proj.weight" or "k_proj.weight" or "v_proj.weight" =>
                randn(p.Parameter.shape, ScalarType.Float32, generator: p.Generator) * Math.Sqrt(2.0 / (5 * p.Config.HiddenSize)),
            "proj_down.weight" => randn(p.Parameter.shape, ScalarType.Float32, generator: p.Generator)
                                  * (2.0 / p.Config.NumLayers / Math.Sqrt(p.Config.HiddenSize)),
            "learnable_skip" => ones_like(p.Parameter),
            "mlstm_cell.igate.weight" or "mlstm_cell.fgate.weight" or "mlstm_cell.outnorm.weight" => zeros_like(p.Parameter),
            "mlstm_cell.igate.bias" => randn(p.Parameter.shape, ScalarType.Float32, generator: p.Generator) * 0.1,
            "mlstm_cell.fgate.bias" => linspace(3.0, 6.0, p.Parameter.shape[0]),
            "conv1d.conv.weight" or "conv1d.conv.bias" => Initialization.Uniform(p.Parameter, -1 / Math.Sqrt(p.Config.Conv1dKernelSize),
                                                                                 1 / Math.Sqrt(p.Config.Conv1dKernelSize), p.Generator),
            _ => null,
        },
        SearchNames = [new("mlstm")],
    };

    /// <summary>xLSTM's <c>_proj_up_dim</c>: proj_factor·hidden rounded up to a multiple of round_proj_up_to_multiple_of.</summary>
    static int InnerWidth(HybridConfig c) =>
        c.RoundProjUpToMultipleOf <= 0 ? 0
        : (int)Math.Ceiling(c.ProjFactor * c.HiddenSize / c.RoundProjUpToMultipleOf) * c.RoundProjUpToMultipleOf;

    static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.ProjFactor <= 0) fail($"proj_factor ({c.ProjFactor}) must be positive for mLSTM");
        if (c.RoundProjUpToMultipleOf <= 0) fail($"round_proj_up_to_multiple_of ({c.RoundProjUpToMultipleOf}) must be positive");
        if (c.Conv1dKernelSize <= 0) fail($"conv1d_kernel_size ({c.Conv1dKernelSize}) must be positive for mLSTM");
        int inner = InnerWidth(c);
        if (c.QkvProjBlocksize <= 0 || inner % c.QkvProjBlocksize != 0)
            fail($"qkv_proj_blocksize ({c.QkvProjBlocksize}) must divide the mLSTM inner width ({inner})");
        if (inner % c.NumAttentionHeads != 0)
            fail($"the mLSTM inner width ({inner}) must be divisible by num_attention_heads ({c.NumAttentionHeads})");
    }

    public Mlstm(HybridConfig config, Placement placement) : base(nameof(Mlstm))
    {
        int hidden = config.HiddenSize;
        inner = InnerWidth(config);
        heads = config.NumAttentionHeads;
        headDim = inner / heads;
        proj_up = new Linear(hidden, 2 * inner, placement);
        int blocks = inner / config.QkvProjBlocksize;
        q_proj = new HeadwiseProjection(inner, blocks, placement);
        k_proj = new HeadwiseProjection(inner, blocks, placement);
        v_proj = new HeadwiseProjection(inner, blocks, placement);
        conv1d = new CausalConv(inner, config.Conv1dKernelSize, placement);
        mlstm_cell = new Cell(inner, heads, placement);
        learnable_skip = placement.Empty(inner);
        proj_down = new Linear(inner, hidden, placement);
        RegisterComponents();
    }

    public override IMixerState NewState(CacheShape shape, Device device) =>
        new RecurrentState([conv1d.Conv.NewState(shape.Batch, device)],
            zeros([shape.Batch, heads, headDim + 2, headDim], ScalarType.Float32, device));

    public OperatorForm FormOf(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        return DecodeForm.Choose(input, state?.Recurrent, state?.Conv[0], conv1d.Conv.Weight, conv1d.Conv.Bias, q_proj.Weight,
                                 k_proj.Weight, v_proj.Weight, mlstm_cell.igate.Bias, mlstm_cell.fgate.Bias, mlstm_cell.outnorm.Weight,
                                 learnable_skip);
    }

    public override Tensor forward(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input.Hidden, state!);
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var up = proj_up.forward(x);
        var xm = up.narrow(-1, 0, inner);                                         // [B, T, inner]
        var z = up.narrow(-1, inner, inner);
        var xc = conv1d.Conv.Forward(xm, state?.Conv[0], input.Padding);          // silu(conv(x))
        var q = q_proj.forward(xc);
        var k = k_proj.forward(xc);
        var v = v_proj.forward(xm);
        var gates = cat([q, k, v], -1);                                            // [B, T, 3·inner]
        var ig = mlstm_cell.igate.forward(gates).to(ScalarType.Float32);           // ĩ [B, T, H]
        var logf = nn.functional.logsigmoid(mlstm_cell.fgate.forward(gates).to(ScalarType.Float32));
        if (input.Padding is not null)                                             // i = 0, f = 1: pads leave the state unchanged
        {
            var real = input.Padding.Mask.unsqueeze(-1);
            ig = ig.MaskedFill(real.logical_not(), double.NegativeInfinity);
            logf = logf * real;
        }
        Tensor Heads(Tensor t) => t.reshape(B, T, heads, headDim);
        var qh = Heads(q);
        var kh = Heads(k) * Math.Pow(headDim, -0.5);
        var vh = Heads(v);
        var S = state?.Recurrent;
        (Tensor Output, Tensor? State) result = DecodeForm.Choose(T, S, qh, kh, vh) switch
        {
            OperatorForm.Fused => (FusedRecurrent(qh, kh, vh, ig, logf, S!), null),
            OperatorForm.Recurrent => Recurrent(qh, kh, vh, ig, logf, S),
            _ => Chunked(qh, kh, vh, ig, logf, S),
        };
        if (result.State is not null) S?.copy_(result.State);
        var normed = mlstm_cell.outnorm.forward(result.Output).to(x.dtype).reshape(B, T, inner);
        var h = (normed + learnable_skip * xc) * nn.functional.silu(z);
        return proj_down.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>): proj_up as a matrix–vector pass; per row the conv step and
    /// SiLU of a copy of x, the block-diagonal q, k, v; igate and fgate as one matrix–vector pass over [q, k, v]; then per head,
    /// in chunks over the kernel threads, the stabilised update and read-out (<see cref="FusedHead"/>), the output LayerNorm,
    /// the skip and the gate <c>silu(z)</c>; then proj_down. x [B, 1, hidden] float32; the state's tensors are updated in
    /// place. Tests hold it to the recurrent form and the chunked form.
    /// </summary>
    unsafe Tensor FusedStep(Tensor x, RecurrentState state)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0];
        int K = conv1d.Conv.Kernel, D = headDim;
        KernelTensors.RequireInPlace(state.Conv[0], "conv state", ScalarType.Float32, B, inner, K - 1);
        KernelTensors.RequireInPlace(state.Recurrent, "state", ScalarType.Float32, B, heads, D + 2, D);
        var up = proj_up.forward(x).contiguous();                                  // [B, 1, x | z]
        var qkv = empty(B, 1, 3 * inner);
        var convolved = empty(B, 1, inner);
        float* pu = KernelTensors.Floats(up), pqkv = KernelTensors.Floats(qkv), pc = KernelTensors.Floats(convolved);
        float* history = KernelTensors.Floats(state.Conv[0]), convWeight = KernelTensors.Floats(conv1d.Conv.Weight);
        float* convBias = KernelTensors.Floats(conv1d.Conv.Bias!);
        for (long b = 0; b < B; b++)
        {
            float* xm = pu + b * 2 * inner, xc = pc + b * inner, row = pqkv + b * 3 * inner;
            for (long i = 0; i < inner; i++) xc[i] = xm[i];
            ShortConv.Step(xc, history + b * inner * (K - 1), convWeight, convBias, 0, inner, K);
            q_proj.Apply(xc, row);
            k_proj.Apply(xc, row + inner);
            v_proj.Apply(xm, row + 2 * inner);
        }
        var gates = Linear.ProjectMany(qkv, mlstm_cell.igate, mlstm_cell.fgate).Select(t => t.contiguous()).ToArray();   // [B, 1, H]
        float* ig = KernelTensors.Floats(gates[0]), fg = KernelTensors.Floats(gates[1]), S = KernelTensors.Floats(state.Recurrent);
        float* normWeight = KernelTensors.Floats(mlstm_cell.outnorm.Weight), skip = KernelTensors.Floats(learnable_skip);
        var h = empty(B, 1, inner);
        float* ph = KernelTensors.Floats(h);
        float scale = MathF.Pow(D, -0.5f);
        StepMath.ForUnits(B * heads, (long)D * D, (begin, end) =>
        {
            float* scratch = stackalloc float[2 * D];
            for (long bh = begin; bh < end; bh++)
            {
                long b = bh / heads, first = bh % heads * D;
                float* row = pqkv + b * 3 * inner, kScaled = scratch;
                for (int i = 0; i < D; i++) kScaled[i] = row[inner + first + i] * scale;
                float* oh = ph + b * inner + first;
                FusedHead(row + first, kScaled, row + 2 * inner + first, ig[bh], StepMath.LogSigmoid(fg[bh]), S + bh * (D + 2) * D, oh,
                          scratch + D, D);
                HeadLayerNorm.Normalize(oh, normWeight + first, D, (float)OutNormEps);
                float* xc = pc + b * inner + first, z = pu + b * 2 * inner + inner + first;
                for (int i = 0; i < D; i++) oh[i] = (oh[i] + skip[first + i] * xc[i]) * StepMath.Silu(z[i]);
            }
        });
        return proj_down.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Token-by-token form (xLSTM's <c>recurrent_step_stabilized_simple</c> in a loop): the specification, and the decode
    /// step off the CPU kernels. Shapes as in <see cref="Chunked"/>.
    /// </summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor q, Tensor k, Tensor v, Tensor ig, Tensor logf, Tensor? state0)
    {
        using var scope = NewDisposeScope();
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], D = q.shape[3];
        var (C, n, m) = Split(state0, B, H, D, q.device);
        var outputs = new Tensor[T];
        for (long t = 0; t < T; t++)
        {
            var lf = logf.select(1, t).to(ScalarType.Float32);                             // [B, H]
            var it = ig.select(1, t).to(ScalarType.Float32);
            var mNew = maximum(lf + m, it);
            var fAct = (lf + m - mNew).exp();
            var iAct = (it - mNew).exp();
            var qt = q.select(1, t).to(ScalarType.Float32);                                // [B, H, D]
            var kt = k.select(1, t).to(ScalarType.Float32);
            var vt = v.select(1, t).to(ScalarType.Float32);
            C = fAct.unsqueeze(-1).unsqueeze(-1) * C + (iAct.unsqueeze(-1) * kt).unsqueeze(-1) * vt.unsqueeze(-2);   // [B, H, D, D]
            n = fAct.unsqueeze(-1) * n + iAct.unsqueeze(-1) * kt;                                                   // [B, H, D]
            var numerator = qt.unsqueeze(-2).matmul(C).squeeze(-2);                                               // Cᵀq
            var qn = (qt * n).sum(-1);
            outputs[t] = numerator / (maximum(qn.abs(), (-mNew).exp()) + NormalizerEps).unsqueeze(-1);
            m = mNew;
        }
        return (stack(outputs, 1).MoveToOuterDisposeScope(), Join(C, n, m).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Chunked form (the stabilised chunkwise mLSTM, as xLSTM's <c>chunkwise_simple</c>, with the stabiliser of the
    /// recurrence). q, k, v [B, T, H, D] (k scaled by D^(−1/2)), ig (ĩ) and logf (log f) [B, T, H], state0 [B, H, D + 2, D]
    /// or null (zeros); returns (h [B, T, H, D], final state), float32. Per chunk with b the in-chunk cumsum of log f and the
    /// incoming (C, n, m):
    /// <code>
    ///   logD_ij = b_i − b_j + ĩ_j (j ≤ i);   s_i = max(max_j logD_ij, b_i + m)       (= the recurrence's m_i)
    ///   num_i = Σ_j e^{logD_ij − s_i} (q_i·k_j) v_j + e^{b_i + m − s_i} Cᵀq_i;   qn_i likewise with n
    ///   h_i = num_i / (max(|qn_i|, e^{−s_i}) + 1e-6);   the chunk's last s is the outgoing m
    /// </code>
    /// Every exponent is ≤ 0. Tokens with ĩ = −inf and log f = 0 (pads) change nothing.
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor q, Tensor k, Tensor v, Tensor ig, Tensor logf, Tensor? state0,
                                                        int chunk = 64)
    {
        using var scope = NewDisposeScope();
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], D = q.shape[3];
        long L = Math.Min(chunk, Math.Max(T, 1));
        Tensor Prep(Tensor x) => ChunkMath.PadTo(x.to(ScalarType.Float32).transpose(1, 2), 2, L);   // [B, H, T', ·]
        var qc = Prep(q); var kc = Prep(k); var vc = Prep(v); var lf = Prep(logf);
        long n = qc.shape[2] / L;
        var it = ig.to(ScalarType.Float32).transpose(1, 2);                                      // [B, H, T]
        if (n * L > T) it = cat([it, full([B, H, n * L - T], double.NegativeInfinity, ScalarType.Float32, q.device)], 2);
        qc = qc.reshape(B, H, n, L, D); kc = kc.reshape(B, H, n, L, D); vc = vc.reshape(B, H, n, L, D);
        lf = lf.reshape(B, H, n, L); it = it.reshape(B, H, n, L);

        var b = lf.cumsum(-1);                                                                   // [B, H, n, L]
        var bLast = b.narrow(-1, L - 1, 1);                                                      // [B, H, n, 1]
        var logD = ChunkMath.SegmentSum(lf) + it.unsqueeze(-2);                                  // [B, H, n, L, L]
        var rowMax = logD.amax([-1]);                                                            // [B, H, n, L]
        var (C, nState, m) = Split(state0, B, H, D, q.device);
        var mIn = new Tensor[n];
        for (long c = 0; c < n; c++)
        {
            mIn[c] = m;
            m = maximum(bLast.select(2, c).squeeze(-1) + m, rowMax.select(2, c).select(-1, L - 1));
        }
        var mIns = stack(mIn, 2);                                                                // [B, H, n]
        var mOuts = cat([mIns.narrow(2, 1, n - 1), m.unsqueeze(2)], 2);
        var kWeighted = kc * (bLast - b + it - mOuts.unsqueeze(-1)).exp().unsqueeze(-1);          // to the chunk end, over m_out
        var chunkC = kWeighted.transpose(-1, -2).matmul(vc);                                     // [B, H, n, D, D]
        var chunkN = kWeighted.sum(-2);                                                          // [B, H, n, D]
        var carry = (bLast.squeeze(-1) + mIns - mOuts).exp();                                    // [B, H, n]
        var cIn = new Tensor[n];
        var nIn = new Tensor[n];
        for (long c = 0; c < n; c++)
        {
            cIn[c] = C;
            nIn[c] = nState;
            var f = carry.select(2, c);
            C = f.unsqueeze(-1).unsqueeze(-1) * C + chunkC.select(2, c);
            nState = f.unsqueeze(-1) * nState + chunkN.select(2, c);
        }
        var stab = maximum(rowMax, b + mIns.unsqueeze(-1));                                      // [B, H, n, L]
        var scores = qc.matmul(kc.transpose(-1, -2)) * (logD - stab.unsqueeze(-1)).exp();         // [B, H, n, L, L]
        var fromState = (b + mIns.unsqueeze(-1) - stab).exp();                                   // [B, H, n, L]
        var numerator = scores.matmul(vc) + fromState.unsqueeze(-1) * qc.matmul(stack(cIn, 2));
        var qn = scores.sum(-1) + fromState * qc.matmul(stack(nIn, 2).unsqueeze(-1)).squeeze(-1);
        var h = numerator / (maximum(qn.abs(), (-stab).exp()) + NormalizerEps).unsqueeze(-1);
        h = h.reshape(B, H, n * L, D).narrow(2, 0, T).transpose(1, 2);                            // [B, T, H, D]
        return (h.MoveToOuterDisposeScope(), Join(C, nState, m).MoveToOuterDisposeScope());
    }

    /// <summary>C [B, H, D, D], n [B, H, D] and m [B, H] of a state [B, H, D + 2, D] (zeros when null).</summary>
    static (Tensor C, Tensor N, Tensor M) Split(Tensor? state, long B, long H, long D, Device device)
    {
        var s = state?.to(ScalarType.Float32) ?? zeros([B, H, D + 2, D], ScalarType.Float32, device);
        return (s.narrow(2, 0, D), s.select(2, D), s.select(2, D + 1).select(-1, 0));
    }

    /// <summary>The state [B, H, D + 2, D]: C, then n, then m repeated over the last row.</summary>
    static Tensor Join(Tensor C, Tensor n, Tensor m) =>
        cat([C, n.unsqueeze(2), m.unsqueeze(-1).expand_as(n).unsqueeze(2)], 2);

    /// <summary>
    /// The fused CPU decode step: q, k, v [B, 1, H, D] (k scaled), ig and logf [B, 1, H], all float32 on the CPU; state
    /// [B, H, D + 2, D] float32, contiguous, updated in place. Returns h [B, 1, H, D]. Tests hold it to <see cref="Recurrent"/>.
    /// </summary>
    internal static unsafe Tensor FusedRecurrent(Tensor q, Tensor k, Tensor v, Tensor ig, Tensor logf, Tensor state)
    {
        long B = q.shape[0], H = q.shape[2], D = q.shape[3];
        KernelTensors.Require(q, "q", ScalarType.Float32, B, 1, H, D);
        KernelTensors.Require(k, "k", ScalarType.Float32, B, 1, H, D);
        KernelTensors.Require(v, "v", ScalarType.Float32, B, 1, H, D);
        KernelTensors.Require(ig, "ig", ScalarType.Float32, B, 1, H);
        KernelTensors.Require(logf, "logf", ScalarType.Float32, B, 1, H);
        KernelTensors.RequireInPlace(state, "state", ScalarType.Float32, B, H, D + 2, D);
        using var qc = q.contiguous(); using var kc = k.contiguous(); using var vc = v.contiguous();
        using var ic = ig.contiguous(); using var fc = logf.contiguous();
        var o = empty(B, 1, H, D);
        float* pq = KernelTensors.Floats(qc), pk = KernelTensors.Floats(kc), pv = KernelTensors.Floats(vc), pi = KernelTensors.Floats(ic);
        float* pf = KernelTensors.Floats(fc), ps = KernelTensors.Floats(state), po = KernelTensors.Floats(o);
        StepMath.ForUnits(B * H, D * D, (begin, end) =>
        {
            float* scratch = stackalloc float[(int)D];
            for (long bh = begin; bh < end; bh++)
                FusedHead(pq + bh * D, pk + bh * D, pv + bh * D, pi[bh], pf[bh], ps + bh * (D + 2) * D, po + bh * D, scratch, D);
        });
        return o;
    }

    /// <summary>
    /// One head of the fused step: the stabiliser, <c>C ← f'C + i' k vᵀ</c> and <c>Cᵀq</c> through GLA's head kernel
    /// (<see cref="GatedLinearAttention.FusedHead"/>, its decay f' on every row and its key i'·k), n, and the normalised
    /// read-out into o [D]. q, k, v [D]; ig = ĩ, logf = log f; state [D + 2, D] updated in place; scratch [D].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void FusedHead(float* q, float* k, float* v, float ig, float logf, float* state, float* o, float* scratch, long D)
    {
        float* n = state + D * D, m = n + D;
        float mNew = MathF.Max(logf + m[0], ig);
        float fAct = MathF.Exp(logf + m[0] - mNew), iAct = MathF.Exp(ig - mNew);
        float* decay = scratch;
        for (long i = 0; i < D; i++) decay[i] = fAct;
        Span<float> weighted = stackalloc float[(int)D];
        fixed (float* kw = weighted)
        {
            for (long i = 0; i < D; i++) kw[i] = iAct * k[i];
            GatedLinearAttention.FusedHead(q, kw, v, decay, state, o, D, D);
            float qn = 0;
            for (long i = 0; i < D; i++) { n[i] = fAct * n[i] + kw[i]; qn += q[i] * n[i]; }
            float denominator = MathF.Max(MathF.Abs(qn), MathF.Exp(-mNew)) + NormalizerEps;
            for (long j = 0; j < D; j++) { o[j] /= denominator; m[j] = mNew; }
        }
    }

    /// <summary>xLSTM's <c>LinearHeadwiseExpand</c> (expand factor 1, no bias): weight [blocks, d, d] applied block by block,
    /// <c>y[h·d + o] = Σ_i W[h, o, i] x[h·d + i]</c>.</summary>
    sealed class HeadwiseProjection : nn.Module<Tensor, Tensor>
    {
        readonly Parameter weight;

        public HeadwiseProjection(long features, long blocks, Placement placement) : base(nameof(HeadwiseProjection))
        {
            weight = placement.Empty(blocks, features / blocks, features / blocks);
            RegisterComponents();
        }

        public Parameter Weight => weight;

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            long blocks = weight.shape[0], d = weight.shape[2];
            var grouped = x.reshape([.. x.shape[..^1], blocks, d, 1]);                 // [..., h, d, 1]
            return weight.matmul(grouped).reshape(x.shape).MoveToOuterDisposeScope();  // W[h] x[h]
        }

        /// <summary>The same product for one row: x and y [features] (float32; not aliased).</summary>
        public unsafe void Apply(float* x, float* y)
        {
            long blocks = weight.shape[0], d = weight.shape[2];
            float* w = KernelTensors.Floats(weight);
            for (long h = 0; h < blocks; h++)
                for (long o = 0; o < d; o++)
                {
                    float sum = 0;
                    float* wo = w + (h * d + o) * d, xh = x + h * d;
                    for (long i = 0; i < d; i++) sum += wo[i] * xh[i];
                    y[h * d + o] = sum;
                }
        }
    }

    /// <summary>xLSTM's <c>CausalConv1d</c> (depthwise, with bias): its <c>conv</c> holds <c>weight</c> [C, 1, K] and
    /// <c>bias</c> [C]; SiLU follows (the layer's conv_act_fn), as <see cref="ShortConv"/> computes.</summary>
    sealed class CausalConv : nn.Module
    {
        public ShortConv Conv { get; }

        public CausalConv(long channels, int kernel, Placement placement) : base(nameof(CausalConv))
        {
            Conv = new ShortConv(channels, kernel, withBias: true, placement);
            register_module("conv", Conv);
        }
    }

    /// <summary>xLSTM's <c>mLSTMCell</c>: the gate projections <c>igate</c>, <c>fgate</c> (3·inner → heads, with bias) and
    /// <c>outnorm</c>.</summary>
    sealed class Cell : nn.Module
    {
#pragma warning disable IDE1006   // xLSTM's checkpoint names
        public readonly Linear igate, fgate;
        public readonly HeadLayerNorm outnorm;
#pragma warning restore IDE1006

        public Cell(long inner, int heads, Placement placement) : base(nameof(Cell))
        {
            igate = new Linear(3 * inner, heads, placement, withBias: true);
            fgate = new Linear(3 * inner, heads, placement, withBias: true);
            outnorm = new HeadLayerNorm(inner, heads, placement);
            RegisterComponents();
        }
    }

    /// <summary>
    /// xLSTM's <c>MultiHeadLayerNorm</c> (a group norm with one group per head, no bias, residual weight): per head,
    /// <c>(x − mean) / sqrt(var + 1e-5) · (1 + w)</c>, w [inner].
    /// </summary>
    sealed class HeadLayerNorm : nn.Module<Tensor, Tensor>
    {
        readonly Parameter weight;
        readonly int heads;

        public HeadLayerNorm(long size, int heads, Placement placement) : base(nameof(HeadLayerNorm))
        {
            weight = placement.Empty(size);
            this.heads = heads;
            RegisterComponents();
        }

        public Parameter Weight => weight;

        /// <summary>h [B, T, H, D] (float32) → the normalised heads, same shape.</summary>
        public override Tensor forward(Tensor h)
        {
            using var scope = NewDisposeScope();
            long D = h.shape[^1];
            var normed = nn.functional.layer_norm(h, [D], null, null, OutNormEps);
            return (normed * (weight.to(ScalarType.Float32).reshape(heads, D) + 1)).MoveToOuterDisposeScope();
        }

        /// <summary>One head of n floats in place, with its slice of the weight.</summary>
        public static unsafe void Normalize(float* x, float* weight, long n, float eps)
        {
            float mean = 0;
            for (long i = 0; i < n; i++) mean += x[i];
            mean /= n;
            float variance = 0;
            for (long i = 0; i < n; i++) variance += (x[i] - mean) * (x[i] - mean);
            float r = 1f / MathF.Sqrt(variance / n + eps);
            for (long i = 0; i < n; i++) x[i] = (x[i] - mean) * r * (1f + weight[i]);
        }
    }
}
