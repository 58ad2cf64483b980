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
/// Mamba2 (SSD). <c>in_proj</c> splits into [z, xBC, dt]; xBC = silu(conv(xBC) + b) splits into [x, B, C];
/// Δ = softplus(dt + dt_bias); A = −exp(A_log); per head h (group h // (heads/G)):
/// <c>S_t = exp(Δ_t A_h)·S_{t−1} + Δ_t x_t B_tᵀ,  y_t = S_t C_t + D_h x_t</c>; then
/// <c>out_proj(RMSNorm(y ⊙ silu(z)))</c> (gate, then normalize each of the G groups of d_inner / G channels on its own,
/// as mamba_ssm does; eps 1e-5). HF module name: <c>mamba</c>.
/// </summary>
internal sealed class Mamba2 : Mixer, IFusedDecoder
{
    readonly Linear in_proj, out_proj;
    readonly ShortConv conv1d;
#pragma warning disable IDE1006   // Hugging Face checkpoint names (A_log, D), so strict loading needs no key map
    readonly Parameter dt_bias, A_log, D;
#pragma warning restore IDE1006
    readonly RmsNorm norm;
    readonly int dInner, heads, headDim, groups, dState;

    /// <summary>
    /// Layer type "m2" (alias "m"). State per sequence: the conv history of x, B and C [C, K−1] in the model dtype and
    /// the SSM state [heads, P, N] in float32. Initialization as Mamba2's reference: A = U(1, 16), D = 1,
    /// Δ-bias = softplus⁻¹(logU(1e-3, 0.1)) clamped ≥ 1e-4, conv bias U(±1/√K).
    /// </summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "m2",
        ModuleName = "mamba",
        Description = "Mamba2 (chunked SSD)",
        Create = (config, layer, placement) => new Mamba2(config, layer, placement),
        Validate = ValidateConfig,
        StateBytes = (c, _, _, elementSize) =>
            (long)(c.MambaDInner + 2 * c.MambaNGroups * c.MambaDState) * (c.MambaDConv - 1) * elementSize
            + 4L * c.MambaHeads * c.Mamba2HeadDim * c.MambaDState,
        Initialize = p => p.Name switch
        {
            "A_log" => Initialization.Uniform(p.Parameter, 1, 16, p.Generator).log(),
            "D" => ones_like(p.Parameter),
            "dt_bias" => Initialization.TimestepBias(p.Parameter, p.Generator),
            "conv1d.bias" => Initialization.Uniform(p.Parameter, -1 / Math.Sqrt(p.Config.MambaDConv), 1 / Math.Sqrt(p.Config.MambaDConv),
                                                    p.Generator),
            _ => null,
        },
        SearchNames = [new("m2")],
    };

    static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.MambaExpand <= 0 || c.Mamba2HeadDim <= 0 || c.MambaDState <= 0 || c.MambaDConv <= 0)
            fail("mamba_expand, mamba2_headdim, mamba_d_state and mamba_d_conv must be positive");
        if (c.MambaDInner % c.Mamba2HeadDim != 0)
            fail($"mamba_expand·hidden_size ({c.MambaDInner}) must be divisible by mamba2_headdim ({c.Mamba2HeadDim})");
        if (c.MambaHeads % 8 != 0)
            fail($"Mamba2 needs a multiple of 8 heads: mamba_expand·hidden_size/mamba2_headdim = {c.MambaHeads}" +
                 (c.MambaDInner % 8 == 0 ? $" (mamba2_headdim {c.MambaDInner / 8} gives 8 heads)" : ""));
        if (c.MambaNGroups <= 0 || c.MambaHeads % c.MambaNGroups != 0)
            fail($"wren_mamba_ngroups ({c.MambaNGroups}) must divide the Mamba2 head count ({c.MambaHeads})");
    }

    public Mamba2(HybridConfig config, int layer, Placement placement) : base(nameof(Mamba2))
    {
        int hidden = config.HiddenSize;
        dInner = config.MambaDInner;
        heads = config.MambaHeads;
        headDim = config.Mamba2HeadDim;
        groups = config.MambaNGroups;
        dState = config.MambaDState;
        int convDim = dInner + 2 * groups * dState;
        in_proj = new Linear(hidden, 2 * dInner + 2 * groups * dState + heads, placement);
        conv1d = new ShortConv(convDim, config.MambaDConv, withBias: true, placement);
        // Decay and step parameters stay float32 whatever the model dtype.
        var fp32 = placement with { Dtype = ScalarType.Float32 };
        dt_bias = fp32.Empty(heads);
        A_log = fp32.Empty(heads);
        D = fp32.Empty(heads);
        norm = new RmsNorm(dInner, 1e-5, placement, groups);   // per group, as mamba_ssm's RMSNormGated(group_size = d_inner / ngroups)
        out_proj = new Linear(dInner, hidden, placement);
        RegisterComponents();
    }

    public override IMixerState NewState(CacheShape shape, Device device) =>
        new RecurrentState([conv1d.NewState(shape.Batch, device)],
            zeros([shape.Batch, heads, headDim, dState], ScalarType.Float32, device));

    public OperatorForm FormOf(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        return DecodeForm.Choose(input, state?.Recurrent, state?.Conv[0], conv1d.Weight, conv1d.Bias, dt_bias, A_log, D, norm.Weight);
    }

    public override Tensor forward(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input.Hidden, state!);
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var zxbcdt = in_proj.forward(x);
        var z = zxbcdt.narrow(-1, 0, dInner);
        var xBC = zxbcdt.narrow(-1, dInner, dInner + 2 * groups * dState);
        var dtRaw = zxbcdt.narrow(-1, 2 * dInner + 2 * groups * dState, heads);
        xBC = conv1d.Forward(xBC, state?.Conv[0], input.Padding);
        var xs = xBC.narrow(-1, 0, dInner).reshape(B, T, heads, headDim);
        var Bm = xBC.narrow(-1, dInner, groups * dState).reshape(B, T, groups, dState);
        var Cm = xBC.narrow(-1, dInner + groups * dState, groups * dState).reshape(B, T, groups, dState);
        var dt = nn.functional.softplus(dtRaw.to(ScalarType.Float32) + dt_bias, 1.0, 20.0);   // Δ [B, T, heads]
        if (input.Padding is not null) dt = dt * input.Padding.Mask.unsqueeze(-1);             // Δ = 0: pads leave S unchanged
        var A = -A_log.exp();
        var S = state?.Recurrent;
        (Tensor Output, Tensor? State) result = DecodeForm.Choose(T, S, xs, Bm) switch
        {
            OperatorForm.Fused => (FusedRecurrent(xs, dt, A, Bm, Cm, D, S!), null),
            OperatorForm.Recurrent => Recurrent(xs, dt, A, Bm, Cm, D, S),
            _ => Chunked(xs, dt, A, Bm, Cm, D, S),
        };
        if (result.State is not null) S?.copy_(result.State);
        var y = result.Output;
        var gated = y.reshape(B, T, dInner).to(x.dtype) * nn.functional.silu(z);
        return out_proj.forward(norm.forward(gated)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>): in_proj in one matrix–vector pass, then one pass over
    /// each row's projected vector [z | xBC | dt]: the conv step and SiLU of B and C and Δ = softplus(dt + dt_bias) in
    /// place; per head (in chunks over the kernel threads) the conv step and SiLU of its x channels, the SSD update and
    /// <c>(S C + D x) ⊙ silu(z)</c>; the grouped RMSNorm; then out_proj. x [B, 1, hidden] float32; the state's conv
    /// history and SSM state are updated in place. Tests hold it to the recurrent form and the chunked form.
    /// </summary>
    unsafe Tensor FusedStep(Tensor x, RecurrentState state)
    {
        long B = x.shape[0], convDim = dInner + 2L * groups * dState, width = dInner + convDim + heads;
        int K = conv1d.Kernel;
        KernelTensors.RequireInPlace(state.Conv[0], "conv state", ScalarType.Float32, B, convDim, K - 1);
        KernelTensors.RequireInPlace(state.Recurrent, "state", ScalarType.Float32, B, heads, headDim, dState);
        using var output = in_proj.forward(x);
        using var projected = output.contiguous();                           // [B, 1, z | xBC | dt]
        using var gated = empty(B, 1, dInner);
        float* p = KernelTensors.Floats(projected), y = KernelTensors.Floats(gated);
        float* history = KernelTensors.Floats(state.Conv[0]), S = KernelTensors.Floats(state.Recurrent);
        float* convWeight = KernelTensors.Floats(conv1d.Weight), convBias = conv1d.Bias is null ? null : KernelTensors.Floats(conv1d.Bias);
        float* dtBias = KernelTensors.Floats(dt_bias), aLog = KernelTensors.Floats(A_log), pD = KernelTensors.Floats(D);
        for (long b = 0; b < B; b++)
        {
            float* row = p + b * width, dt = row + dInner + convDim;
            ShortConv.Step(row + dInner, history + b * convDim * (K - 1), convWeight, convBias, dInner, convDim, K);   // B, C
            for (long h = 0; h < heads; h++) dt[h] = StepMath.Softplus(dt[h] + dtBias[h]);
        }
        long perGroup = heads / groups;
        StepMath.ForUnits(B * heads, (long)headDim * dState, (begin, end) =>
        {
            for (long bh = begin; bh < end; bh++)
            {
                long b = bh / heads, h = bh % heads, group = h / perGroup;
                float* z = p + b * width, xs = z + dInner, Bv = xs + dInner + group * dState, Cv = xs + dInner + (groups + group) * dState;
                ShortConv.Step(xs, history + b * convDim * (K - 1), convWeight, convBias, h * headDim, (h + 1) * headDim, K);
                float step = xs[convDim + h];
                float* yh = y + b * dInner + h * headDim;
                FusedHead(xs + h * headDim, step, MathF.Exp(step * -MathF.Exp(aLog[h])), Bv, Cv, pD[h], S + bh * headDim * dState, yh,
                          headDim, dState);
                for (long i = 0; i < headDim; i++) yh[i] *= StepMath.Silu(z[h * headDim + i]);
            }
        });
        long groupSize = dInner / groups;
        float* normWeight = KernelTensors.Floats(norm.Weight);
        for (long r = 0; r < B * groups; r++) StepMath.RmsNormalize(y + r * groupSize, normWeight + r % groups * groupSize, groupSize,
                                                                    (float)norm.Eps);
        return out_proj.forward(gated);
    }

    /// <summary>Token-by-token SSD: the specification, and the decode step. Shapes as in <see cref="Chunked"/>.</summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? state0)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], T = x.shape[1], H = x.shape[2], P = x.shape[3], N = B.shape[3];
        long perGroup = H / B.shape[2];
        var x32 = x.to(ScalarType.Float32);
        var Bh = B.to(ScalarType.Float32).repeat_interleave(perGroup, dim: 2);   // [b, T, H, N]
        var Ch = C.to(ScalarType.Float32).repeat_interleave(perGroup, dim: 2);
        var S = state0?.to(ScalarType.Float32) ?? zeros([batch, H, P, N], ScalarType.Float32, x.device);
        var outputs = new Tensor[T];
        for (long t = 0; t < T; t++)
        {
            var step = dt.select(1, t);                                          // [b, H]
            var xt = x32.select(1, t);                                           // [b, H, P]
            var decay = (step * A).exp().unsqueeze(-1).unsqueeze(-1);            // [b, H, 1, 1]
            S = decay * S + (step.unsqueeze(-1) * xt).unsqueeze(-1) * Bh.select(1, t).unsqueeze(-2);
            outputs[t] = S.matmul(Ch.select(1, t).unsqueeze(-1)).squeeze(-1) + D.unsqueeze(-1) * xt;
        }
        return (stack(outputs, 1).MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Chunked SSD. x [b, T, H, P], dt (Δ, after softplus) [b, T, H], A [H], B and C [b, T, G, N], D [H],
    /// state0 [b, H, P, N] or null; returns (y [b, T, H, P], final state [b, H, P, N]), float32.
    /// Per chunk: intra-chunk <c>Y_diag = (C Bᵀ ⊙ exp(segsum(ΔA))) (Δ·x)</c>, chunk states carried across
    /// chunks, and <c>Y_off = exp(cumsum(ΔA)) · C S_in</c>.
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? state0,
                                                        int chunk = 64)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], T = x.shape[1], H = x.shape[2], P = x.shape[3], N = B.shape[3];
        long perGroup = H / B.shape[2];
        long Q = Math.Min(chunk, Math.Max(T, 1));
        var x32 = ChunkMath.PadTo(x.to(ScalarType.Float32), 1, Q);
        var dtp = ChunkMath.PadTo(dt.to(ScalarType.Float32), 1, Q);              // Δ = 0 on padding: no effect on S
        var Bh = ChunkMath.PadTo(B.to(ScalarType.Float32).repeat_interleave(perGroup, dim: 2), 1, Q);
        var Ch = ChunkMath.PadTo(C.to(ScalarType.Float32).repeat_interleave(perGroup, dim: 2), 1, Q);
        long n = x32.shape[1] / Q;

        var xh = x32.reshape(batch, n, Q, H, P).permute(0, 3, 1, 2, 4);             // [b, H, n, Q, P]
        var dth = dtp.reshape(batch, n, Q, H).permute(0, 3, 1, 2);                  // [b, H, n, Q]
        var Bc = Bh.reshape(batch, n, Q, H, N).permute(0, 3, 1, 2, 4);              // [b, H, n, Q, N]
        var Cc = Ch.reshape(batch, n, Q, H, N).permute(0, 3, 1, 2, 4);
        var a = dth * A.reshape(1, H, 1, 1);                                        // ΔA [b, H, n, Q]
        var aCum = a.cumsum(-1);
        var xBar = xh * dth.unsqueeze(-1);                                       // Δ·x

        var decayIntra = ChunkMath.SegmentSum(a).exp();                          // [b, H, n, Q, Q]
        var yDiag = (Cc.matmul(Bc.transpose(-1, -2)) * decayIntra).matmul(xBar); // [b, H, n, Q, P]
        var toChunkEnd = (aCum.narrow(-1, Q - 1, 1) - aCum).exp().unsqueeze(-1); // [b, H, n, Q, 1]
        var chunkStates = (xBar * toChunkEnd).transpose(-1, -2).matmul(Bc);      // [b, H, n, P, N]
        var chunkDecay = aCum.narrow(-1, Q - 1, 1).exp().unsqueeze(-1);          // [b, H, n, 1, 1]

        var S = state0?.to(ScalarType.Float32) ?? zeros([batch, H, P, N], ScalarType.Float32, x.device);
        var incoming = new Tensor[n];
        for (long c = 0; c < n; c++)
        {
            incoming[c] = S;
            S = chunkDecay.select(2, c) * S + chunkStates.select(2, c);
        }
        var statesIn = stack(incoming, 2);                                       // [b, H, n, P, N]
        var yOff = Cc.matmul(statesIn.transpose(-1, -2)) * aCum.exp().unsqueeze(-1);
        var y = (yDiag + yOff).permute(0, 2, 3, 1, 4).reshape(batch, n * Q, H, P).narrow(1, 0, T);
        y = y + D.reshape(1, 1, H, 1) * x32.narrow(1, 0, T);
        return (y.MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }
    /// <summary>
    /// The fused CPU decode step: x [B, 1, H, P], dt (Δ) [B, 1, H], A [H], Bm and Cm [B, 1, G, N], D [H], all float32 on
    /// the CPU; state [B, H, P, N] float32, contiguous, updated in place. Returns y [B, 1, H, P]:
    /// <c>S ← exp(ΔA) S + Δ x Bᵀ;  y = S C + D x</c>. Tests hold it to <see cref="Recurrent"/>.
    /// </summary>
    internal static unsafe Tensor FusedRecurrent(Tensor x, Tensor dt, Tensor A, Tensor Bm, Tensor Cm, Tensor D, Tensor state)
    {
        long batch = x.shape[0], H = x.shape[2], P = x.shape[3], G = Bm.shape[2], N = Bm.shape[3];
        KernelTensors.Require(x, "x", ScalarType.Float32, batch, 1, H, P);
        KernelTensors.Require(dt, "dt", ScalarType.Float32, batch, 1, H);
        KernelTensors.RequireInPlace(A, "A", ScalarType.Float32, H);
        KernelTensors.Require(Bm, "B", ScalarType.Float32, batch, 1, G, N);
        KernelTensors.Require(Cm, "C", ScalarType.Float32, batch, 1, G, N);
        KernelTensors.RequireInPlace(D, "D", ScalarType.Float32, H);
        KernelTensors.RequireInPlace(state, "state", ScalarType.Float32, batch, H, P, N);
        if (H % G != 0) throw new ArgumentException($"B: {G} groups do not divide {H} heads");
        using var xc = x.contiguous(); using var dtc = dt.contiguous(); using var Bc = Bm.contiguous(); using var Cc = Cm.contiguous();
        var y = empty(batch, 1, H, P);
        float* px = KernelTensors.Floats(xc), pdt = KernelTensors.Floats(dtc), pA = KernelTensors.Floats(A), pB = KernelTensors.Floats(Bc);
        float* pC = KernelTensors.Floats(Cc), pD = KernelTensors.Floats(D), ps = KernelTensors.Floats(state), py = KernelTensors.Floats(y);
        long heads = batch * H, perGroup = H / G;
        StepMath.ForUnits(heads, P * N, (begin, end) =>
        {
            for (long bh = begin; bh < end; bh++)
            {
                long b = bh / H, h = bh % H, group = b * G + h / perGroup;
                float step = pdt[bh];
                FusedHead(px + bh * P, step, MathF.Exp(step * pA[h]), pB + group * N, pC + group * N, pD[h], ps + bh * P * N, py + bh * P,
                          P, N);
            }
        });
        return y;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void FusedHead(float* x, float step, float decay, float* Bv, float* Cv, float D, float* S, float* y, long P, long N)
    {
        int w = Vector<float>.Count;
        var d = new Vector<float>(decay);
        for (long p = 0; p < P; p++)
        {
            float* row = S + p * N;
            var scale = new Vector<float>(step * x[p]);
            var acc = Vector<float>.Zero;
            float tail = 0;
            long n = 0;
            for (; n + w <= N; n += w)
            {
                var updated = d * Vector.Load(row + n) + scale * Vector.Load(Bv + n);
                Vector.Store(updated, row + n);
                acc += updated * Vector.Load(Cv + n);
            }
            for (; n < N; n++) { row[n] = decay * row[n] + step * x[p] * Bv[n]; tail += row[n] * Cv[n]; }
            y[p] = Vector.Sum(acc) + tail + D * x[p];
        }
    }
}
