using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>Token embedding table [V, H]; allocated uninitialized (see <see cref="Linear"/>).</summary>
internal sealed class Embedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    public Embedding(long vocab, long hidden, Placement placement) : base(nameof(Embedding))
    {
        weight = placement.Empty(vocab, hidden);
        RegisterComponents();
    }

    public Parameter Weight => weight;

    /// <summary>ids [B, T] (int64) → [B, T, H].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var flat = ids.reshape(-1);
        using var rows = weight.index_select(0, flat);
        return rows.view(ids.shape[0], ids.shape[1], weight.shape[1]);
    }
}
