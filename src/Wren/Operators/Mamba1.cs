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
/// Mamba-1 (Gu and Dao 2023, the selective scan) as mamba_ssm's <c>Mamba</c> (mamba_ssm/modules/mamba_simple.py; the
/// equations of <c>selective_scan_ref</c> in mamba_ssm/ops/selective_scan_interface.py): <c>in_proj</c> splits into
/// [x, z]; x = silu(conv(x) + b); <c>x_proj(x)</c> splits into [dt (dt_rank) | B (N) | C (N)];
/// Δ = softplus(dt_proj(dt)) (the dt_proj bias inside the softplus); A = −exp(A_log) [d_inner, N]; per channel d and
/// state n: <c>h_t[d,n] = exp(Δ_t[d] A[d,n])·h_{t−1}[d,n] + Δ_t[d] x_t[d] B_t[n],  y_t[d] = Σ_n h_t[d,n] C_t[n] + D[d] x_t[d]</c>;
/// then <c>out_proj(y ⊙ silu(z))</c>. Unlike Mamba2 the decay is per channel and state, there are no heads and no output
/// norm. HF module name: <c>mamba</c> (mamba_ssm's own models call it <c>mixer</c>); the parameter names inside are
/// mamba_ssm's.
/// </summary>
internal sealed class Mamba1 : Mixer, IFusedDecoder
{
    readonly Linear in_proj, x_proj, out_proj;
    readonly ShortConv conv1d;
    readonly TimestepProjection dt_proj;
#pragma warning disable IDE1006   // mamba_ssm checkpoint names (A_log, D), so strict loading needs no key map
    readonly Parameter A_log, D;
#pragma warning restore IDE1006
    readonly int dInner, dState, dtRank;

