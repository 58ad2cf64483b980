using TorchSharp;
using Wren.Kernels;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Tests.Modules;

/// <summary>The fused embedding lookup gives exactly the rows the libtorch form gives (bf16 widened, int8 as d·q).</summary>
public class EmbeddingTests
{
    [Theory]
    [InlineData(WeightPrecision.Float32)]
    [InlineData(WeightPrecision.BFloat16)]
    [InlineData(WeightPrecision.Int8)]
    public void Fused_lookup_equals_forward(WeightPrecision precision)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var embedding = new Embedding(11, 45, new Placement(ScalarType.Float32, CPU, precision));
        var table = randn(11, 45, generator: new Generator(4));
        if (embedding.Scale is not null) MatVecInt8.QuantizeInto(table, embedding.Weight, embedding.Scale);
        else embedding.Weight.copy_(table);
        var ids = tensor(new long[] { 3, 0, 10, 3, 7, 1 }).reshape(2, 3).t();   // [3, 2], not contiguous
        Assert.True(embedding.LookupRows(ids).equal(embedding.forward(ids)).all().item<bool>(), $"{precision}: fused rows differ");
        Assert.Contains("token id 11 is outside the table of 11 rows",
                        Assert.Throws<ArgumentException>(() => embedding.LookupRows(tensor(new long[] { 2, 11 }).reshape(1, 2))).Message);
    }
}
