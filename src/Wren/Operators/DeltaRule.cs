using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// The (gated) delta rule, the math under DeltaNet and Gated DeltaNet. Per head, with state S [K, V] (float32):
/// <code>
///   S ← exp(g_t)·S                  (gated only; g_t ≤ 0 is a log-decay)
///   u_t = β_t (v_t − Sᵀk_t);  S ← S + k_t u_tᵀ;  o_t = Sᵀq_t   (read after the update)
/// </code>
/// Every form takes fla's time-first layout: q, k [B, T, H, K], v [B, T, H, V], beta [B, T, H], g [B, T, H] or
/// null, state0 [B, H, K, V] or null (zeros); and returns (o [B, T, H, V], final state [B, H, K, V]), all float32.
/// <see cref="Recurrent"/> is the specification, <see cref="Chunked"/> the parallel form, <see cref="FusedRecurrent"/>
/// the CPU decode step; <see cref="DecodeForm"/> chooses.
/// </summary>
internal static class DeltaRule
{
    /// <summary>Token-by-token form: the specification, and the decode step off the CPU kernels.</summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? state0)
    {
        using var scope = NewDisposeScope();
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        var S = state0?.to(ScalarType.Float32) ?? zeros([B, H, K, V], ScalarType.Float32, q.device);
        var outputs = new Tensor[T];
        for (long t = 0; t < T; t++)
        {
            var qt = q.select(1, t).to(ScalarType.Float32);                        // [B, H, K]
            var kt = k.select(1, t).to(ScalarType.Float32);
            var vt = v.select(1, t).to(ScalarType.Float32);                        // [B, H, V]
            var bt = beta.select(1, t).to(ScalarType.Float32).unsqueeze(-1);      // [B, H, 1]
            if (g is not null) S = S * g.select(1, t).to(ScalarType.Float32).exp().unsqueeze(-1).unsqueeze(-1);
            var predicted = kt.unsqueeze(-2).matmul(S).squeeze(-2);               // Sᵀk  [B, H, V]
            var u = bt * (vt - predicted);
            S = S + kt.unsqueeze(-1) * u.unsqueeze(-2);                            // + k uᵀ
            outputs[t] = qt.unsqueeze(-2).matmul(S).squeeze(-2);                  // Sᵀq  [B, H, V]
        }
        var o = stack(outputs, 1);                                                 // [B, T, H, V]
        return (o.MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Chunked form (WY representation / UT transform). Per chunk of C tokens with Γ_ij = exp(G_i − G_j) (G the
    /// in-chunk cumsum of g; Γ = 1 without gates):
    /// <code>
    ///   T = (I + StrictLower(diag(β)(K Kᵀ ⊙ Γ)))⁻¹,  W = T(β⊙K⊙e^G),  U = T(β⊙V)
    ///   V_new = U − W S;  O = (Q⊙e^G) S + LowerInclDiag(Q Kᵀ ⊙ Γ) V_new;  S ← e^{G_C} S + (K⊙e^{G_C−G})ᵀ V_new
    /// </code>
    /// T is applied by a unit-triangular solve rather than formed. Padding tokens (β = 0, g = 0) change nothing.
    /// The chunk matmuls run head-first: the inputs are moved to [B, H, n, C, ·] once, the output back once.
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? state0,
                                                        int chunk = 64)
    {
        using var scope = NewDisposeScope();
        long B = q.shape[0], T = q.shape[1], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        long C = Math.Min(chunk, Math.Max(T, 1));
        Tensor Prep(Tensor x) => ChunkMath.PadTo(x.to(ScalarType.Float32).transpose(1, 2), 2, C);   // [B, H, T', ·]
        var qc = Prep(q); var kc = Prep(k); var vc = Prep(v); var bc = Prep(beta);
        long n = qc.shape[2] / C;
        qc = qc.reshape(B, H, n, C, K); kc = kc.reshape(B, H, n, C, K); vc = vc.reshape(B, H, n, C, V);
        bc = bc.reshape(B, H, n, C, 1);

        var kBeta = kc * bc;
        var vBeta = vc * bc;
        var kkT = kBeta.matmul(kc.transpose(-1, -2));                               // [B, H, n, C, C]: β_i k_i·k_j
        var qkT = qc.matmul(kc.transpose(-1, -2));
        Tensor? gCum = null, gLast = null;
        if (g is not null)
        {
            var gc = Prep(g).reshape(B, H, n, C);
            gCum = gc.cumsum(-1);                                                   // G  [B, H, n, C]
            gLast = gCum.narrow(-1, C - 1, 1);                                       // G_C [B, H, n, 1]
            var decay = ChunkMath.SegmentSum(gc).exp();                            // Γ  [B, H, n, C, C], 0 above the diagonal
            kkT = kkT * decay;
            qkT = qkT * decay;
            kBeta = kBeta * gCum.exp().unsqueeze(-1);
            qc = qc * gCum.exp().unsqueeze(-1);
        }
        var strictLower = kkT.tril(-1);
        var solved = linalg.solve_triangular(strictLower, cat([kBeta, vBeta], -1), upper: false, left: true, unitriangular: true);
        var W = solved.narrow(-1, 0, K);                                             // [B, H, n, C, K]
        var U = solved.narrow(-1, K, V);                                             // [B, H, n, C, V]
        var attend = qkT.tril(0);
        var keysForState = gCum is null ? kc : kc * (gLast! - gCum).exp().unsqueeze(-1);

        var S = state0?.to(ScalarType.Float32) ?? zeros([B, H, K, V], ScalarType.Float32, q.device);
        var outputs = new Tensor[n];
        for (long i = 0; i < n; i++)
        {
            var vNew = U.select(2, i) - W.select(2, i).matmul(S);                    // [B, H, C, V]
            outputs[i] = qc.select(2, i).matmul(S) + attend.select(2, i).matmul(vNew);
            if (gLast is not null) S = S * gLast.select(2, i).exp().unsqueeze(-1);  // e^{G_C}·S
            S = S + keysForState.select(2, i).transpose(-1, -2).matmul(vNew);
        }
        var o = stack(outputs, 2).reshape(B, H, n * C, V).narrow(2, 0, T).transpose(1, 2);   // [B, T, H, V]
        return (o.MoveToOuterDisposeScope(), S.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The fused CPU decode step (fla's <c>fused_recurrent</c>): one pass over each head's state instead of a dozen
    /// libtorch ops, whose dispatch costs far more than the arithmetic at batch 1. q, k [B, 1, H, K], v [B, 1, H, V],
    /// beta [B, 1, H], g [B, 1, H] or null, all float32 on the CPU; state [B, H, K, V] float32, contiguous, updated in
    /// place. Returns o [B, 1, H, V]. Tests hold it to <see cref="Recurrent"/>.
    /// </summary>
    internal static unsafe Tensor FusedRecurrent(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor state)
    {
        long B = q.shape[0], H = q.shape[2], K = q.shape[3], V = v.shape[3];
        KernelTensors.Require(q, "q", ScalarType.Float32, B, 1, H, K);
        KernelTensors.Require(k, "k", ScalarType.Float32, B, 1, H, K);
        KernelTensors.Require(v, "v", ScalarType.Float32, B, 1, H, V);
        KernelTensors.Require(beta, "beta", ScalarType.Float32, B, 1, H);
        if (g is not null) KernelTensors.Require(g, "g", ScalarType.Float32, B, 1, H);
        KernelTensors.RequireInPlace(state, "state", ScalarType.Float32, B, H, K, V);
        using var qc = q.contiguous(); using var kc = k.contiguous(); using var vc = v.contiguous();
        using var bc = beta.contiguous(); using var gc = g?.contiguous();
        var o = empty(B, 1, H, V);
        float* pq = KernelTensors.Floats(qc), pk = KernelTensors.Floats(kc);
        float* pv = KernelTensors.Floats(vc), pbeta = KernelTensors.Floats(bc);
        float* pg = gc is null ? null : KernelTensors.Floats(gc), ps = KernelTensors.Floats(state), po = KernelTensors.Floats(o);
        long heads = B * H;
        StepMath.ForUnits(heads, K * V, (begin, end) =>
        {
            float* u = stackalloc float[(int)V];
            for (long bh = begin; bh < end; bh++)
            {
                float decay = pg is null ? 1f : MathF.Exp(pg[bh]);
                FusedHead(pq + bh * K, pk + bh * K, pv + bh * V, pbeta[bh], decay, ps + bh * K * V, po + bh * V, u, K, V);
            }
        });
        return o;
    }

    /// <summary>
    /// One head of the fused step: q, k [K], v [V], state S [K, V] updated in place, o [V] written, u [V] scratch;
    /// <paramref name="decay"/> = e^g (1 without gates). Also the core of the DeltaNet mixers' fused step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void FusedHead(float* q, float* k, float* v, float beta, float decay, float* S, float* o, float* u, long K,
                                          long V)
    {
        int w = Vector<float>.Count;
        for (long j = 0; j < V; j++) u[j] = 0;
        for (long i = 0; i < K; i++)                       // u ← Sᵀk (before the decay)
        {
            var ki = new Vector<float>(k[i]);
            float* row = S + i * V;
            long j = 0;
            for (; j + w <= V; j += w) Vector.Store(Vector.Load(u + j) + ki * Vector.Load(row + j), u + j);
            for (; j < V; j++) u[j] += k[i] * row[j];
        }
        for (long j = 0; j < V; j++) { u[j] = beta * (v[j] - decay * u[j]); o[j] = 0; }
        var d = new Vector<float>(decay);
        for (long i = 0; i < K; i++)                       // S ← e^g S + k uᵀ;  o ← Sᵀq
        {
            var ki = new Vector<float>(k[i]);
            var qi = new Vector<float>(q[i]);
            float* row = S + i * V;
            long j = 0;
            for (; j + w <= V; j += w)
            {
                var updated = d * Vector.Load(row + j) + ki * Vector.Load(u + j);
                Vector.Store(updated, row + j);
                Vector.Store(Vector.Load(o + j) + qi * updated, o + j);
            }
            for (; j < V; j++) { row[j] = decay * row[j] + k[i] * u[j]; o[j] += q[i] * row[j]; }
        }
    }
}
