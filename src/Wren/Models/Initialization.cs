using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// The reference initializations (operators.md, HF _init_weights): projections and embeddings N(0, 0.02);
/// DeltaNet/Gated DeltaNet projections xavier-uniform with gain 2^−2.5 (fla); depthwise convs PyTorch's
/// default U(±1/√K); norms 1; Mamba2 A = U(1, 16), D = 1, Δ-bias = softplus⁻¹(logU(1e-3, 0.1)) clamped ≥ 1e-4;
/// Gated DeltaNet A = U(0, 16). Dispatch is by the HF parameter name.
/// </summary>
public static class Initialization
{
    public const double Std = 0.02;

    public static void Apply(HybridForCausalLM model, long seed)
    {
        using var _ = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var (name, p) in model.named_parameters())
        {
            using var scope = NewDisposeScope();
            string leaf = name[(name.LastIndexOf('.') + 1)..];
            string owner = name.Contains('.') ? name[..name.LastIndexOf('.')] : "";
            Tensor value;
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) value = ones_like(p);
            else if (leaf == "A_log")
                value = (name.Contains(".mamba.") ? Uniform(p, 1, 16, generator) : Uniform(p, 0, 16, generator).clamp_min(1e-6)).log();
            else if (leaf == "D") value = ones_like(p);
            else if (leaf == "dt_bias") value = InverseSoftplusOfTimestep(p, generator);
            else if (owner.EndsWith("conv1d", StringComparison.Ordinal))
            {
                long kernel = leaf == "weight" ? p.shape[2] : model.Config.MambaDConv;   // only Mamba2's conv has a bias
                double bound = 1.0 / Math.Sqrt(kernel);
                value = Uniform(p, -bound, bound, generator);
            }
            else if ((name.Contains(".gla.") || name.Contains(".gdn.")) && leaf == "weight" && p.dim() == 2)
            {
                double gain = Math.Pow(2, -2.5), bound = gain * Math.Sqrt(6.0 / (p.shape[0] + p.shape[1]));
                value = Uniform(p, -bound, bound, generator);
            }
            else value = randn(p.shape, ScalarType.Float32, generator: generator) * Std;
            p.copy_(value);
        }
        model.InvalidateInferenceCaches();
    }

    static Tensor Uniform(Tensor like, double low, double high, Generator generator) =>
        rand(like.shape, ScalarType.Float32, generator: generator) * (high - low) + low;

    /// <summary>dt ~ logU(1e-3, 0.1), clamped ≥ 1e-4; returns dt + log(−expm1(−dt)) so that softplus(bias) = dt.</summary>
    static Tensor InverseSoftplusOfTimestep(Tensor like, Generator generator)
    {
        var dt = (Uniform(like, Math.Log(1e-3), Math.Log(0.1), generator)).exp().clamp_min(1e-4);
        return dt + (-(-dt).expm1()).log();
    }
}
