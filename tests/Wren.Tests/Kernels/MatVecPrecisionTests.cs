using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;

namespace Wren.Tests.Kernels;

/// <summary>
/// The fp32, bf16 and int8 matrix–vector kernels on every instruction-set path this CPU runs, against their reference:
/// the stored weights (bf16 widened, int8 dequantized by a plain loop) times x in fp64 (int8: times x quantized by the
/// activation rule, and within that rule's rounding bound of the fp32 x), at sizes that are not multiples of the vector
/// width or the 32-value block, for one input row and for a decode batch.
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

    /// <summary>
    /// fp32 accumulation of n products: error ≤ n·ε·Σ|w·x| (the standard dot-product bound), ε = 2⁻²⁴; n is the number of
    /// columns unless <paramref name="terms"/> says otherwise.
    /// </summary>
    static void AssertWithinDotBound(Tensor actual, Tensor weight64, Tensor x64, string what, long? terms = null)
    {
        var reference = x64.matmul(weight64.t());
        var bound = x64.abs().matmul(weight64.abs().t()) * ((terms ?? weight64.shape[1]) * Math.Pow(2, -24)) + 1e-30;
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

    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.Available];

    /// <summary>
    /// Each row of an fp32 decode batch (2, 3, 5, 16, 64 inputs; the batched kernel tiles four weight rows by four inputs)
    /// and of a longer input (70, 131 rows: prefill's tiled product, in blocks of 64 inputs) is bit-identical to the same
    /// row alone, at widths with a 16-wide and a scalar tail, widths over one and two column chunks (1,030; 2,100) and row
    /// counts that leave odd chunk edges: a request decodes the same whatever else runs.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void Fp32_batch_rows_equal_each_row_alone_bit_for_bit(KernelPath path)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(9);
        using var forced = KernelPaths.Force(path);
        foreach (var (rows, cols) in new[] { (1, 7), (67, 100), (129, 1030), (300, 64), (1025, 33), (37, 2100) })
        {
            var w = randn([rows, cols], generator: gen);
            foreach (int inputs in new[] { 2, 3, 5, 16, MatVec.MaxInputRows, 70, 131 })
            {
                var x = randn([inputs, cols], generator: gen);
                bool batch = inputs <= MatVec.MaxInputRows;
                if (!batch && !MatVec.LongApplies(w, x)) continue;
                var y = batch ? MatVec.Multiply(w, x) : MatVec.MultiplyLong(w, x);
                for (int m = 0; m < inputs; m++)
                    Assert.True(y[m].equal(MatVec.Multiply(w, x[m])[0]).all().item<bool>(),
                                $"{path} {rows}×{cols}, {inputs} inputs: row {m}");
            }
        }
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

    /// <summary>
    /// Every int8 variant this CPU runs (each path; the AVX2 path with and without AVX-VNNI) at sizes that are not
    /// multiples of the 32-value block or the 2- and 4-block steps (one column; 5 and 6 full blocks; a last partial
    /// block), for one input row, a few, and the largest decode batch.
    /// </summary>
    public static TheoryData<KernelPath, bool, int, int, int> Int8Cases()
    {
        var data = new TheoryData<KernelPath, bool, int, int, int>();
        foreach (var (path, vnni) in Int8Variants())
            foreach (var (rows, cols) in new[] { (67, 100), (1, 33), (129, 95), (64, 2048), (3, 7), (5, 1), (2, 160), (3, 200) })
                foreach (int inputs in new[] { 1, 3, MatVec.MaxInputRows })
                    data.Add(path, vnni, rows, cols, inputs);
        return data;
    }

    internal static IEnumerable<(KernelPath Path, bool Vnni)> Int8Variants() =>
        KernelPaths.Available.SelectMany(p => p == KernelPath.Avx2 && KernelPaths.VnniSupported
                                             ? new[] { (p, false), (p, true) } : [(p, false)]);

    /// <summary>Random weights and inputs; one input row starts with an all-zero block (its scale is 0).</summary>
    static (Tensor W, Tensor X) Int8Operands(int rows, int cols, int inputs, int seed)
    {
        var gen = new Generator((ulong)seed);
        var w = randn([rows, cols], generator: gen); var x = randn([inputs, cols], generator: gen) * 3;
        x[0].narrow(0, 0, Math.Min(32, cols)).zero_();
        return (w, x);
    }

    [Theory]
    [MemberData(nameof(Int8Cases))]
    public void Int8_kernel_equals_the_fp64_product_of_its_quantized_operands(KernelPath path, bool vnni, int rows, int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var (w, x) = Int8Operands(rows, cols, inputs, 3);
        var first = MatVecInt8.Quantize(w);
        var second = MatVecInt8.Quantize(randn([5, cols], generator: new Generator(4)));
        var (xq, dx) = QuantizeActivationsByLoop(x);
        var x64 = DequantizeByLoop(xq, dx);
        using var forced = KernelPaths.Force(path, vnni);
        var ys = MatVecInt8.MultiplyMany([first, second], x);
        // Block sums are exact in int32; each block's d_w·d_x is rounded once more than a plain fp32 dot's terms.
        AssertWithinDotBound(ys[0], DequantizeByLoop(first.Values, first.Scales), x64, $"int8 {path} vnni {vnni}", cols + 1);
        AssertWithinDotBound(ys[1], DequantizeByLoop(second.Values, second.Scales), x64, $"int8 {path} (second matrix)", cols + 1);
    }

    /// <summary>
    /// Against dequantize-then-multiply with the fp32 x: rounding x to d_x·q moves each x_k by at most d_x,b(k)·(1/2 + 2⁻¹⁶)
    /// (half a step, plus the fp32 rounding of x·(1/d) near |x/d| ≤ 127), so y moves by at most Σ_k |w_k|·d_x,b(k)·(1/2 + 2⁻¹⁶);
    /// the fp32 summation adds the dot-product bound.
    /// </summary>
    [Theory]
    [MemberData(nameof(Int8Cases))]
    public void Int8_kernel_is_within_the_activation_rounding_bound_of_dequantize_then_multiply(KernelPath path, bool vnni, int rows,
                                                                                                int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var (w, x) = Int8Operands(rows, cols, inputs, 5);
        var (values, scales) = MatVecInt8.Quantize(w);
        var (xq, dx) = QuantizeActivationsByLoop(x);
        var w64 = DequantizeByLoop(values, scales); var xhat = DequantizeByLoop(xq, dx);
        using var forced = KernelPaths.Force(path, vnni);
        var y = MatVecInt8.MultiplyMany([(values, scales)], x)[0].to(ScalarType.Float64);
        var step = DequantizeByLoop(ones_like(xq), dx);                                // d_x of each element's block
        var bound = (step * (0.5 + Math.Pow(2, -16))).matmul(w64.abs().t())
                    + xhat.abs().matmul(w64.abs().t()) * ((cols + 1) * Math.Pow(2, -24)) + 1e-30;
        var excess = ((y - x.to(ScalarType.Float64).matmul(w64.t())).abs() - bound).max().item<double>();
        Assert.True(excess <= 0, $"int8 {path} vnni {vnni}: error exceeds the activation-rounding bound by {excess:E3}");
    }

    public static TheoryData<KernelPath, bool, int, int> ActivationCases()
    {
        var data = new TheoryData<KernelPath, bool, int, int>();
        foreach (var (path, vnni) in Int8Variants())
            foreach (int cols in new[] { 1, 7, 33, 95, 100, 160, 2048 })
                foreach (int inputs in new[] { 1, 3 })
                    data.Add(path, vnni, cols, inputs);
        return data;
    }

    /// <summary>Every path gives the rule's bits, ties round to even, and a partial block's padding is zero.</summary>
    [Theory]
    [MemberData(nameof(ActivationCases))]
    public void Int8_activations_are_quantized_by_the_block_rule(KernelPath path, bool vnni, int cols, int inputs)
    {
        var (_, x) = Int8Operands(1, cols, inputs, 6);
        if (cols >= 8) x[inputs - 1].narrow(0, 0, 8).copy_(tensor(new[] { 127f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, 126.5f, -127f }));
        var (expectedQ, expectedD) = QuantizeActivationsByLoop(x);
        long blocks = MatVecInt8.Blocks(cols), stride = blocks * 32;
        var q = new sbyte[stride]; var d = new float[blocks];
        var xs = x.data<float>().ToArray();
        using var forced = KernelPaths.Force(path, vnni);
        for (int m = 0; m < inputs; m++)
        {
            MatVecInt8.QuantizeActivations(xs.AsSpan(m * cols, cols), q, d);
            Assert.Equal(expectedD.data<float>().ToArray().Skip((int)(m * blocks)).Take((int)blocks), d);
            Assert.Equal(expectedQ.data<sbyte>().ToArray().Skip(m * cols).Take(cols), q.Take(cols));
            Assert.All(q.Skip(cols), v => Assert.Equal(0, v));                                 // the padding of a partial block
            for (int k = 0; k < cols; k++)
            {
                Assert.InRange(q[k], -127, 127);
                double error = Math.Abs(xs[m * cols + k] - (double)d[k / 32] * q[k]);
                Assert.True(error <= d[k / 32] * (0.5 + Math.Pow(2, -16)), $"row {m} col {k}: error {error} > d/2");
            }
        }
        if (cols >= 8) Assert.Equal(new sbyte[] { 127, 2, -4, 0, 0, 2, 126, -127 }, q.Take(8));   // ties round to even
    }

    /// <summary>A NaN activation makes its block's scale NaN, so its output row is NaN on every path, as in fp32.</summary>
    [Fact]
    public void Int8_kernel_propagates_a_nan_activation()
    {
        using var scope = NewDisposeScope();
        var (w, x) = Int8Operands(9, 100, 2, 7);
        x[1, 70] = float.NaN;
        var (values, scales) = MatVecInt8.Quantize(w);
        foreach (var (path, vnni) in Int8Variants())
            using (KernelPaths.Force(path, vnni))
            {
                var y = MatVecInt8.MultiplyMany([(values, scales)], x)[0];
                Assert.True(y[0].isfinite().all().item<bool>(), $"{path}: the clean row");
                Assert.True(y[1].isnan().all().item<bool>(), $"{path}: the row with a NaN");
            }
    }

    /// <summary>
    /// The activation rule written out: per row and block of 32, <c>d = max|x| / 127</c>, <c>q = round_even(x · (1/d))</c>
    /// in fp32 (0 when d = 0) → q [inputs, cols] int8, d [inputs, ⌈cols/32⌉] fp32.
    /// </summary>
    internal static (Tensor Q, Tensor D) QuantizeActivationsByLoop(Tensor x)
    {
        long inputs = x.shape[0], cols = x.shape[1], blocks = (cols + 31) / 32;
        var xs = x.data<float>().ToArray();
        var q = new sbyte[inputs * cols]; var d = new float[inputs * blocks];
        for (long m = 0; m < inputs; m++)
            for (long b = 0; b < blocks; b++)
            {
                long from = m * cols + b * 32, to = m * cols + Math.Min(cols, (b + 1) * 32);
                float amax = 0;
                for (long k = from; k < to; k++) amax = Math.Max(amax, Math.Abs(xs[k]));
                float scale = amax / 127f, inverse = scale == 0 ? 0 : 1f / scale;
                d[m * blocks + b] = scale;
                for (long k = from; k < to; k++) q[k] = (sbyte)Math.Round(xs[k] * inverse, MidpointRounding.ToEven);
            }
        return (tensor(q, [inputs, cols]), tensor(d, [inputs, blocks]));
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
