using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Kernels;

public class MatVecTests
{
    [Fact]
    public void Matrix_vector_kernel_equals_libtorch()
    {
        using var scope = NewDisposeScope();
        foreach (var (rows, cols) in new[] { (1L, 1L), (7L, 33L), (300L, 1000L), (4096L, 1030L) })
        {
            var w = randn(rows, cols);
            var x = randn(cols);
            AssertClose(MatVec.Multiply(w, x), w.mv(x).unsqueeze(0), 1e-5, $"{rows}×{cols}");
            var batch = randn(5, cols);
            AssertClose(MatVec.Multiply(w, batch), batch.matmul(w.t()), 1e-5, $"5 rows × {rows}×{cols}");
        }
    }

    [Fact]
    public void Checks_shapes_and_strides_before_reading()
    {
        using var scope = NewDisposeScope();
        Assert.Contains("x: expected shape [8]", Assert.Throws<ArgumentException>(() => MatVec.Multiply(randn(4, 8), randn(7))).Message);
        Assert.Contains("weight 0: the CPU kernel reads it in place",
                        Assert.Throws<ArgumentException>(() => MatVec.Multiply(randn(8, 4).t(), randn(8))).Message);
        Assert.Contains("more than the kernel's",
                        Assert.Throws<ArgumentException>(() => MatVec.Multiply(randn(4, 8), randn(65, 8))).Message);
    }
}
