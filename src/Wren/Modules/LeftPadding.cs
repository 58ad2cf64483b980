using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Modules;

/// <summary>
/// Left padding of a ragged batch chunk [B, T]: row b starts with <c>Counts[b]</c> pad tokens.
/// Attention masks pad keys; recurrent mixers skip pads exactly (zero input gate/step, conv reads past them).
/// </summary>
public sealed class LeftPadding : IDisposable
{
    public Tensor Counts { get; }   // [B] int64
    public Tensor Mask { get; }     // [B, T] bool, true on real tokens

    public LeftPadding(Tensor counts, long length)
    {
        Counts = counts.to(ScalarType.Int64).DetachFromDisposeScope();
        Mask = (arange(length, device: counts.device).unsqueeze(0) >= Counts.unsqueeze(1)).DetachFromDisposeScope();
    }

    /// <summary>
    /// For a sequence <c>[history (h entries); chunk (T entries)]</c>, indices that move each row's pads in
    /// front of its history: <c>[pads; history; real tokens]</c>. Pad slots point at (zeroed) pad inputs.
    /// </summary>
    public Tensor ConvGatherIndex(long h, long T)
    {
        using var scope = NewDisposeScope();
        var j = arange(h + T, device: Counts.device).unsqueeze(0);          // [1, h+T]
        var p = Counts.unsqueeze(1);                                         // [B, 1]
        var index = where(j < p, j + h, where(j < p + h, j - p, j));
        return index.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Counts.Dispose();
        Mask.Dispose();
    }
}
