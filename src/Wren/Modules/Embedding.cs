using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>
/// Token embedding table [V, H]; allocated uninitialized (see <see cref="Linear"/>). Stored like a projection weight
/// (<see cref="WeightPrecision"/>): bf16, int8 or 4-bit rows are widened to the placement's dtype as they are looked up.
/// </summary>
internal sealed class Embedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? weight_scale;
    readonly ScalarType activationType;
    readonly long hidden;

    public Embedding(long vocab, long hidden, Placement placement) : base(nameof(Embedding))
    {
        weight = placement.EmptyMatrix(vocab, hidden);
        weight_scale = placement.EmptyScales(vocab, hidden);
        activationType = placement.Dtype;
        this.hidden = hidden;
        RegisterComponents();
    }

    public Parameter Weight => weight;
    /// <summary>Block scales of an int8 or 4-bit table (<see cref="WeightPrecisions.ScaleShape"/>), or null when it is not
    /// quantized.</summary>
    public Parameter? Scale => weight_scale;

    /// <summary>ids [B, T] (int64) → [B, T, H] in the placement's dtype.</summary>
    public override Tensor forward(Tensor ids)
    {
        using var flat = ids.reshape(-1);
        using var rows = weight.index_select(0, flat);
        using var scales = weight_scale?.index_select(0, flat);
        using var widened = weight_scale is null && rows.dtype == activationType
            ? rows.alias()
            : Linear.Dequantize(rows, scales, hidden).to(activationType);
        return widened.view(ids.shape[0], ids.shape[1], hidden);
    }

    /// <summary>
    /// The fused decode form (<see cref="Operators.DecodeForm.FusesLayers"/>): ids [B, T] (int64, CPU) → a new fp32
    /// [B, T, H] tensor filled row by row from the table, bf16 widened, int8 dequantized as <c>d·q</c> and 4-bit rows by
    /// their rule (<see cref="MatVecQ4.DequantizeRow"/>, <see cref="MatVecQ4K.DequantizeRow"/>): the values
    /// <see cref="forward"/> gives, without its libtorch ops. An id outside the table is an ArgumentException.
    /// </summary>
    internal unsafe Tensor LookupRows(Tensor ids)
    {
        long vocab = weight.shape[0], count = ids.numel();
        KernelTensors.Require(ids, "ids", ScalarType.Int64, ids.shape);
        using var contiguous = ids.contiguous();
        long* id = KernelTensors.Longs(contiguous);
        var output = empty([ids.shape[0], ids.shape[1], hidden], ScalarType.Float32);
        float* o = KernelTensors.Floats(output);
        var dtype = weight.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Int8 or ScalarType.Byte))
            throw new ArgumentException($"embedding: no fused lookup for {dtype} rows");
        bool superBlocks = weight_scale?.dim() == 3;
        var precision = dtype == ScalarType.Byte ? (superBlocks ? WeightPrecision.Q4K : WeightPrecision.Q4)
            : weight_scale is null ? WeightPrecision.Float32 : WeightPrecision.Int8;
        long rowBytes = precision.MatrixShape(vocab, hidden)[1], scalesPerRow = 0;
        KernelTensors.RequireInPlace(weight, "embedding", dtype, vocab, rowBytes);
        if (weight_scale is not null)
        {
            var scaleShape = precision.ScaleShape(vocab, hidden)!;
            KernelTensors.RequireInPlace(weight_scale, "embedding scales", ScalarType.Float32, scaleShape);
            scalesPerRow = scaleShape[1..].Aggregate(1L, (a, b) => a * b);
        }
        var table = (IntPtr)KernelTensors.SBytes(weight);
        float* scales = weight_scale is null ? null : KernelTensors.Floats(weight_scale);
        for (long i = 0; i < count; i++, o += hidden)
        {
            long row = id[i];
            if (row < 0 || row >= vocab) throw new ArgumentException($"ids: token id {row} is outside the table of {vocab} rows");
            if (dtype == ScalarType.BFloat16) MatVecBf16.Widen((ushort*)table + row * hidden, o, hidden);
            else if (precision == WeightPrecision.Q4)
                MatVecQ4.DequantizeRow((byte*)table + row * rowBytes, scales + row * scalesPerRow, hidden, o);
            else if (precision == WeightPrecision.Q4K)
                MatVecQ4K.DequantizeRow((byte*)table + row * rowBytes, scales + row * scalesPerRow, hidden, o);
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
