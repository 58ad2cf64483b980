using TorchSharp;
using Wren.Modules;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>operators.md test 3: prefill with cache then per-token steps == full causal conv.</summary>
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
}
