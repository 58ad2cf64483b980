using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Modules;

/// <summary>
/// Projection <c>y = x·Wᵀ</c> (+ b when built with a bias), weight [out, in] as in PyTorch. Written here rather than using
/// nn.Linear so that construction allocates without initializing (checkpoints overwrite it), so that a few rows
/// (small-batch decode) go through a matrix–vector kernel, which reads weights several times faster than a skinny
/// GEMM in libtorch, and so that the weight can be stored in bf16, int8 or 4 bits for inference (<see cref="WeightPrecision"/>):
/// <c>weight</c> is then bf16, int8 with fp32 block scales in <c>weight_scale</c> [out, ⌈in/32⌉], or packed 4-bit bytes
/// with their scales (q4: [out, ⌈in/32⌉]; q4k: [out, ⌈in/256⌉, 2]; <see cref="WeightPrecisions.MatrixShape"/>). Longer
/// fp32 inputs (prefill, evaluation) at inference go through the tiled kernel on AVX-512 (<see cref="MatVec.MultiplyLong"/>,
/// each row bit-identical to its product alone), else libtorch's GEMM; quantized weights dequantize the one weight they
/// need for the duration of the product.
/// The optional <c>bias</c> [out] (fla's low-rank gate, xLSTM's gate projections) stays in the activation dtype and is
/// added after the product.
/// </summary>
internal sealed class Linear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? weight_scale, bias;
    readonly long inFeatures;

    public Linear(long inFeatures, long outFeatures, Placement placement, bool withBias = false) : base(nameof(Linear))
    {
        weight = placement.EmptyMatrix(outFeatures, inFeatures);
        weight_scale = placement.EmptyScales(outFeatures, inFeatures);
        bias = withBias ? placement.Empty(outFeatures) : null;
        this.inFeatures = inFeatures;
        ActivationType = placement.Dtype;
        RegisterComponents();
    }

    /// <summary>The stored weight: [out, in] in the placement's dtype, bf16 or int8, or packed 4-bit bytes (then see
    /// <see cref="Scale"/>).</summary>
    public Parameter Weight => weight;
    /// <summary>Block scales (fp32) of an int8 or 4-bit weight, or null when the weight is not quantized.</summary>
    public Parameter? Scale => weight_scale;
    public long InFeatures => inFeatures;
    public long OutFeatures => weight.shape[0];
    /// <summary>The dtype of inputs and outputs (the placement's dtype, whatever the weight's storage).</summary>
    public ScalarType ActivationType { get; }

    /// <summary>The bias [out], or null for a bias-free projection.</summary>
    public Parameter? Bias => bias;

    public override Tensor forward(Tensor x) => AddBias(Project(x, weight, weight_scale));

    /// <summary><paramref name="product"/> plus the bias (a new tensor; the product is disposed), or the product itself.</summary>
    Tensor AddBias(Tensor product)
    {
        if (bias is null) return product;
        using (product) return product + bias;
    }

    /// <summary>This weight bound to the matrix–vector kernel of its precision, for a product into caller-owned buffers.</summary>
    internal BoundMatrix Bind() => MatVec.Bind(weight, weight_scale, cols: inFeatures);

    /// <summary>Several projections of the same input; one fused matrix–vector pass at small-batch inference.</summary>
    public static Tensor[] ProjectMany(Tensor x, params Linear[] layers) =>
        !is_grad_enabled() && layers.All(l => MatVec.KernelApplies(l.weight, l.weight_scale, x))
            ? MatVec.MultiplyRows(layers.Select(l => l.Bind()).ToArray(), x, keepLeading: true).Select((y, i) => layers[i].AddBias(y))
                .ToArray()
            : layers.Select(l => l.forward(x)).ToArray();

    /// <summary>
    /// <c>x·Wᵀ</c> for any weight (also the tied lm_head): fp32, bf16, or int8 or 4-bit with its <paramref name="scale"/>
    /// (a 4-bit weight's width is x's). A few rows at inference go through the matrix–vector kernel of the weight's precision.
    /// </summary>
    public static Tensor Project(Tensor x, Tensor weight, Tensor? scale = null)
    {
        if (is_grad_enabled() && (weight.requires_grad || x.requires_grad)) return nn.functional.linear(x, weight, null);
        if (MatVec.KernelApplies(weight, scale, x))
            return MatVec.MultiplyRows([MatVec.Bind(weight, scale, cols: x.shape[^1])], x, keepLeading: true)[0];
        if (MatVec.LongApplies(weight, x)) return MatVec.MultiplyLong(weight, x);
        if (scale is not null || (weight.dtype != x.dtype && x.dtype == ScalarType.Float32))
        {
            using var full = Dequantize(weight, scale, x.shape[^1]);   // prefill: one full-precision weight for this product only
            return MatVec.LongApplies(full, x) ? MatVec.MultiplyLong(full, x) : nn.functional.linear(x, full, null);
        }
        if (x.numel() == x.shape[^1])
        {
            var shape = x.shape.ToArray();
            shape[^1] = weight.shape[0];
            using var row = x.reshape(x.shape[^1]);
            using var product = weight.mv(row);   // other dtypes and devices: still faster than a one-row GEMM
            return product.view(shape);
        }
        return nn.functional.linear(x, weight, null);
    }

    /// <summary>
    /// The fp32 matrix [rows, <paramref name="cols"/>] a stored weight stands for: int8 and 4-bit weights need their scale,
    /// 4-bit ones their width <paramref name="cols"/> (q4k when the scale is 3-D), contiguous on the CPU.
    /// </summary>
    public static Tensor Dequantize(Tensor weight, Tensor? scale, long cols) => weight.dtype switch
    {
        _ when scale is null => weight.to(ScalarType.Float32),
        ScalarType.Byte when scale.dim() == 3 => MatVecQ4K.Dequantize(weight, scale, cols),
        ScalarType.Byte => MatVecQ4.Dequantize(weight, scale, cols),
        _ => MatVecInt8.Dequantize(weight, scale),
    };

    /// <summary>
    /// Quantizes a floating-point matrix [rows, cols] into a model's own int8 or 4-bit <paramref name="values"/> and
    /// <paramref name="scale"/> (their kind chosen by the values' dtype and the scale's rank, as in <see cref="Dequantize"/>).
    /// </summary>
    public static void Quantize(Tensor source, Tensor values, Tensor scale)
    {
        if (values.dtype == ScalarType.Int8) MatVecInt8.QuantizeInto(source, values, scale);
        else if (scale.dim() == 3) MatVecQ4K.QuantizeInto(source, values, scale);
        else MatVecQ4.QuantizeInto(source, values, scale);
    }

    /// <summary>L2 norm of every row of a stored weight [rows, <paramref name="cols"/>] (fp32 [rows]), dequantizing a few
    /// thousand rows at a time.</summary>
    public static Tensor RowNorms(Tensor weight, Tensor? scale, long cols)
    {
        if (scale is null && weight.dtype == ScalarType.Float32) return weight.norm(1, keepdim: false, p: 2);
        const long chunk = 4096;
        var norms = empty(weight.shape[0], ScalarType.Float32, weight.device);
        using var _ = no_grad();
        for (long start = 0; start < weight.shape[0]; start += chunk)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(chunk, weight.shape[0] - start);
            var rows = Dequantize(weight.narrow(0, start, count), scale?.narrow(0, start, count), cols);
            norms.narrow(0, start, count).copy_(rows.norm(1, keepdim: false, p: 2));
        }
        return norms;
    }
}
