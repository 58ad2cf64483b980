using TorchSharp;
using Wren.Modules;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Modules;

/// <summary>prefill with cache then per-token steps == full causal conv.</summary>
public class ShortConvTests
{
    static ShortConv Conv(bool bias)
    {
        var conv = new ShortConv(6, 4, bias, Placement.Cpu32);
        using (no_grad())
        {
            conv.Weight.copy_(randn(conv.Weight.shape, generator: new Generator(1)));
            conv.Bias?.copy_(randn(6, generator: new Generator(2)));
        }
        return conv;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public void Prefill_then_steps_equals_full_conv(int prefill)
    {
        using var scope = NewDisposeScope();
        var conv = Conv(bias: true);
        var x = randn([2, 9, 6], generator: new Generator(3));
        var full = conv.Forward(x, null, null);
        // Reference: explicit causal sum with zero left padding, tap K−1 on the current token.
        var padded = nn.functional.pad(x, [0, 0, 3, 0]);
        var reference = zeros_like(x);
        for (int k = 0; k < 4; k++) reference += padded.narrow(1, k, 9) * conv.Weight.select(2, k).squeeze(1);
        reference = nn.functional.silu(reference + conv.Bias!);
        AssertClose(full, reference, 1e-5, "full");

        var state = conv.NewState(2, CPU);
        var pieces = new List<Tensor>();
        if (prefill > 0) pieces.Add(conv.Forward(x.narrow(1, 0, prefill), state, null));
        for (int t = prefill; t < 9; t++) pieces.Add(conv.Forward(x.narrow(1, t, 1), state, null));
        AssertClose(cat(pieces, 1), full, 1e-5, "stepped");
    }

    [Fact]
    public void Left_padding_is_skipped_exactly()
    {
        using var scope = NewDisposeScope();
        var conv = Conv(bias: false);
        var history = randn([1, 6, 3], generator: new Generator(4));
        var x = randn([1, 5, 6], generator: new Generator(5));
        var state = history.clone();
        var alone = conv.Forward(x, state, null);
        // Same row with two pad tokens in front, continuing the same history.
        var padded = cat([randn([1, 2, 6]), x], 1);
        var paddedState = history.clone();
        using var padding = new LeftPadding(tensor(new long[] { 2 }), 7);
        var withPads = conv.Forward(padded, paddedState, padding).narrow(1, 2, 5);
        AssertClose(withPads, alone, 1e-6, "outputs");
        AssertClose(paddedState, state, 1e-6, "state");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Fused_step_equals_the_libtorch_path(bool bias)
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
        AssertClose(ShortConv.FusedStep(x, state, conv.Weight, conv.Bias), expected, 1e-6, "output");
        AssertClose(state, libtorchState, 0, "state");
    }

    [Fact]
    public void Fused_step_checks_shapes_and_strides_before_reading()
    {
        using var scope = NewDisposeScope();
        var conv = new ShortConv(10, 4, false, Placement.Cpu32);
        var x = randn([3, 1, 10]);
        Assert.Contains("conv state: expected shape [3, 10, 3]",
                        Assert.Throws<ArgumentException>(() => ShortConv.FusedStep(x, zeros(3, 10, 2), conv.Weight, null)).Message);
        var strided = zeros(3, 3, 10).transpose(1, 2);   // right shape, wrong memory order
        Assert.Contains("conv state: the CPU kernel reads it in place",
                        Assert.Throws<ArgumentException>(() => ShortConv.FusedStep(x, strided, conv.Weight, null)).Message);
    }
}
