using TorchSharp;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>The delta rule of DeltaNet and Gated DeltaNet: chunked equals recurrent (output, state, gradients), split states continue
/// exactly.</summary>
public class DeltaRuleTests
{
    /// <summary>q, k [B, T, H, K], v [B, T, H, V], β and g [B, T, H], S₀ [B, H, K, V].</summary>
    static (Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor s0) Inputs(long B, long H, long T, long K, long V, bool gated,
                                                                                     ScalarType dtype, int seed)
    {
        var gen = new Generator((ulong)seed);
        var q = nn.functional.normalize(randn([B, T, H, K], dtype, generator: gen), p: 2, dim: -1) * Math.Pow(K, -0.5);
        var k = nn.functional.normalize(randn([B, T, H, K], dtype, generator: gen), p: 2, dim: -1);
        var v = randn([B, T, H, V], dtype, generator: gen);
        var beta = rand([B, T, H], dtype, generator: gen);
        Tensor? g = gated ? -(rand([B, T, H], dtype, generator: gen) * 0.5 + 0.01) : null;
        var s0 = randn([B, H, K, V], dtype, generator: gen) * 0.5;
        return (q, k, v, beta, g, s0);
    }

    [Theory]
    [InlineData(false, 37, 16)]
    [InlineData(true, 37, 16)]
    [InlineData(false, 100, 64)]
    [InlineData(true, 5, 8)]
    public void Chunked_equals_recurrent_with_initial_state(bool gated, int T, int chunk)
    {
        using var scope = NewDisposeScope();
        var (q, k, v, beta, g, s0) = Inputs(2, 3, T, 16, 12, gated, ScalarType.Float32, T);
        var (oR, sR) = DeltaRule.Recurrent(q, k, v, beta, g, s0);
        var (oC, sC) = DeltaRule.Chunked(q, k, v, beta, g, s0, chunk);
        AssertClose(oC, oR, 1e-4, "output");
        AssertClose(sC, sR, 1e-4, "final state");
    }

    [Fact]
    public void Float64_forms_agree_to_machine_precision()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, beta, g, s0) = Inputs(1, 2, 29, 8, 8, true, ScalarType.Float64, 7);
        // The ops compute in float32 by contract; this checks the algebra, so compare in float64 at float32 resolution.
        var (oR, _) = DeltaRule.Recurrent(q, k, v, beta, g, s0);
        var (oC, _) = DeltaRule.Chunked(q, k, v, beta, g, s0, 8);
        Assert.True(RelativeRms(oC, oR) < 1e-6);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void State_split_equals_one_pass(bool gated)
    {
        using var scope = NewDisposeScope();
        var (q, k, v, beta, g, s0) = Inputs(2, 2, 50, 16, 16, gated, ScalarType.Float32, 3);
        var (oFull, sFull) = DeltaRule.Chunked(q, k, v, beta, g, s0, 16);
        long t1 = 21;
        Tensor Head(Tensor x) => x.narrow(1, 0, t1);
        Tensor Tail(Tensor x) => x.narrow(1, t1, 50 - t1);
        var (o1, s1) = DeltaRule.Chunked(Head(q), Head(k), Head(v), Head(beta), g is null ? null : Head(g), s0, 16);
        var (o2, s2) = DeltaRule.Chunked(Tail(q), Tail(k), Tail(v), Tail(beta), g is null ? null : Tail(g), s1, 16);
        AssertClose(cat([o1, o2], 1), oFull, 1e-4, "split output");
        AssertClose(s2, sFull, 1e-4, "split state");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gradients_through_chunked_match_recurrent(bool gated)
    {
        using var scope = NewDisposeScope();
        var (q, k, v, beta, g, s0) = Inputs(2, 2, 23, 8, 8, gated, ScalarType.Float32, 11);
        var inputs = gated ? new[] { q, k, v, beta, g!, s0 } : [q, k, v, beta, s0];
        Tensor? Gate(Tensor[] x) => gated ? x[4] : null;
        AssertGradientsAgree(inputs,
            x => DeltaRule.Recurrent(x[0], x[1], x[2], x[3], Gate(x), x[^1]),
            x => DeltaRule.Chunked(x[0], x[1], x[2], x[3], Gate(x), x[^1], 8),
            randn([2, 23, 2, 8], generator: new Generator(5)));
    }

    [Fact]
    public void Zero_beta_and_zero_gate_leave_state_unchanged()
    {
        // What left padding relies on: a token with β = 0 (and g = 0) changes nothing.
        using var scope = NewDisposeScope();
        var (q, k, v, _, _, s0) = Inputs(1, 2, 6, 8, 8, true, ScalarType.Float32, 2);
        var (_, s) = DeltaRule.Chunked(q, k, v, zeros([1, 6, 2]), zeros([1, 6, 2]), s0, 4);
        AssertClose(s, s0, 1e-6);
    }

    [Fact]
    public void L2_norm_puts_eps_inside_the_sqrt()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 3e-4f, 4e-4f });
        // ‖x‖² = 2.5e-7: x / sqrt(2.5e-7 + 1e-6), not x / (5e-4 + 1e-6).
        var expected = x / Math.Sqrt(2.5e-7 + 1e-6);
        AssertClose(ChunkMath.L2Norm(x), expected, 1e-6);
    }
}
