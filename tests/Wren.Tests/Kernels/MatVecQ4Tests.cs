using TorchSharp;
using Wren.Kernels;
using static TorchSharp.torch;
using static Wren.Tests.Kernels.MatVecPrecisionTests;

namespace Wren.Tests.Kernels;

/// <summary>
/// The 4-bit layouts (q4: Q4_0's rule; q4k: Q4_K's scheme) and their kernels on every instruction-set path this CPU runs
/// (the AVX2 path with and without AVX-VNNI), against references written here from the layouts' equations: the stored
/// bytes decoded by plain loops, times x quantized by the int8 activation rule, in fp64. Widths that are not multiples of
/// 32, 256 or any vector width, one row, 65 rows, one input, a few, and the largest decode batch.
/// </summary>
[Collection(KernelPathCollection.Name)]
public class MatVecQ4Tests
{
    const double Epsilon = 1.0 / (1 << 24);

    public static TheoryData<KernelPath, bool, int, int, int> Q4Cases() =>
        Cases([(67, 100), (1, 33), (65, 95), (3, 7), (5, 1), (2, 160), (3, 200), (64, 2048)]);

    public static TheoryData<KernelPath, bool, int, int, int> Q4KCases() =>
        Cases([(67, 100), (1, 256), (65, 300), (3, 7), (1, 1), (2, 520), (64, 2048)]);

    static TheoryData<KernelPath, bool, int, int, int> Cases((int Rows, int Cols)[] shapes)
    {
        var data = new TheoryData<KernelPath, bool, int, int, int>();
        foreach (var (path, vnni) in Int8Variants())
            foreach (var (rows, cols) in shapes)
                foreach (int inputs in new[] { 1, 3, MatVec.MaxInputRows })
                    data.Add(path, vnni, rows, cols, inputs);
        return data;
    }

    /// <summary>Random weights (one all-zero block in the first row) and inputs (one input row starts with an all-zero block).</summary>
    static (Tensor W, Tensor X) Operands(int rows, int cols, int inputs, int seed)
    {
        var gen = new Generator((ulong)seed);
        var w = randn([rows, cols], generator: gen) * 0.5; var x = randn([inputs, cols], generator: gen) * 3;
        w[0].narrow(0, 0, Math.Min(32, cols)).zero_();
        if (cols > 64) x[0].narrow(0, 32, 32).zero_();
        return (w, x);
    }

    /// <summary>
    /// q4 decoded by its definition: block b of row r is bytes [16·b, 16·b + 16), value j in the low nibble of byte j (j &lt; 16)
    /// or the high nibble of byte j − 16, <c>ŵ = d_b·(q − 8)</c> → ŵ and |d_b|·(q + 8) (the magnitudes the kernel's two sums
    /// add: Σ q·x and 8·Σ x), fp64 [rows, cols].
    /// </summary>
    static (Tensor W, Tensor Magnitude, int[] Codes) DecodeQ4(Tensor values, Tensor scales, long cols)
    {
        long rows = values.shape[0], blocks = (cols + 31) / 32;
        var bytes = values.data<byte>().ToArray(); var d = scales.data<float>().ToArray();
        var w = new double[rows * cols]; var magnitude = new double[rows * cols]; var codes = new int[rows * blocks * 32];
        for (long r = 0; r < rows; r++)
            for (long k = 0; k < blocks * 32; k++)
            {
                long b = k / 32, j = k % 32;
                byte packed = bytes[r * blocks * 16 + b * 16 + j % 16];
                int q = j < 16 ? packed & 15 : packed >> 4;
                codes[r * blocks * 32 + k] = q;
                if (k >= cols) continue;
                double scale = d[r * blocks + b];
                w[r * cols + k] = scale * (q - 8);
                magnitude[r * cols + k] = Math.Abs(scale) * (q + 8);
            }
        return (tensor(w, [rows, cols]), tensor(magnitude, [rows, cols]), codes);
    }

