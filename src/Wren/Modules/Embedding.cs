using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>
/// Token embedding table [V, H]; allocated uninitialized (see <see cref="Linear"/>). Stored like a projection weight
/// (<see cref="WeightPrecision"/>): bf16 or int8 rows are widened to the placement's dtype as they are looked up.
/// </summary>
internal sealed class Embedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? weight_scale;
    readonly ScalarType activationType;

    public Embedding(long vocab, long hidden, Placement placement) : base(nameof(Embedding))
    {
        weight = placement.EmptyMatrix(vocab, hidden);
        weight_scale = placement.EmptyScales(vocab, hidden);
        activationType = placement.Dtype;
        RegisterComponents();
    }

    public Parameter Weight => weight;
    /// <summary>int8 block scales [V, ⌈H/32⌉], or null when the table is not int8.</summary>
    public Parameter? Scale => weight_scale;

    /// <summary>ids [B, T] (int64) → [B, T, H] in the placement's dtype.</summary>
    public override Tensor forward(Tensor ids)
    {
        using var flat = ids.reshape(-1);
        using var rows = weight.index_select(0, flat);
        using var scales = weight_scale?.index_select(0, flat);
        using var widened = weight_scale is null && rows.dtype == activationType
            ? rows.alias()
            : Linear.Dequantize(rows, scales).to(activationType);
        return widened.view(ids.shape[0], ids.shape[1], weight.shape[1]);
    }
}
