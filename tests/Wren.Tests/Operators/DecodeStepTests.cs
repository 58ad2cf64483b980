using TorchSharp;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>The fused CPU decode steps against the reference recurrences they replace, and the one form chooser.</summary>
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
        var q = randn([B, 1, H, K], generator: gen); var k = nn.functional.normalize(randn([B, 1, H, K], generator: gen), p: 2, dim: -1);
        var v = randn([B, 1, H, V], generator: gen); var beta = rand([B, 1, H], generator: gen);
        Tensor? g = gated ? -rand([B, 1, H], generator: gen) : null;
        var s0 = randn([B, H, K, V], generator: gen);
        var (oRef, sRef) = DeltaRule.Recurrent(q, k, v, beta, g, s0);
        var state = s0.clone();
        var o = DeltaRule.FusedRecurrent(q.transpose(2, 3).transpose(2, 3), k, v, beta, g, state);
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
        AssertClose(Mamba2.FusedRecurrent(x, dt, A, Bm, Cm, D, state), yRef, 1e-5, "output");
        AssertClose(state, sRef, 1e-5, "state");
    }

    [Fact]
    public void Fused_steps_check_shapes_and_strides_naming_the_tensor()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var q = randn([2, 1, 3, 4]); var v = randn([2, 1, 3, 5]); var beta = rand([2, 1, 3]);
        Assert.Contains("state: expected shape [2, 3, 4, 5], got [2, 3, 5, 4]",
            Assert.Throws<ArgumentException>(() => DeltaRule.FusedRecurrent(q, q, v, beta, null, zeros(2, 3, 5, 4))).Message);
        Assert.Contains("beta: expected shape [2, 1, 3]",
            Assert.Throws<ArgumentException>(() => DeltaRule.FusedRecurrent(q, q, v, rand([2, 3]), null, zeros(2, 3, 4, 5))).Message);
        Assert.Contains("state: the CPU kernel reads it in place",
            Assert.Throws<ArgumentException>(() =>
                DeltaRule.FusedRecurrent(q, q, v, beta, null, zeros(2, 3, 5, 4).transpose(2, 3))).Message);
        var x = randn([1, 1, 8, 2]); var dt = rand([1, 1, 8]); var bc = randn([1, 1, 1, 4]);
        Assert.Contains("A: expected shape [8]",
            Assert.Throws<ArgumentException>(() => Mamba2.FusedRecurrent(x, dt, randn(4), bc, bc, randn(8), zeros(1, 8, 2, 4))).Message);
        Assert.Contains("CPU Float32 tensor, got CPU Float64",
            Assert.Throws<ArgumentException>(() =>
                Mamba2.FusedRecurrent(x, dt, randn(8), bc, bc, randn(8), zeros(1, 8, 2, 4, ScalarType.Float64))).Message);
        var keys = zeros(1, 2, 6, 4);
        Assert.Contains("values: expected shape [1, 2, 6, 4]",
            Assert.Throws<ArgumentException>(() =>
                Attention.FusedDecode(randn(1, 4, 1, 4), keys, zeros(1, 2, 5, 4), 3, null, zeros(1, 1, ScalarType.Int64), null)).Message);
        Assert.Contains("keys: 7 slots asked of a cache of 6",
            Assert.Throws<ArgumentException>(() =>
                Attention.FusedDecode(randn(1, 4, 1, 4), keys, keys, 7, null, zeros(1, 1, ScalarType.Int64), null)).Message);
    }

    [Fact]
    public void The_form_is_chosen_in_one_place()
    {
        using var scope = NewDisposeScope();
        var state = zeros(1, 2, 4, 4);
        Assert.Equal(OperatorForm.Chunked, DecodeForm.Choose(5, state));                 // prefill continues a state in parallel
        Assert.Equal(OperatorForm.Chunked, DecodeForm.Choose(1, null));                  // no state: nothing to continue
        using (no_grad())
        {
            Assert.Equal(OperatorForm.Fused, DecodeForm.Choose(1, state, randn(1, 1, 4)));
            Assert.Equal(OperatorForm.Recurrent, DecodeForm.Choose(1, state, randn(1, 1, 4).to(ScalarType.BFloat16)));
        }
        Assert.Equal(OperatorForm.Recurrent, DecodeForm.Choose(1, state));               // autograd on: libtorch ops
    }
}