    /// <summary>
    /// q4k decoded by its definition: super-block t of row r is bytes [140·t, 140·t + 140); bytes 0–5 hold the scale codes and
    /// bytes 6–11 the min codes as little-endian 48-bit numbers, code j in bits 6j…6j+5; value k of sub-block j is the low
    /// (j even) or high (j odd) nibble of byte 12 + 32·⌊j/2⌋ + k; <c>ŵ = d·sc_j·q − dmin·m_j</c> with (d, dmin) = scales[r, t]
    /// → ŵ, d·sc_j·q + dmin·m_j (the magnitudes of the kernel's two sums) and the step d·sc_j of each value, fp64.
    /// </summary>
    static (Tensor W, Tensor Magnitude, Tensor Step) DecodeQ4K(Tensor values, Tensor scales, long cols)
    {
        long rows = values.shape[0], supers = (cols + 255) / 256;
        var bytes = values.data<byte>().ToArray(); var dm = scales.data<float>().ToArray();
        var w = new double[rows * cols]; var magnitude = new double[rows * cols]; var step = new double[rows * cols];
        for (long r = 0; r < rows; r++)
            for (long t = 0; t < supers; t++)
            {
                long at = (r * supers + t) * 140;
                ulong scaleBits = 0, minBits = 0;
                for (int i = 0; i < 6; i++)
                {
                    scaleBits |= (ulong)bytes[at + i] << (8 * i);
                    minBits |= (ulong)bytes[at + 6 + i] << (8 * i);
                }
                double d = dm[(r * supers + t) * 2], dmin = dm[(r * supers + t) * 2 + 1];
                for (int i = 0; i < 256 && t * 256 + i < cols; i++)
                {
                    int j = i / 32, k = i % 32;
                    int sc = (int)(scaleBits >> (6 * j)) & 63, m = (int)(minBits >> (6 * j)) & 63;
                    byte packed = bytes[at + 12 + j / 2 * 32 + k];
                    int q = j % 2 == 0 ? packed & 15 : packed >> 4;
                    long at2 = r * cols + t * 256 + i;
                    w[at2] = d * sc * q - dmin * m;
                    magnitude[at2] = d * sc * q + dmin * m;
                    step[at2] = d * sc;
                }
            }
        return (tensor(w, [rows, cols]), tensor(magnitude, [rows, cols]), tensor(step, [rows, cols]));
    }

    /// <summary>
    /// fp32 block sums are exact; the rest is an fp32 sum of scaled terms, each rounded a few times: error ≤ (n + 40)·ε·Σ
    /// (the standard n·ε bound on the magnitudes the kernel adds, n the padded width).
    /// </summary>
    static void AssertWithinSumBound(Tensor actual, Tensor reference, Tensor magnitude, Tensor xhat, long terms, string what)
    {
        var bound = xhat.abs().matmul(magnitude.t()) * ((terms + 40) * Epsilon) + 1e-30;
        var excess = ((actual.to(ScalarType.Float64) - reference).abs() - bound).max().item<double>();
        Assert.True(excess <= 0, $"{what}: error exceeds the fp32 summation bound by {excess:E3}");
    }

    /// <summary>
    /// Against the fp32 x: rounding x to d_x·q moves each x_k by at most d_x,b(k)·(1/2 + 2⁻¹⁶) (MatVecPrecisionTests), so y
    /// moves by at most Σ_k |ŵ_k|·d_x,b(k)·(1/2 + 2⁻¹⁶), plus the summation bound.
    /// </summary>
    static void AssertWithinActivationBound(Tensor actual, Tensor w64, Tensor magnitude, Tensor x, long terms, string what)
    {
        var (xq, dx) = QuantizeActivationsByLoop(x);
        long inputs = x.shape[0], cols = x.shape[1];
        var step = dx.to(ScalarType.Float64).repeat_interleave(32, 1).narrow(1, 0, cols);
        var xhat = xq.to(ScalarType.Float64) * step;
        var bound = (step * (0.5 + Math.Pow(2, -16))).matmul(w64.abs().t())
                    + xhat.abs().matmul(magnitude.t()) * ((terms + 40) * Epsilon) + 1e-30;
        var excess = ((actual.to(ScalarType.Float64) - x.to(ScalarType.Float64).matmul(w64.t())).abs() - bound).max().item<double>();
        Assert.True(excess <= 0, $"{what}: error exceeds the activation-rounding bound by {excess:E3} ({inputs} inputs)");
    }

    static Tensor Dequantized(Tensor x)
    {
        var (xq, dx) = QuantizeActivationsByLoop(x);
        return xq.to(ScalarType.Float64) * dx.to(ScalarType.Float64).repeat_interleave(32, 1).narrow(1, 0, x.shape[1]);
    }

    [Theory]
    [MemberData(nameof(Q4Cases))]
    public void Q4_kernel_equals_the_fp64_product_of_its_quantized_operands(KernelPath path, bool vnni, int rows, int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var (w, x) = Operands(rows, cols, inputs, 11);
        var first = MatVecQ4.Quantize(w);
        var second = MatVecQ4.Quantize(randn([5, cols], generator: new Generator(12)));
        var (w1, m1, _) = DecodeQ4(first.Values, first.Scales, cols);
        var (w2, m2, _) = DecodeQ4(second.Values, second.Scales, cols);
        var xhat = Dequantized(x);
        using var forced = KernelPaths.Force(path, vnni);
        var ys = MatVecQ4.MultiplyMany([first, second], x);
        long terms = (cols + 31) / 32 * 32;
        AssertWithinSumBound(ys[0], xhat.matmul(w1.t()), m1, xhat, terms, $"q4 {path} vnni {vnni}");
        AssertWithinSumBound(ys[1], xhat.matmul(w2.t()), m2, xhat, terms, $"q4 {path} (second matrix)");
        AssertWithinActivationBound(ys[0], w1, m1, x, terms, $"q4 {path} vnni {vnni}");
    }

