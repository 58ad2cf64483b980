using TorchSharp;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// Rotary position embedding, rotate-half (NeoX/Llama) style: <c>x' = x·cos + rotate_half(x)·sin</c>,
/// <c>inv_freq_i = base^(−2i/d)</c>. Tables are float32, as in HF.
/// </summary>
internal sealed class Rotary
{
    readonly double baseTheta;
    readonly int dim;
    readonly string ropeType;
    readonly int? origMax;

    public Rotary(HybridConfig config)
    {
        dim = config.AttnQkHeadDim;
        ropeType = config.RopeType ?? "default";
        origMax = config.OrigMaxPositionEmbeddings;
        baseTheta = ropeType == "ntk"
            // NTK-aware base (the released modeling_nemotron_flash.py, rotary embedding): θ·(2·max/orig − 1)^(d/(d−2)).
            ? config.RopeTheta * Math.Pow(2.0 * config.MaxPositionEmbeddings!.Value / config.OrigMaxPositionEmbeddings!.Value - 1.0,
                                          dim / (dim - 2.0))
            : config.RopeTheta;
        inverse = Enumerable.Range(0, dim / 2).Select(i => (float)(1.0 / Math.Pow(baseTheta, 2.0 * i / dim))).ToArray();
    }

    readonly float[] inverse;      // inv_freq [d/2]: computed in float64, stored in float32 (as HF)
    Tensor? inverseFrequencies;   // the same as a tensor, cached on the device of first use

    /// <summary>Throws for a position the rope type does not support (dynamic NTK beyond its original length).</summary>
    public void CheckPosition(long maxPosition)
    {
        if (ropeType == "dynamic_ntk" && maxPosition + 1 > origMax)
            throw new WrenException($"rope_type dynamic_ntk beyond orig_max_position_embeddings ({origMax}) is not supported; it equals " +
                                    $"the default rope below that length");
    }

    /// <summary>cos and sin tables [B, 1, T, d] for positions [B, T] (int64), in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        if (ropeType == "dynamic_ntk") CheckPosition(positions.max().item<long>());
        if (inverseFrequencies is null || inverseFrequencies.device != positions.device)
        {
            inverseFrequencies?.Dispose();
            inverseFrequencies = tensor(inverse, device: positions.device).DetachFromDisposeScope();
        }
        var angles = positions.to(ScalarType.Float32).unsqueeze(-1) * inverseFrequencies;   // [B, T, d/2]
        var emb = cat([angles, angles], -1).unsqueeze(1);                                  // [B, 1, T, d]
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>The fused decode step's tables for one position: <c>cos[i], sin[i]</c> of <c>position·inv_freq_i</c>, i &lt; d/2
    /// (the angle in float32, as <see cref="Tables"/>).</summary>
    internal unsafe void Angles(long position, float* cos, float* sin)
    {
        for (int i = 0; i < inverse.Length; i++)
        {
            float angle = (float)position * inverse[i];
            cos[i] = MathF.Cos(angle);
            sin[i] = MathF.Sin(angle);
        }
    }

    /// <summary>Rotates one head vector x [d] in place with tables from <see cref="Angles"/>, as <see cref="Apply"/> does.</summary>
    internal static unsafe void Rotate(float* x, float* cos, float* sin, long d)
    {
        long half = d / 2;
        for (long i = 0; i < half; i++)
        {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * cos[i] + -x2 * sin[i];
            x[i + half] = x2 * cos[i] + x1 * sin[i];
        }
    }

    /// <summary>Rotates q or k [B, heads, T, d] with tables from <see cref="Tables"/>.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var rotated = cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
        return (x * cos + rotated * sin).MoveToOuterDisposeScope();
    }
}
