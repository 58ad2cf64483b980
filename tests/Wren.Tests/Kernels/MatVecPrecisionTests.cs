using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;

namespace Wren.Tests.Kernels;

/// <summary>
/// The fp32, bf16 and int8 matrix–vector kernels on every instruction-set path this CPU runs, against their reference:
/// the stored weights (bf16 widened, int8 dequantized by a plain loop) times x in fp64, at sizes that are not multiples
/// of the vector width or the 32-value block, for one input row and for a small decode batch.
/// </summary>
[Collection(KernelPathCollection.Name)]
public class MatVecPrecisionTests
{
    public static TheoryData<KernelPath, int, int, int> Cases()
    {
        var data = new TheoryData<KernelPath, int, int, int>();
        foreach (var path in KernelPaths.Available)
            foreach (var (rows, cols) in new[] { (67, 100), (1, 33), (129, 95), (64, 2048), (3, 7) })
                foreach (int inputs in new[] { 1, 3 })
                    data.Add(path, rows, cols, inputs);
        return data;
    }

    /// <summary>fp32 accumulation of n products: error ≤ n·ε·Σ|w·x| (the standard dot-product bound), ε = 2⁻²⁴.</summary>
    static void AssertWithinDotBound(Tensor actual, Tensor weight64, Tensor x64, string what)
    {
        var reference = x64.matmul(weight64.t());
        var bound = x64.abs().matmul(weight64.abs().t()) * (weight64.shape[1] * Math.Pow(2, -24)) + 1e-30;
        var excess = ((actual.to(ScalarType.Float64) - reference).abs() - bound).max().item<double>();
        Assert.True(excess <= 0, $"{what}: error exceeds the fp32 dot-product bound by {excess:E3}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fp32_kernel_matches_fp64(KernelPath path, int rows, int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(1);
        var w = randn([rows, cols], generator: gen); var x = randn([inputs, cols], generator: gen);
        using var forced = KernelPaths.Force(path);
        var y = MatVec.MultiplyMany([w], x)[0];
        AssertWithinDotBound(y, w.to(ScalarType.Float64), x.to(ScalarType.Float64), $"fp32 {path}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Bf16_kernel_matches_widened_weights_in_fp64(KernelPath path, int rows, int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(2);
        var w = randn([rows, cols], generator: gen).to(ScalarType.BFloat16); var x = randn([inputs, cols], generator: gen);
        var second = randn([5, cols], generator: gen).to(ScalarType.BFloat16);
        using var forced = KernelPaths.Force(path);
        var ys = MatVecBf16.MultiplyMany([w, second], x);
        AssertWithinDotBound(ys[0], w.to(ScalarType.Float64), x.to(ScalarType.Float64), $"bf16 {path}");
        AssertWithinDotBound(ys[1], second.to(ScalarType.Float64), x.to(ScalarType.Float64), $"bf16 {path} (second matrix)");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Int8_kernel_matches_dequantized_weights_in_fp64(KernelPath path, int rows, int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var w = randn([rows, cols], generator: gen); var x = randn([inputs, cols], generator: gen);
        var (values, scales) = MatVecInt8.Quantize(w);
        using var forced = KernelPaths.Force(path);
        var y = MatVecInt8.MultiplyMany([(values, scales)], x)[0];
        AssertWithinDotBound(y, DequantizeByLoop(values, scales), x.to(ScalarType.Float64), $"int8 {path}");
    }

    /// <summary><c>w = d_b · q</c> element by element: the layout's definition, independent of the library's tensor code.</summary>
    static Tensor DequantizeByLoop(Tensor values, Tensor scales)
    {
        long rows = values.shape[0], cols = values.shape[1];
        var q = values.data<sbyte>().ToArray(); var d = scales.data<float>().ToArray();
        long blocks = scales.shape[1];
        var w = new double[rows * cols];
        for (long r = 0; r < rows; r++)
            for (long k = 0; k < cols; k++) w[r * cols + k] = (double)d[r * blocks + k / 32] * q[r * cols + k];
        return tensor(w, [rows, cols]);
    }

    [Theory]
    [InlineData(5, 100)]
    [InlineData(2, 33)]
    [InlineData(3, 32)]
    public void Int8_quantization_follows_the_block_rule(int rows, int cols)
    {
        using var scope = NewDisposeScope();
        var w = randn([rows, cols], generator: new Generator(4)) * 3;
        w[0, 0] = 0;   // a block may hold exact zeros; an all-zero block must give d = 0
        if (rows > 1) w[1].narrow(0, 0, Math.Min(32, cols)).zero_();
        var (values, scales) = MatVecInt8.Quantize(w);
        Assert.Equal([rows, (cols + 31) / 32], scales.shape);
        var W = w.data<float>().ToArray(); var d = scales.data<float>().ToArray(); var q = values.data<sbyte>().ToArray();
        long blocks = scales.shape[1];
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < blocks; b++)
            {
                int from = b * 32, to = Math.Min(cols, from + 32);
                float amax = 0;
                for (int k = from; k < to; k++) amax = Math.Max(amax, Math.Abs(W[r * cols + k]));
                Assert.Equal(amax / 127f, d[r * blocks + b], 6);
                for (int k = from; k < to; k++)
                {
                    Assert.InRange(q[r * cols + k], -127, 127);
                    double error = Math.Abs(W[r * cols + k] - (double)d[r * blocks + b] * q[r * cols + k]);
                    double half = d[r * blocks + b] / 2.0;
                    Assert.True(error <= half * (1 + 1e-6) + 1e-12, $"row {r} col {k}: error {error} > d/2 = {half}");
                }
            }
        Assert.Equal(DequantizeByLoop(values, scales).to(ScalarType.Float32).data<float>().ToArray(),
                     MatVecInt8.Dequantize(values, scales).data<float>().ToArray());
    }

    [Fact]
    public void Every_path_this_cpu_runs_can_be_forced_and_is_reported()
    {
        Assert.Contains(KernelPath.Scalar, KernelPaths.Available);
        foreach (var path in KernelPaths.Available)
            using (KernelPaths.Force(path)) Assert.Equal(path, KernelPaths.Active);
        Assert.Equal(KernelPaths.Best, KernelPaths.Active);
    }
}

/// <summary>Tests that force a kernel path (a process-wide switch) run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class KernelPathCollection
{
    public const string Name = "kernel-paths";
}
