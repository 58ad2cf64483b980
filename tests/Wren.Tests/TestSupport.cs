using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Models;
using Wren.Runtime;
using static TorchSharp.torch;

namespace Wren.Tests;

internal static class TestSupport
{
    [ModuleInitializer]
    internal static void Init() => WrenRuntime.Initialize();

    /// <summary>The repository root (the folder holding Wren.slnx).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>The repository's test inputs, tests/fixtures (README.md there says where each came from).</summary>
    public static string Fixtures { get; } = Path.Combine(RepoRoot, "tests", "fixtures");

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Wren.slnx"))) return dir.FullName;
        throw new InvalidOperationException("Wren.slnx not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Runs the real CLI on <paramref name="args"/>: exit code and what it wrote to standard error.</summary>
    public static (int Code, string Error) Cli(params string[] args)
    {
        var error = new StringWriter();
        int code = Wren.Cli.WrenCli.RunAsync(args, error).GetAwaiter().GetResult();
        return (code, error.ToString());
    }

    /// <summary>A failing input from the fault survey, kept in tests/fixtures/cases (README there: the input and the rule).</summary>
    public static string Case(string name) => Path.Combine(Fixtures, "cases", name);

    public static string TempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "wren-tests", Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A small config exercising every option that matters; tweak with `with`.</summary>
    public static HybridConfig Config(params string[] layers) => new()
    {
        LayerTypes = layers.ToList(),
        HiddenSize = 64,
        VocabSize = 97,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        KqNorm = "rms",
        Rope = true,
        MambaDState = 16,
        Mamba2HeadDim = 16,
        FfnExpandRatio = 2.0,   // F = int(2·64) // 128 · 128 = 128
        MlpHiddenAct = "silu",
    };

    /// <summary>
    /// A model with reference initialization, then matrices scaled so that logits are far from trivially equal; matrices the
    /// reference leaves at zero (RWKV-7's o_proj and LoRA down-projections) are drawn N(0, 0.02) first, so no layer is silent.
    /// </summary>
    public static HybridForCausalLM RandomModel(HybridConfig config, long seed = 0)
    {
        var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed);
        var generator = new Generator((ulong)seed + 1);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (p.dim() >= 2 && !name.Contains("conv1d") && !name.Contains("A_log"))   // Mamba-1's A_log is [d_inner, N]
                {
                    if (!p.any().item<bool>()) p.copy_(randn(p.shape, generator: generator) * Initialization.Std);
                    p.mul_(8.0);
                }
        model.InvalidateInferenceCaches();
        model.eval();
        return model;
    }

    public static Tensor RandomTokens(long batch, long length, int vocab, long seed)
    {
        var generator = new Generator((ulong)seed);
        return randint(0, vocab, [batch, length], generator: generator);
    }

    /// <summary>The fixtures' acceptance rule: max|a − e| ≤ rtol · max(1, max|e|).</summary>
    public static void AssertClose(Tensor actual, Tensor expected, double rtol, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(actual.isfinite().all().item<bool>(), $"{what}: non-finite values");
        double scale = Math.Max(1.0, expected.abs().max().item<float>());
        double diff = (actual.to(ScalarType.Float64) - expected.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(diff <= rtol * scale, $"{what}: max |diff| = {diff:E3} > {rtol:E1} × {scale:F3}");
    }

    /// <summary>
    /// Gradients of <paramref name="loss"/> with respect to fresh copies of <paramref name="inputs"/>, computed through
    /// the <paramref name="reference"/> and the <paramref name="candidate"/> forms, agree to a relative RMS of 1e-3.
    /// </summary>
    public static void AssertGradientsAgree(Tensor[] inputs, Func<Tensor[], (Tensor Output, Tensor State)> reference,
                                            Func<Tensor[], (Tensor Output, Tensor State)> candidate, Tensor outputWeights)
    {
        Tensor[] Grads(Func<Tensor[], (Tensor Output, Tensor State)> form)
        {
            var leaves = inputs.Select(t => t.detach().clone().requires_grad_(true)).ToArray();
            var (output, state) = form(leaves);
            ((output * outputWeights).sum() + state.square().sum()).backward();
            return leaves.Select(t => t.grad ?? zeros_like(t)).ToArray();
        }
        var expected = Grads(reference);
        var actual = Grads(candidate);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(RelativeRms(actual[i], expected[i]) <= 1e-3,
                        $"gradient of input {i}: relative RMS {RelativeRms(actual[i], expected[i]):E2}");
    }

    /// <summary>Relative RMS error ‖a − b‖ / ‖b‖.</summary>
    public static double RelativeRms(Tensor a, Tensor b) =>
        ((a - b).square().sum().sqrt() / b.square().sum().sqrt().clamp_min(1e-30)).item<float>();
}

/// <summary>Tests that run CLI commands: Spectre.Console allows one live display (progress bar) per process at a time.</summary>
[CollectionDefinition("cli", DisableParallelization = true)]
public sealed class CliCollection;
