using TorchSharp;
using Wren.Models;
using Wren.Operators;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>Mamba2 (SSD): chunked equals recurrent (output, state, gradients), split states continue exactly, with G &gt; 1
/// groups.</summary>
public class Mamba2Tests
{
    static (Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor s0) Inputs(long b, long T, long H, long P, long G, long N,
                                                                                           int seed)
    {
        var gen = new Generator((ulong)seed);
        var x = randn([b, T, H, P], generator: gen);
        var dt = nn.functional.softplus(randn([b, T, H], generator: gen) - 1.0);
        var A = -(rand([H], generator: gen) * 4 + 0.5);
        var B = randn([b, T, G, N], generator: gen);
        var C = randn([b, T, G, N], generator: gen);
        var D = randn([H], generator: gen);
        var s0 = randn([b, H, P, N], generator: gen);
        return (x, dt, A, B, C, D, s0);
    }

    [Theory]
    [InlineData(45, 16, 1)]
    [InlineData(45, 16, 2)]
    [InlineData(130, 64, 4)]
    [InlineData(3, 64, 2)]
    public void Chunked_equals_recurrent_with_initial_state(int T, int chunk, int groups)
    {
        using var scope = NewDisposeScope();
        var (x, dt, A, B, C, D, s0) = Inputs(2, T, 8, 4, groups, 6, T + groups);
        var (yR, sR) = Mamba2.Recurrent(x, dt, A, B, C, D, s0);
        var (yC, sC) = Mamba2.Chunked(x, dt, A, B, C, D, s0, chunk);
        AssertClose(yC, yR, 1e-4, "output");
        AssertClose(sC, sR, 1e-4, "state");
    }

    [Fact]
    public void State_split_equals_one_pass()
    {
        using var scope = NewDisposeScope();
        var (x, dt, A, B, C, D, s0) = Inputs(2, 70, 8, 4, 2, 6, 9);
        var (yFull, sFull) = Mamba2.Chunked(x, dt, A, B, C, D, s0, 16);
        long t1 = 33;
        var (y1, s1) = Mamba2.Chunked(x.narrow(1, 0, t1), dt.narrow(1, 0, t1), A, B.narrow(1, 0, t1), C.narrow(1, 0, t1), D, s0, 16);
        var (y2, s2) = Mamba2.Chunked(x.narrow(1, t1, 70 - t1), dt.narrow(1, t1, 70 - t1), A, B.narrow(1, t1, 70 - t1),
                                      C.narrow(1, t1, 70 - t1), D, s1, 16);
        AssertClose(cat([y1, y2], 1), yFull, 1e-4, "split output");
        AssertClose(s2, sFull, 1e-4, "split state");
    }

    [Fact]
    public void Gradients_through_chunked_match_recurrent()
    {
        using var scope = NewDisposeScope();
        var (x, dt, A, B, C, D, s0) = Inputs(2, 21, 8, 4, 2, 6, 4);
        AssertGradientsAgree([x, dt, A, B, C, D, s0],
            l => Mamba2.Recurrent(l[0], l[1], l[2], l[3], l[4], l[5], l[6]),
            l => Mamba2.Chunked(l[0], l[1], l[2], l[3], l[4], l[5], l[6], 8),
            randn([2, 21, 8, 4], generator: new Generator(8)));
    }

    [Fact]
    public void Initialization_keeps_A_in_float32_and_step_in_range()
    {
        using var scope = NewDisposeScope();
        var config = Config("m2") with { NumAttentionHeads = 4 };
        using var model = new HybridForCausalLM(config, new Wren.Modules.Placement(ScalarType.BFloat16, CPU));
        Initialization.Apply(model, 1);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal(ScalarType.Float32, p["model.layers.0.mamba.A_log"].dtype);
        Assert.Equal(ScalarType.Float32, p["model.layers.0.mamba.dt_bias"].dtype);
        var step = nn.functional.softplus(p["model.layers.0.mamba.dt_bias"]);
        Assert.True(step.min().item<float>() >= 1e-4 - 1e-7 && step.max().item<float>() <= 0.1 + 1e-6);
        var A = p["model.layers.0.mamba.A_log"].exp();
        Assert.True(A.min().item<float>() >= 1 - 1e-5 && A.max().item<float>() <= 16 + 1e-4);
    }
}
