using Wren.Checkpoints;
using Wren.Inference;
using Wren.Interop;
using Wren.Models;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// With wren_mamba_ngroups &gt; 1, Mamba2's gated RMSNorm normalizes each group of d_inner / ngroups channels on its own, as
/// mamba_ssm does; the case's expected logits follow that rule (tests/fixtures/cases/mamba2-grouped-norm).
/// </summary>
public class Mamba2GroupedNormTests
{
    [Theory]
    [InlineData(null)]
    [InlineData(1)]
    [InlineData(4)]
    public void Grouped_norm_checkpoint_reproduces_the_expected_logits_in_forward_and_decode(int? prefill)
    {
        string folder = Case("mamba2-grouped-norm");
        using var scope = NewDisposeScope();
        using var model = HybridForCausalLM.FromPretrained(folder);
        Assert.Equal(2, model.Config.MambaNGroups);
        var tokens = Scoring.ReadTokens(Path.Combine(folder, "tokens.json"), model.Config.VocabSize);
        var (data, shape) = Npy.ReadFloat32(Path.Combine(folder, "expected_logits.npy"));
        AssertClose(Scoring.Logits(model, tokens, prefill), tensor(data, shape), 1e-4, $"prefill {prefill}");
        using (enable_grad())   // the libtorch path (no fused kernel) must agree too
            AssertClose(Scoring.Logits(model, tokens, prefill).detach(), tensor(data, shape), 1e-4, $"autograd path, prefill {prefill}");
    }

    [Fact]
    public void Grouped_rms_norm_is_a_per_group_norm_by_hand()
    {
        var x = randn(3, 2, 12, generator: new TorchSharp.torch.Generator(5));
        var weight = randn(12, generator: new TorchSharp.torch.Generator(6));
        var norm = new Wren.Modules.RmsNorm(12, 1e-5, Wren.Modules.Placement.Cpu32, groups: 3);
        using (no_grad()) norm.Weight.copy_(weight);
        var expected = zeros(3, 2, 12);
        for (int g = 0; g < 3; g++)
        {
            var part = x.narrow(-1, 4 * g, 4);
            var normalized = part / (part.square().mean([-1], keepdim: true) + 1e-5).sqrt();
            expected.narrow(-1, 4 * g, 4).copy_(normalized * weight.narrow(0, 4 * g, 4));
        }
        using (no_grad()) AssertClose(norm.forward(x), expected, 1e-6, "fused kernel");
        AssertClose(norm.forward(x).detach(), expected, 1e-6, "libtorch");
    }
}
