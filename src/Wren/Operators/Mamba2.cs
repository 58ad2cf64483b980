using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// Mamba2 (SSD). <c>in_proj</c> splits into [z, xBC, dt]; xBC = silu(conv(xBC) + b) splits into [x, B, C];
/// Δ = softplus(dt + dt_bias); A = −exp(A_log); per head h (group h // (heads/G)):
/// <c>S_t = exp(Δ_t A_h)·S_{t−1} + Δ_t x_t B_tᵀ,  y_t = S_t C_t + D_h x_t</c>; then
/// <c>out_proj(RMSNorm(y ⊙ silu(z)))</c> (gate, then normalize each of the G groups of d_inner / G channels on its own,
/// as mamba_ssm does; eps 1e-5). HF module name: <c>mamba</c>.
/// </summary>
public sealed class Mamba2 : Mixer
{
    readonly Linear in_proj, out_proj;
    readonly ShortConv conv1d;
    readonly Parameter dt_bias, A_log, D;
    readonly RmsNorm norm;
    readonly int dInner, heads, headDim, groups, dState;

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

    public override Tensor forward(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var state = (RecurrentState?)input.State;
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
        Tensor y;
        if (T == 1 && state is not null && Kernels.DecodeSteps.Applies(xs, Bm, state.Recurrent))
            y = Kernels.DecodeSteps.SsdStep(xs, dt, A, Bm, Cm, D, state.Recurrent);
        else
        {
            (y, var final) = T == 1 && state is not null
                ? Recurrent(xs, dt, A, Bm, Cm, D, state.Recurrent)
                : Chunked(xs, dt, A, Bm, Cm, D, state?.Recurrent);
            state?.Recurrent.copy_(final);
        }
        var gated = y.reshape(B, T, dInner).to(x.dtype) * nn.functional.silu(z);
        return out_proj.forward(norm.forward(gated)).MoveToOuterDisposeScope();
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
    public static (Tensor Output, Tensor State) Chunked(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? state0, int chunk = 64)
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
}
