using TorchSharp;
using Wren.Checkpoints;
using Wren.Inference;
using Wren.Interop;
using Wren.Models;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Models;

/// <summary>The public Nemotron-Flash checkpoint and the logits an exact implementation gives (tests/fixtures/README.md).</summary>
public class FixtureTests
{
    static string Case => Path.Combine(Fixtures, "nemotron-flash-example");

    [Theory]
    [InlineData(null)]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(40)]
    public void Reproduces_reference_logits(int? prefill)
    {
        Assert.True(Directory.Exists(Case), $"fixture missing: {Case}");
        using var scope = NewDisposeScope();
        using var model = HybridForCausalLM.FromPretrained(Case);
        var tokens = Scoring.ReadTokens(Path.Combine(Case, "tokens.json"), model.Config.VocabSize);
        var (data, shape) = Npy.ReadFloat32(Path.Combine(Case, "expected_logits.npy"));
        var expected = tensor(data, shape);
        var actual = Scoring.Logits(model, tokens, prefill);
        AssertClose(actual, expected, 1e-4, $"prefill {prefill?.ToString() ?? "none (full forward)"}");
    }

    [Fact]
    public void Bfloat16_load_stays_near_reference()
    {
        using var scope = NewDisposeScope();
        using var model = HybridForCausalLM.FromPretrained(Case, ScalarType.BFloat16);
        var tokens = Scoring.ReadTokens(Path.Combine(Case, "tokens.json"), model.Config.VocabSize);
        var (data, shape) = Npy.ReadFloat32(Path.Combine(Case, "expected_logits.npy"));
        var actual = Scoring.Logits(model, tokens);
        Assert.Equal(ScalarType.Float32, actual.dtype);
        Assert.True(RelativeRms(actual, tensor(data, shape)) < 0.05, "bf16 logits drift more than 5 % RMS");
    }
}
