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
    }

    Tensor? inverseFrequencies;   // [d/2] float32, cached on the device of first use

    /// <summary>cos and sin tables [B, 1, T, d] for positions [B, T] (int64), in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        if (ropeType == "dynamic_ntk" && positions.max().item<long>() + 1 > origMax)
            throw new WrenException($"rope_type dynamic_ntk beyond orig_max_position_embeddings ({origMax}) is not supported; it equals " +
                                    $"the default rope below that length");
        if (inverseFrequencies is null || inverseFrequencies.device != positions.device)
        {
            inverseFrequencies?.Dispose();
            inverseFrequencies = pow(baseTheta, arange(0, dim, 2, ScalarType.Float64, positions.device) / dim).reciprocal()
                .to(ScalarType.Float32).DetachFromDisposeScope();
        }
        var angles = positions.to(ScalarType.Float32).unsqueeze(-1) * inverseFrequencies;   // [B, T, d/2]
        var emb = cat([angles, angles], -1).unsqueeze(1);                                  // [B, 1, T, d]
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
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
