using TorchSharp;
using Wren.Kernels;
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

    /// <summary>
    /// The fused decode form (<see cref="Operators.DecodeForm.FusesLayers"/>): ids [B, T] (int64, CPU) → a new fp32
    /// [B, T, H] tensor filled row by row from the table, bf16 widened and int8 dequantized as <c>d·q</c>: the values
    /// <see cref="forward"/> gives, without its libtorch ops. An id outside the table is an ArgumentException.
    /// </summary>
    internal unsafe Tensor LookupRows(Tensor ids)
    {
        long vocab = weight.shape[0], hidden = weight.shape[1], count = ids.numel();
        KernelTensors.Require(ids, "ids", ScalarType.Int64, ids.shape);
        using var contiguous = ids.contiguous();
        long* id = KernelTensors.Longs(contiguous);
        var output = empty([ids.shape[0], ids.shape[1], hidden], ScalarType.Float32);
        float* o = KernelTensors.Floats(output);
        var dtype = weight.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Int8))
            throw new ArgumentException($"embedding: no fused lookup for {dtype} rows");
        KernelTensors.RequireInPlace(weight, "embedding", dtype, vocab, hidden);
        if (weight_scale is not null)
            KernelTensors.RequireInPlace(weight_scale, "embedding scales", ScalarType.Float32, vocab, MatVecInt8.Blocks(hidden));
        var table = (IntPtr)KernelTensors.SBytes(weight);
        float* scales = weight_scale is null ? null : KernelTensors.Floats(weight_scale);
        for (long i = 0; i < count; i++, o += hidden)
        {
            long row = id[i];
            if (row < 0 || row >= vocab) throw new ArgumentException($"ids: token id {row} is outside the table of {vocab} rows");
            if (dtype == ScalarType.BFloat16) MatVecBf16.Widen((ushort*)table + row * hidden, o, hidden);
            else if (dtype == ScalarType.Int8)
            {
                sbyte* q = (sbyte*)table + row * hidden;
                float* d = scales + row * MatVecInt8.Blocks(hidden);
                for (long k = 0; k < hidden; k++) o[k] = q[k] * d[k / MatVecInt8.BlockSize];
            }
            else Buffer.MemoryCopy((float*)table + row * hidden, o, hidden * sizeof(float), hidden * sizeof(float));
        }
        return output;
    }
}
