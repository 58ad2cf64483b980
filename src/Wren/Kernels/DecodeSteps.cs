using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// Fused single-token decode steps for the recurrent mixers on CPU (fp32): one pass over each state instead of
/// a dozen libtorch ops, whose dispatch (10–40 µs each) costs far more than the arithmetic at batch 1. The
/// CPU counterpart of fla's fused_recurrent kernels; <see cref="Operators.DeltaRule.Recurrent"/> and
/// <see cref="Operators.Mamba2.Recurrent"/> remain the specification, and tests hold these to them.
/// </summary>
public static unsafe class DecodeSteps
{
    /// <summary>True when the fused steps apply: inference (no autograd) on CPU float32 tensors.</summary>
    public static bool Applies(params Tensor?[] tensors) =>
        !is_grad_enabled() && tensors.All(t => t is null || (t.device.type == DeviceType.CPU && t.dtype == ScalarType.Float32));

    static float* Ptr(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    /// <summary>
    /// RMSNorm over the last dimension (inference, fp32): <c>w ⊙ x / sqrt(mean(x²) + eps)</c>, one pass per row. A weight of
    /// shape [G, n] (contiguous) serves rows in turn, row r using weight row r mod G (grouped norms).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Tensor RmsNorm(Tensor x, Tensor weight, float eps)
    {
        long n = x.shape[^1], rows = x.numel() / Math.Max(n, 1), weightRows = weight.numel() / Math.Max(n, 1);
        using var xc = x.contiguous();
        using var wc = weight.contiguous();
        var y = empty(x.shape);
        float* px = Ptr(xc), weights = Ptr(wc), py = Ptr(y);
        int w = Vector<float>.Count;
        for (long r = 0; r < rows; r++)
        {
            float* row = px + r * n, output = py + r * n, pw = weights + r % weightRows * n;
            var acc = Vector<float>.Zero;
            float squares = 0;
            long i = 0;
            for (; i + w <= n; i += w) { var v = Vector.Load(row + i); acc += v * v; }
            for (; i < n; i++) squares += row[i] * row[i];
            var scale = new Vector<float>(1f / MathF.Sqrt((Vector.Sum(acc) + squares) / n + eps));
            i = 0;
            for (; i + w <= n; i += w) Vector.Store(Vector.Load(pw + i) * (Vector.Load(row + i) * scale), output + i);
            for (; i < n; i++) output[i] = pw[i] * (row[i] * scale[0]);
        }
        return y;
    }

    /// <summary>
    /// Short causal conv for one token, then SiLU: x [B, 1, C] (any strides), state [B, C, K−1] updated in place,
    /// weight [C, 1, K], bias [C] or null. Returns [B, 1, C].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Tensor ConvStep(Tensor x, Tensor state, Tensor weight, Tensor? bias)
    {
        long B = x.shape[0], C = x.shape[^1];
        int K = (int)weight.shape[2];
        using var xc = x.reshape(B, C).contiguous();
        var y = empty(B, 1, C);
        float* px = Ptr(xc), ps = Ptr(state), pw = Ptr(weight), py = Ptr(y), pb = bias is null ? null : Ptr(bias);
        for (long b = 0; b < B; b++)
            for (long c = 0; c < C; c++)
            {
                float* hist = ps + (b * C + c) * (K - 1), w = pw + c * K;
                float input = px[b * C + c];
                float sum = w[K - 1] * input + (pb is null ? 0f : pb[c]);
                for (int k = 0; k < K - 1; k++) sum += w[k] * hist[k];
                for (int k = 0; k < K - 2; k++) hist[k] = hist[k + 1];
                hist[K - 2] = input;
                py[b * C + c] = sum / (1f + MathF.Exp(-sum));
            }
        return y;
    }

    /// <summary>
    /// One (gated) delta-rule step: q, k [B, H, 1, K], v [B, H, 1, V], beta [B, H, 1], g [B, H, 1] or null,
    /// state [B, H, K, V] float32 updated in place. Returns o [B, H, 1, V]. Same maths as DeltaRule.Recurrent:
    /// <c>S ← e^g S;  u = β(v − Sᵀk);  S ← S + k uᵀ;  o = Sᵀq</c>.
    /// </summary>
    public static Tensor DeltaRuleStep(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor state)
    {
        long B = q.shape[0], H = q.shape[1], K = q.shape[3], V = v.shape[3];
        using var qc = q.contiguous(); using var kc = k.contiguous(); using var vc = v.contiguous();
        using var bc = beta.contiguous(); using var gc = g?.contiguous();
        var o = empty(B, H, 1, V);
        float* pq = Ptr(qc), pk = Ptr(kc), pv = Ptr(vc), pbeta = Ptr(bc), pg = gc is null ? null : Ptr(gc), ps = Ptr(state), po = Ptr(o);
        long heads = B * H;
        int parts = heads * K * V >= 1 << 16 ? Math.Min(Workers.Count, (int)heads) : 1;
        Workers.Run(parts, part =>
        {
            float* u = stackalloc float[(int)V];
            for (long bh = heads * part / parts; bh < heads * (part + 1) / parts; bh++)
                DeltaHead(pq + bh * K, pk + bh * K, pv + bh * V, pbeta[bh], pg is null ? 1f : MathF.Exp(pg[bh]), ps + bh * K * V, po + bh * V, u, K, V);
        });
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DeltaHead(float* q, float* k, float* v, float beta, float decay, float* S, float* o, float* u, long K, long V)
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

    /// <summary>
    /// One Mamba2 (SSD) step: x [B, 1, H, P], dt (Δ) [B, 1, H], A [H], Bm and Cm [B, 1, G, N], D [H], state
    /// [B, H, P, N] float32 updated in place. Returns y [B, 1, H, P]:
    /// <c>S ← exp(ΔA) S + Δ x Bᵀ;  y = S C + D x</c>.
    /// </summary>
    public static Tensor SsdStep(Tensor x, Tensor dt, Tensor A, Tensor Bm, Tensor Cm, Tensor D, Tensor state)
    {
        long batch = x.shape[0], H = x.shape[2], P = x.shape[3], G = Bm.shape[2], N = Bm.shape[3];
        using var xc = x.contiguous(); using var dtc = dt.contiguous(); using var Bc = Bm.contiguous(); using var Cc = Cm.contiguous();
        var y = empty(batch, 1, H, P);
        float* px = Ptr(xc), pdt = Ptr(dtc), pA = Ptr(A), pB = Ptr(Bc), pC = Ptr(Cc), pD = Ptr(D), ps = Ptr(state), py = Ptr(y);
        long heads = batch * H, perGroup = H / G;
        int parts = heads * P * N >= 1 << 16 ? Math.Min(Workers.Count, (int)heads) : 1;
        Workers.Run(parts, part =>
        {
            for (long bh = heads * part / parts; bh < heads * (part + 1) / parts; bh++)
            {
                long b = bh / H, h = bh % H, group = b * G + h / perGroup;
                float step = pdt[bh];
                SsdHead(px + bh * P, step, MathF.Exp(step * pA[h]), pB + group * N, pC + group * N, pD[h], ps + bh * P * N, py + bh * P, P, N);
            }
        });
        return y;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SsdHead(float* x, float step, float decay, float* Bv, float* Cv, float D, float* S, float* y, long P, long N)
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

    /// <summary>
    /// Single-query attention over a KV cache: q [B, nh, 1, d] against the first <paramref name="slots"/> slots of
    /// keys [B, nkv, cap, d] and values [B, nkv, cap, dv], reading each KV head once for all of its query heads.
    /// With <paramref name="keyPositions"/> [B, cap] (−1 = empty or pad), a slot counts only if its position is in
    /// [query − window, query]; null means every slot counts. Returns [B, nh, 1, dv].
    /// </summary>
    public static Tensor AttentionStep(Tensor q, Tensor keys, Tensor values, long slots, Tensor? keyPositions, Tensor queryPositions, int? window)
    {
        long B = q.shape[0], nh = q.shape[1], d = q.shape[3], nkv = keys.shape[1], cap = keys.shape[2], dv = values.shape[3];
        long group = nh / nkv;
        using var qc = q.contiguous();
        using var qp = queryPositions.reshape(B).contiguous();
        var o = zeros(B, nh, 1, dv);
        float* pq = Ptr(qc), pk = Ptr(keys), pv = Ptr(values), po = Ptr(o);
        long* kpos = keyPositions is null ? null : (long*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(keyPositions.bytes));
        long* qpos = (long*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(qp.bytes));
        long work = B * nkv;
        int parts = work * slots * (d + dv) >= 1 << 15 ? Math.Min(Workers.Count, (int)work) : 1;
        float scale = 1f / MathF.Sqrt(d);
        Workers.Run(parts, part =>
        {
            var scores = new float[group * slots];
            for (long unit = work * part / parts; unit < work * (part + 1) / parts; unit++)
            {
                long b = unit / nkv, kv = unit % nkv;
                AttendGroup(pq + (b * nh + kv * group) * d, pk + (b * nkv + kv) * cap * d, pv + (b * nkv + kv) * cap * dv,
                            kpos is null ? null : kpos + b * cap, qpos[b], window, scores, po + (b * nh + kv * group) * dv, group, slots, d, dv, scale);
            }
        });
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AttendGroup(float* q, float* K, float* V, long* keyPositions, long queryPosition, int? window, float[] scores,
                            float* o, long group, long slots, long d, long dv, float scale)
    {
        int w = Vector<float>.Count;
        fixed (float* sc = scores)
        {
            for (long s = 0; s < slots; s++)              // scores = q·k / √d, one pass over the keys
            {
                bool visible = keyPositions is null || (keyPositions[s] >= 0 && keyPositions[s] <= queryPosition
                                                        && (window is not { } win || queryPosition - keyPositions[s] <= win));
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
            for (long g = 0; g < group; g++)              // softmax per query head
            {
                float* row = sc + g * slots;
                float max = float.NegativeInfinity;
                for (long s = 0; s < slots; s++) max = MathF.Max(max, row[s]);
                float total = 0;
                for (long s = 0; s < slots; s++) { row[s] = MathF.Exp(row[s] - max); total += row[s]; }
                for (long s = 0; s < slots; s++) row[s] /= total;
            }
            for (long s = 0; s < slots; s++)              // o = Σ p·v, one pass over the values
            {
                float* value = V + s * dv;
                for (long g = 0; g < group; g++)
                {
                    float p = sc[g * slots + s];
                    if (p == 0) continue;
                    var pv = new Vector<float>(p);
                    float* og = o + g * dv;
                    long i = 0;
                    for (; i + w <= dv; i += w) Vector.Store(Vector.Load(og + i) + pv * Vector.Load(value + i), og + i);
                    for (; i < dv; i++) og[i] += p * value[i];
                }
            }
        }
    }
}
