using TorchSharp;
using Wren.Kernels;
using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>The fused CPU decode steps against the reference recurrences they replace.</summary>
public class DecodeStepTests
{
    [Theory]
    [InlineData(false, 16, 12)]
    [InlineData(true, 16, 12)]
    [InlineData(true, 64, 64)]
    [InlineData(false, 5, 3)]
    public void Delta_rule_step_equals_recurrent(bool gated, int K, int V)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gen = new Generator(3);
        long B = 2, H = 3;
        var q = randn([B, H, 1, K], generator: gen); var k = nn.functional.normalize(randn([B, H, 1, K], generator: gen), p: 2, dim: -1);
        var v = randn([B, H, 1, V], generator: gen); var beta = rand([B, H, 1], generator: gen);
        Tensor? g = gated ? -rand([B, H, 1], generator: gen) : null;
        var s0 = randn([B, H, K, V], generator: gen);
        var (oRef, sRef) = DeltaRule.Recurrent(q, k, v, beta, g, s0);
        var state = s0.clone();
        var o = DecodeSteps.DeltaRuleStep(q.transpose(2, 3).transpose(2, 3), k, v, beta, g, state);
        AssertClose(o, oRef, 1e-5, "output");
        AssertClose(state, sRef, 1e-5, "state");
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(2, 16)]
    [InlineData(4, 13)]
    public void Ssd_step_equals_recurrent(int groups, int N)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gen = new Generator(4);
        long B = 2, H = 8, P = 6;
        var x = randn([B, 1, H, P], generator: gen); var dt = rand([B, 1, H], generator: gen) * 0.5;
        var A = -(rand([H], generator: gen) * 4 + 0.5); var D = randn([H], generator: gen);
        var Bm = randn([B, 1, groups, N], generator: gen); var Cm = randn([B, 1, groups, N], generator: gen);
        var s0 = randn([B, H, P, N], generator: gen);
        var (yRef, sRef) = Mamba2.Recurrent(x, dt, A, Bm, Cm, D, s0);
        var state = s0.clone();
        AssertClose(DecodeSteps.SsdStep(x, dt, A, Bm, Cm, D, state), yRef, 1e-5, "output");
        AssertClose(state, sRef, 1e-5, "state");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Conv_step_equals_the_libtorch_path(bool bias)
    {
        using var scope = NewDisposeScope();
        var conv = new ShortConv(10, 4, bias, Placement.Cpu32);
        using (no_grad()) { conv.Weight.normal_(); conv.Bias?.normal_(); }
        var x = randn([3, 1, 10]);
        var s0 = randn([3, 10, 3]);
        var libtorchState = s0.clone();
        var expected = conv.Forward(x, libtorchState, null);     // grad enabled: the libtorch path
        using var noGrad = no_grad();
        var state = s0.clone();
        AssertClose(DecodeSteps.ConvStep(x, state, conv.Weight, conv.Bias), expected, 1e-6, "output");
        AssertClose(state, libtorchState, 0, "state");
    }

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
}