    /// <summary>
    /// Layer type "mamba1". State per sequence: the conv history of x [d_inner, K−1] in the model dtype and the SSM state
    /// [d_inner, N] in float32. Initialization as mamba_ssm's <c>Mamba</c>: A = 1..N in every channel (S4D-real),
    /// D = 1, dt_proj weight U(±dt_rank^−½), dt_proj bias = softplus⁻¹(logU(1e-3, 0.1)) clamped ≥ 1e-4, conv bias
    /// U(±1/√K); in_proj, x_proj and out_proj take Wren's N(0, 0.02) like every projection.
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "mamba1",
        ModuleName = "mamba",
        Description = "Mamba-1 (chunked selective scan)",
        Create = (config, layer, placement) => new Mamba1(config, layer, placement),
        Validate = ValidateConfig,
        StateBytes = (c, _, _, elementSize) => (long)c.MambaDInner * (c.MambaDConv - 1) * elementSize + 4L * c.MambaDInner * c.MambaDState,
        Initialize = p => p.Name switch
        {
            "A_log" => arange(1, p.Config.MambaDState + 1, ScalarType.Float32).log().expand(p.Parameter.shape),
            "D" => ones_like(p.Parameter),
            "dt_proj.weight" => Initialization.Uniform(p.Parameter, -1 / Math.Sqrt(p.Config.MambaTimestepRank),
                                                       1 / Math.Sqrt(p.Config.MambaTimestepRank), p.Generator),
            "dt_proj.bias" => Initialization.TimestepBias(p.Parameter, p.Generator),
            "conv1d.bias" => Initialization.Uniform(p.Parameter, -1 / Math.Sqrt(p.Config.MambaDConv), 1 / Math.Sqrt(p.Config.MambaDConv),
                                                    p.Generator),
            _ => null,
        },
        SearchNames = [new("mamba1")],
    };

    static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.MambaExpand <= 0 || c.MambaDState <= 0 || c.MambaDConv <= 0)
            fail("mamba_expand, mamba_d_state and mamba_d_conv must be positive");
        if (c.MambaDtRank is <= 0) fail($"mamba_dt_rank ({c.MambaDtRank}) must be positive (leave it out for ⌈hidden_size / 16⌉)");
    }

    public Mamba1(HybridConfig config, int layer, Placement placement) : base(nameof(Mamba1))
    {
        int hidden = config.HiddenSize;
        dInner = config.MambaDInner;
        dState = config.MambaDState;
        dtRank = config.MambaTimestepRank;
        in_proj = new Linear(hidden, 2 * dInner, placement);
        conv1d = new ShortConv(dInner, config.MambaDConv, withBias: true, placement);
        x_proj = new Linear(dInner, dtRank + 2 * dState, placement);
        // Δ and decay parameters stay float32 whatever the model dtype (mamba_ssm computes the scan in fp32).
        var fp32 = placement with { Dtype = ScalarType.Float32 };
        dt_proj = new TimestepProjection(dtRank, dInner, fp32);
        A_log = fp32.Empty(dInner, dState);
        D = fp32.Empty(dInner);
        out_proj = new Linear(dInner, hidden, placement);
        RegisterComponents();
    }

    public override IMixerState NewState(CacheShape shape, Device device) =>
        new RecurrentState([conv1d.NewState(shape.Batch, device)], zeros([shape.Batch, dInner, dState], ScalarType.Float32, device));

    public OperatorForm FormOf(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        return DecodeForm.Choose(input, state?.Recurrent, state?.Conv[0], conv1d.Weight, conv1d.Bias, dt_proj.Weight, dt_proj.Bias, A_log,
                                 D);
    }

    public override Tensor forward(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input.Hidden, state!);
        using var scope = NewDisposeScope();
        var hidden = input.Hidden;
        var xz = in_proj.forward(hidden);                                         // [B, T, 2·d_inner]: x | z
        var z = xz.narrow(-1, dInner, dInner);
        var x = conv1d.Forward(xz.narrow(-1, 0, dInner), state?.Conv[0], input.Padding);
        var dbc = x_proj.forward(x);                                              // [B, T, dt_rank + 2N]: dt | B | C
        var Bm = dbc.narrow(-1, dtRank, dState);
        var Cm = dbc.narrow(-1, dtRank + dState, dState);
        var y = Scan(x, dt_proj.forward(dbc.narrow(-1, 0, dtRank)), A_log, Bm, Cm, D, input.Padding, state?.Recurrent);
        return out_proj.forward(y.to(hidden.dtype) * nn.functional.silu(z)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The selective scan of a layer's forward (also Hymba's Mamba heads): x [B, T, E] after the conv and SiLU; dt [B, T, E]
    /// the Δ projection before the softplus (float32); Bm, Cm [B, T, N]; Δ = softplus(dt), zero on pads so they leave the
    /// state unchanged; A = −exp(A_log). Continues <paramref name="state"/> [B, E, N] (updated in place) when given: the
    /// chunked form for several tokens, else the recurrent form. Returns <c>y = scan + D·x</c> [B, T, E] in float32.
    /// </summary>
    internal static Tensor Scan(Tensor x, Tensor dt, Tensor aLog, Tensor Bm, Tensor Cm, Tensor D, LeftPadding? padding, Tensor? state)
    {
        using var scope = NewDisposeScope();
        var delta = nn.functional.softplus(dt, 1.0, 20.0);                               // Δ [B, T, E]
        if (padding is not null) delta = delta * padding.Mask.unsqueeze(-1);              // Δ = 0: pads leave h unchanged
        var A = -aLog.exp();
        if (x.shape[1] > 1 && DecodeForm.FusedApplies(x, delta, A, Bm, Cm, D, state))   // inference prefill on the CPU
        {
            var h = state ?? zeros([x.shape[0], x.shape[2], A.shape[1]], ScalarType.Float32, x.device);
            return FusedScan(x, delta, A, Bm, Cm, D, h).MoveToOuterDisposeScope();
        }
        var (y, final) = DecodeForm.Choose(x.shape[1], state) == OperatorForm.Chunked
            ? Chunked(x, delta, A, Bm, Cm, D, state)
            : Recurrent(x, delta, A, Bm, Cm, D, state);                            // a decode step the fused kernel cannot take
        state?.copy_(final);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The selective scan as one CPU pass (inference prefill and the cache-free forward): channels (b, e) in chunks over
    /// the kernel threads, tokens in order within each, <c>h[n] ← exp(Δ·A[n])·h[n] + Δx·B[n]</c> over N in vectors, then
    /// <c>y = Σ_n h[n]·C[n] + D·x</c>. x and dt (Δ, after softplus) [b, T, E], A [E, N], B and C [b, T, N], D [E] float32;
    /// <paramref name="state"/> [b, E, N] float32, contiguous, continued and updated in place. Returns y [b, T, E].
    /// Through libtorch ops at d_inner 2048, N 16 and 1,024 tokens, <see cref="Chunked"/> took 3.6 s a layer and
    /// <see cref="Recurrent"/> 0.47 s; with this pass a 12-layer Mamba-1 model prefills 1,024 tokens in 5.7 s in all
    /// (docs/benchmarks.md). Tests hold it to the per-token loop.
    /// </summary>
    internal static unsafe Tensor FusedScan(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor state)
    {
        long batch = x.shape[0], T = x.shape[1], E = x.shape[2], N = A.shape[1];
        KernelTensors.RequireInPlace(state, "state", ScalarType.Float32, batch, E, N);
        using var xc = x.contiguous();
        using var dtc = dt.contiguous();
        using var Ac = A.contiguous();
        using var Bc = B.contiguous();
        using var Cc = C.contiguous();
        using var Dc = D.contiguous();
        KernelTensors.Require(xc, "x", ScalarType.Float32, batch, T, E);
        KernelTensors.Require(dtc, "dt", ScalarType.Float32, batch, T, E);
        KernelTensors.Require(Bc, "B", ScalarType.Float32, batch, T, N);
        KernelTensors.Require(Cc, "C", ScalarType.Float32, batch, T, N);
        var y = empty([batch, T, E], ScalarType.Float32);
        float* px = KernelTensors.Floats(xc), pdt = KernelTensors.Floats(dtc), pA = KernelTensors.Floats(Ac);
        float* pB = KernelTensors.Floats(Bc), pC = KernelTensors.Floats(Cc), pD = KernelTensors.Floats(Dc);
        float* pS = KernelTensors.Floats(state), py = KernelTensors.Floats(y);
        StepMath.ForUnits(batch * E, T * N, (begin, end) =>
        {
            for (long b = begin / E; b * E < end; b++)
            {
                long first = Math.Max(begin, b * E) - b * E, last = Math.Min(end, (b + 1) * E) - b * E;
                for (long t = 0; t < T; t++)                          // tokens outer: each row of x, Δ, B, C read once
                {
                    long row = b * T + t;
                    float* Bv = pB + row * N, Cv = pC + row * N;
                    for (long e = first; e < last; e++)
                    {
                        float step = pdt[row * E + e], xe = px[row * E + e];
                        py[row * E + e] = ScanChannel(step, step * xe, pA + e * N, Bv, Cv, pS + (b * E + e) * N, N) + pD[e] * xe;
                    }
                }
            }
        });
        return y;
    }

    /// <summary>One token of one channel: <c>h[n] ← exp(Δ·A[n])·h[n] + Δx·B[n]</c>; returns <c>Σ_n h[n]·C[n]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe float ScanChannel(float step, float stepX, float* A, float* Bv, float* Cv, float* h, long N)
    {
        int w = Vector<float>.Count;
        var acc = Vector<float>.Zero;
        var vStep = new Vector<float>(step);
        var vStepX = new Vector<float>(stepX);
        long n = 0;
        for (; n + w <= N; n += w)
        {
            var hv = Vector.Exp(vStep * Vector.Load(A + n)) * Vector.Load(h + n) + vStepX * Vector.Load(Bv + n);
            Vector.Store(hv, h + n);
            acc += hv * Vector.Load(Cv + n);
        }
        float sum = Vector.Sum(acc);
        for (; n < N; n++)
        {
            h[n] = MathF.Exp(step * A[n]) * h[n] + stepX * Bv[n];
            sum += h[n] * Cv[n];
        }
        return sum;
    }

    /// <summary>
    /// Token-by-token selective scan (<c>selective_scan_ref</c>): the specification, and the decode step. x and dt (Δ,
    /// after softplus) [b, T, E], A [E, N], B and C [b, T, N], D [E], state0 [b, E, N] or null; returns (y [b, T, E],
    /// final state [b, E, N]), float32.
    /// </summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? state0)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], T = x.shape[1], E = x.shape[2], N = A.shape[1];
        var x32 = x.to(ScalarType.Float32);
        var B32 = B.to(ScalarType.Float32);
        var C32 = C.to(ScalarType.Float32);
        var dt32 = dt.to(ScalarType.Float32);
        var S = state0?.to(ScalarType.Float32) ?? zeros([batch, E, N], ScalarType.Float32, x.device);
        var outputs = new Tensor[T];
        for (long t = 0; t < T; t++)
        {
            var step = dt32.select(1, t).unsqueeze(-1);                                 // [b, E, 1]
            var xt = x32.select(1, t);                                                  // [b, E]
            S = (step * A).exp() * S + (step * xt.unsqueeze(-1)) * B32.select(1, t).unsqueeze(1);
            // Σ_n S·C as a product and a reduction over n: a batched matmul rounds differently with the batch size.
            outputs[t] = (S * C32.select(1, t).unsqueeze(1)).sum(-1) + D * xt;
        }
        return (stack(outputs, 1).MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The selective scan in chunks of Q tokens (default ⌈√T⌉), shapes as in <see cref="Recurrent"/>. The decay is per
    /// channel and state, so there is no matrix form as in Mamba2's SSD; instead a two-level scan: (1) every chunk runs
    /// the recurrence from a zero state at once, Q steps over [b, chunks, E, N], giving its local outputs and final local
    /// state; (2) the states entering each chunk are carried across chunks, <c>S_in(c+1) = exp(Σ_chunk ΔA)·S_in(c) +
    /// local(c)</c>; (3) each token adds <c>Σ_n C_t[n]·exp(Σ_{s≤t in chunk} Δ_s A)[d,n]·S_in[d,n]</c>. Q + T/Q sequential
    /// steps in all, each a product of decays (exp of a chunk-local cumulative sum ≤ 0: never the difference of two).
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? state0,
                                                        int chunk = 0)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], T = x.shape[1], E = x.shape[2], N = A.shape[1];
        long Q = chunk > 0 ? Math.Min(chunk, Math.Max(T, 1)) : Math.Max(1, (long)Math.Ceiling(Math.Sqrt(T)));
        var x32 = ChunkMath.PadTo(x.to(ScalarType.Float32), 1, Q);
        var dtp = ChunkMath.PadTo(dt.to(ScalarType.Float32), 1, Q);                // Δ = 0 on padding: no effect on S
        long n = x32.shape[1] / Q;
        var xc = x32.reshape(batch, n, Q, E);
        var dtc = dtp.reshape(batch, n, Q, E);
        var Bc = ChunkMath.PadTo(B.to(ScalarType.Float32), 1, Q).reshape(batch, n, Q, 1, N);
        var Cc = ChunkMath.PadTo(C.to(ScalarType.Float32), 1, Q).reshape(batch, n, Q, 1, N);
        var u = dtc * xc;                                                              // Δ·x [b, n, Q, E]

        var local = zeros([batch, n, E, N], ScalarType.Float32, x.device);
        var yLocal = new Tensor[Q];
        for (long q = 0; q < Q; q++)
        {
            var step = dtc.select(2, q).unsqueeze(-1);                                 // [b, n, E, 1]
            var Bq = Bc.select(2, q);                                                  // [b, n, 1, N]
            local = (step * A).exp() * local + u.select(2, q).unsqueeze(-1) * Bq;
            yLocal[q] = local.matmul(Cc.select(2, q).transpose(-1, -2)).squeeze(-1);     // [b, n, E]
        }
        var decayToHere = (dtc.unsqueeze(-1) * A).cumsum(2).exp();                    // [b, n, Q, E, N]
        var chunkDecay = decayToHere.select(2, Q - 1);                                 // [b, n, E, N]

        var S = state0?.to(ScalarType.Float32) ?? zeros([batch, E, N], ScalarType.Float32, x.device);
        var incoming = new Tensor[n];
        for (long c = 0; c < n; c++)
        {
            incoming[c] = S;
            S = chunkDecay.select(1, c) * S + local.select(1, c);
        }
        var statesIn = stack(incoming, 1).unsqueeze(2);                                // [b, n, 1, E, N]
        var yOff = (decayToHere * statesIn * Cc).sum(-1);                              // [b, n, Q, E]
        var y = (stack(yLocal, 2) + yOff).reshape(batch, n * Q, E).narrow(1, 0, T) + D * x32.narrow(1, 0, T);
        return (y.MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>): in_proj in one matrix–vector pass; the conv step and SiLU
    /// of each row's x in place; x_proj (a matrix–vector pass of its precision); then one pass per channel (in chunks
    /// over the kernel threads): Δ = softplus(dt_proj·dt + bias), the state update over N, <c>(h C + D x)·silu(z)</c>;
    /// then out_proj. x [B, 1, hidden] float32; the state's conv history and SSM state are updated in place. Tests hold
    /// it to the recurrent form and the chunked form.
    /// </summary>
    unsafe Tensor FusedStep(Tensor hidden, RecurrentState state)
    {
        long B = hidden.shape[0], width = 2L * dInner, dbcWidth = dtRank + 2L * dState;
        int K = conv1d.Kernel;
        KernelTensors.RequireInPlace(state.Conv[0], "conv state", ScalarType.Float32, B, dInner, K - 1);
        KernelTensors.RequireInPlace(state.Recurrent, "state", ScalarType.Float32, B, dInner, dState);
        KernelTensors.RequireInPlace(dt_proj.Weight, "dt_proj weight", ScalarType.Float32, dInner, dtRank);
        using var output = in_proj.forward(hidden);
        using var projected = output.contiguous();                               // [B, 1, x | z]
        float* p = KernelTensors.Floats(projected), history = KernelTensors.Floats(state.Conv[0]);
        float* convWeight = KernelTensors.Floats(conv1d.Weight), convBias = conv1d.Bias is null ? null : KernelTensors.Floats(conv1d.Bias);
        for (long b = 0; b < B; b++) ShortConv.Step(p + b * width, history + b * dInner * (K - 1), convWeight, convBias, 0, dInner, K);
        using var xs = projected.narrow(-1, 0, dInner).contiguous();            // [B, 1, d_inner] after conv and SiLU
        using var dbcOut = x_proj.forward(xs);
        using var dbc = dbcOut.contiguous();                                     // [B, 1, dt | B | C]
        using var gated = empty(B, 1, dInner);
        float* px = KernelTensors.Floats(xs), pdbc = KernelTensors.Floats(dbc), y = KernelTensors.Floats(gated);
        float* S = KernelTensors.Floats(state.Recurrent), W = KernelTensors.Floats(dt_proj.Weight);
        float* bias = KernelTensors.Floats(dt_proj.Bias);
        float* aLog = KernelTensors.Floats(A_log), pD = KernelTensors.Floats(D);
        long R = dtRank, N = dState, E = dInner;
        StepMath.ForUnits(B * E, N + R, (begin, end) =>
        {
            for (long be = begin; be < end; be++)
            {
                long b = be / E, e = be % E;
                float* row = pdbc + b * dbcWidth;
                float step = StepMath.Softplus(MatVec.Dot(W + e * R, row, R) + bias[e]);
                float xe = px[be];
                y[be] = FusedChannel(step, step * xe, aLog + e * N, row + R, row + R + N, S + be * N, N) + pD[e] * xe;
                y[be] *= StepMath.Silu(p[b * width + E + e]);
            }
        });
        return out_proj.forward(gated);
    }

    /// <summary>One channel's state update and read-out: <c>h[n] ← exp(−Δ·exp(A_log[n]))·h[n] + Δx·B[n]</c>; returns
    /// <c>Σ_n h[n]·C[n]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe float FusedChannel(float step, float stepX, float* aLog, float* Bv, float* Cv, float* h, long N)
    {
        float sum = 0;
        for (long n = 0; n < N; n++)
        {
            h[n] = MathF.Exp(step * -MathF.Exp(aLog[n])) * h[n] + stepX * Bv[n];
            sum += h[n] * Cv[n];
        }
        return sum;
    }

    /// <summary>
    /// mamba_ssm's <c>dt_proj</c>: <c>Linear(dt_rank, d_inner, bias=True)</c>, weight [d_inner, dt_rank] and bias
    /// [d_inner], float32 (its output goes into the softplus and the scan in float32).
    /// </summary>
    internal sealed class TimestepProjection : nn.Module<Tensor, Tensor>
    {
        readonly Parameter weight, bias;

        public TimestepProjection(long rank, long channels, Placement fp32) : base(nameof(TimestepProjection))
        {
            weight = fp32.Empty(channels, rank);
            bias = fp32.Empty(channels);
            RegisterComponents();
        }

        public Parameter Weight => weight;
        public Parameter Bias => bias;

        /// <summary>dt [..., dt_rank] (any dtype) → <c>W·dt + bias</c> [..., d_inner] in float32 (before the softplus). The
        /// product is <see cref="Linear.Project"/>'s, so a decode batch's rows are each what they are alone.</summary>
        public override Tensor forward(Tensor dt)
        {
            using var product = Linear.Project(dt.to(ScalarType.Float32), weight);
            return product + bias;
        }
    }
}