    [Theory]
    [MemberData(nameof(Q4KCases))]
    public void Q4k_kernel_equals_the_fp64_product_of_its_quantized_operands(KernelPath path, bool vnni, int rows, int cols, int inputs)
    {
        using var scope = NewDisposeScope();
        var (w, x) = Operands(rows, cols, inputs, 13);
        var first = MatVecQ4K.Quantize(w);
        var second = MatVecQ4K.Quantize(randn([5, cols], generator: new Generator(14)) + 0.3);
        var (w1, m1, _) = DecodeQ4K(first.Values, first.Scales, cols);
        var (w2, m2, _) = DecodeQ4K(second.Values, second.Scales, cols);
        var xhat = Dequantized(x);
        using var forced = KernelPaths.Force(path, vnni);
        var ys = MatVecQ4K.MultiplyMany([first, second], x);
        long terms = (cols + 255) / 256 * 256;
        AssertWithinSumBound(ys[0], xhat.matmul(w1.t()), m1, xhat, terms, $"q4k {path} vnni {vnni}");
        AssertWithinSumBound(ys[1], xhat.matmul(w2.t()), m2, xhat, terms, $"q4k {path} (second matrix)");
        AssertWithinActivationBound(ys[0], w1, m1, x, terms, $"q4k {path} vnni {vnni}");
    }

    /// <summary>
    /// Q4_0's rule written out per block of 32: m the first value of largest |w|, d = m / −8 (fp32), q = clamp(round_even(w·(1/d))
    /// + 8, 0, 15) in fp32 (8 for the padding past the row, and for every value when d = 0). Hand-derived error: m maps to q = 0
    /// exactly; a value with w/d ≤ 7.5 rounds to the nearest step, |w − ŵ| ≤ |d|/2; one with w/d &gt; 7.5 (opposite sign, within
    /// half a step of |m|) clamps to 15, |w − ŵ| ≤ |d|. Both up to the fp32 rounding of w·(1/d), a relative 2⁻²³ of |m|.
    /// </summary>
    [Theory]
    [InlineData(5, 100)]
    [InlineData(2, 33)]
    [InlineData(3, 32)]
    [InlineData(1, 7)]
    public void Q4_quantization_follows_the_block_rule(int rows, int cols)
    {
        using var scope = NewDisposeScope();
        var w = randn([rows, cols], generator: new Generator(15)) * 3;
        w[0, 0] = 0;
        if (rows > 1) w[1].narrow(0, 0, Math.Min(32, cols)).zero_();                          // an all-zero block: d = 0
        if (cols >= 4)
        {
            w[0].narrow(0, 0, Math.Min(32, cols)).mul_(0.1);                                   // |w| ≲ 1.5: m is the 4 below
            w[0].narrow(0, 1, 3).copy_(tensor(new[] { 4f, -4f, 3.75f }));
        }
        var (values, scales) = MatVecQ4.Quantize(w);
        long blocks = (cols + 31) / 32;
        Assert.Equal([rows, blocks * 16], values.shape);
        Assert.Equal([rows, blocks], scales.shape);
        var (decoded, _, codes) = DecodeQ4(values, scales, cols);
        var W = w.data<float>().ToArray(); var d = scales.data<float>().ToArray(); var hat = decoded.data<double>().ToArray();
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < blocks; b++)
            {
                int from = b * 32, to = Math.Min(cols, from + 32);
                float m = 0;
                for (int k = from; k < to; k++) if (Math.Abs(W[r * cols + k]) > Math.Abs(m)) m = W[r * cols + k];
                float scale = m / -8f, inverse = scale == 0 ? 0 : 1f / scale;
                Assert.Equal(scale, d[r * blocks + b]);
                for (int k = from; k < from + 32; k++)
                {
                    int expected = k < to ? Math.Clamp((int)MathF.Round(W[r * cols + k] * inverse, MidpointRounding.ToEven) + 8, 0, 15) : 8;
                    Assert.Equal(expected, codes[(r * blocks + b) * 32 + k - from]);
                    if (k >= to) continue;
                    double error = Math.Abs(W[r * cols + k] - hat[r * cols + k]), step = Math.Abs(scale);
                    double bound = (scale != 0 && W[r * cols + k] / (double)scale > 7.5 ? step : step / 2) + Math.Abs(m) * Math.Pow(2, -22);
                    Assert.True(error <= bound, $"row {r} col {k}: error {error} > {bound}");
                }
            }
        // By hand: m = 4 (before −4), d = −0.5, 1/d = −2: 4 → −8 + 8 = 0; −4 → 8 + 8 = 16, clamped to 15 (off by |d|);
        // 3.75 → round_even(−7.5) + 8 = −8 + 8 = 0 (off by |d|/2).
        if (cols >= 4) Assert.Equal(new[] { 0, 15, 0 }, codes.Skip(1).Take(3));
        var library = MatVecQ4.Dequantize(values, scales, cols).to(ScalarType.Float64);
        Assert.True((library - decoded).abs().max().item<double>() <= 1e-6 * w.abs().max().item<float>(), "Dequantize: the definition");
    }

    /// <summary>
    /// The Q4_K scheme's bound: every weight within half a step of its grid, <c>|w − ŵ| ≤ d·sc_j/2</c> (the codes are rounded up, so
    /// the grid covers the sub-block), up to the rounding of d and dmin to fp32 (a relative 2⁻²⁰ of the super-block's largest
    /// |w|); an all-zero super-block stores d = dmin = 0; the library's dequantization is the definition's.
    /// </summary>
    [Theory]
    [InlineData(3, 300)]
    [InlineData(2, 256)]
    [InlineData(4, 33)]
    [InlineData(1, 600)]
    public void Q4k_quantization_keeps_every_weight_within_half_a_step(int rows, int cols)
    {
        using var scope = NewDisposeScope();
        var w = randn([rows, cols], generator: new Generator(16)) * 2;
        if (rows > 1) w[1].narrow(0, 0, Math.Min(256, cols)).zero_();
        w[0].narrow(0, 0, Math.Min(32, cols)).add_(5);                                       // a sub-block of positive weights only
        var (values, scales) = MatVecQ4K.Quantize(w);
        long supers = (cols + 255) / 256;
        Assert.Equal([rows, supers * 140], values.shape);
        Assert.Equal([rows, supers, 2], scales.shape);
        var (decoded, _, step) = DecodeQ4K(values, scales, cols);
        var W = w.data<float>().ToArray(); var hat = decoded.data<double>().ToArray(); var steps = step.data<double>().ToArray();
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < supers; t++)
            {
                int from = t * 256, to = Math.Min(cols, from + 256);
                double amax = 0;
                for (int k = from; k < to; k++) amax = Math.Max(amax, Math.Abs(W[r * cols + k]));
                for (int k = from; k < to; k++)
                {
                    double error = Math.Abs(W[r * cols + k] - hat[r * cols + k]), bound = steps[r * cols + k] / 2 + amax * Math.Pow(2, -20);
                    Assert.True(error <= bound, $"row {r} col {k}: error {error} > {bound}");
                }
            }
        if (rows > 1 && cols <= 256) Assert.Equal([0f, 0f], scales[1, 0].data<float>().ToArray());
        var library = MatVecQ4K.Dequantize(values, scales, cols).to(ScalarType.Float64);
        Assert.True((library - decoded).abs().max().item<double>() <= 1e-6 * w.abs().max().item<float>(), "Dequantize: the definition");
    }

    /// <summary>A NaN activation makes its block's scale NaN, so its output row is NaN on every path, as in fp32.</summary>
    [Fact]
    public void Four_bit_kernels_propagate_a_nan_activation()
    {
        using var scope = NewDisposeScope();
        var (w, x) = Operands(9, 300, 2, 17);
        x[1, 270] = float.NaN;
        var q4 = MatVecQ4.Quantize(w); var q4k = MatVecQ4K.Quantize(w);
        foreach (var (path, vnni) in Int8Variants())
            using (KernelPaths.Force(path, vnni))
                foreach (var y in new[] { MatVecQ4.MultiplyMany([q4], x)[0], MatVecQ4K.MultiplyMany([q4k], x)[0] })
                {
                    Assert.True(y[0].isfinite().all().item<bool>(), $"{path}: the clean row");
                    Assert.True(y[1].isnan().all().item<bool>(), $"{path}: the row with a NaN");
                }
    }

    [Fact]
    public void Bind_names_a_mis_sized_scale()
    {
        using var scope = NewDisposeScope();
        var (values, scales) = MatVecQ4.Quantize(randn(4, 70));
        var error = Assert.Throws<ArgumentException>(() => MatVec.Bind(values, scales.narrow(1, 0, 2).contiguous(), "up_proj", 70));
        Assert.Contains("up_proj scales", error.Message);
        Assert.Throws<ArgumentException>(() => MatVec.Bind(values, scales, "up_proj"));   // a packed weight needs its width
    }
}
