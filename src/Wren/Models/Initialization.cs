using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// The reference initializations (HF <c>_init_weights</c>): each operator's own rules from its
/// <see cref="OperatorSpec.Initialize"/> first (Mamba2's A, D and Δ-bias, fla's xavier projections for DeltaNet, xLSTM's
/// zero residual norm weight, RWKV-7's depth-dependent vectors, …); then norms 1; depthwise conv weights PyTorch's default
/// U(±1/√K); projections and embeddings N(0, 0.02).
/// Parameters are visited in state-dict order and draw from one generator, so a seed gives the same weights.
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
            p.copy_(InitialValue(model.Config, name, p, generator));
        }
        model.InvalidateInferenceCaches();
    }

    static Tensor InitialValue(HybridConfig config, string name, Tensor p, Generator generator)
    {
        if (MixerParameter(config, name) is var (spec, layer, local)
            && spec.Initialize(new ParameterInit(local, p, config, generator, layer)) is { } own)
            return own;
        if (name.EndsWith("norm.weight", StringComparison.Ordinal)) return ones_like(p);
        if (name.EndsWith("conv1d.weight", StringComparison.Ordinal))
        {
            double bound = 1.0 / Math.Sqrt(p.shape[2]);   // weight [C, 1, K]
            return Uniform(p, -bound, bound, generator);
        }
        return randn(p.shape, ScalarType.Float32, generator: generator) * Std;
    }

    /// <summary>The operator owning <c>model.layers.{i}.{module}.{rest}</c>, i and <c>rest</c>, or null outside a mixer.</summary>
    static (OperatorSpec Spec, int Layer, string Local)? MixerParameter(HybridConfig config, string name)
    {
        const string prefix = "model.layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return null;
        var parts = name[prefix.Length..].Split('.', 3);
        if (parts.Length < 3 || !int.TryParse(parts[0], out int layer)) return null;
        var spec = OperatorRegistry.Of(config, layer);
        return spec.ModuleName == parts[1] ? (spec, layer, parts[2]) : null;
    }

    /// <summary>U(low, high) in float32 with the shape of <paramref name="like"/>.</summary>
    public static Tensor Uniform(Tensor like, double low, double high, Generator generator) =>
        rand(like.shape, ScalarType.Float32, generator: generator) * (high - low) + low;

    /// <summary>
    /// A (semi-)orthogonal matrix times <paramref name="gain"/> with the shape of <paramref name="like"/> (rows = dim 0, the
    /// rest flattened), as PyTorch's <c>nn.init.orthogonal_</c>: Q of the QR decomposition of a standard normal matrix
    /// (transposed when it is wide), its columns' signs fixed by R's diagonal.
    /// </summary>
    public static Tensor Orthogonal(Tensor like, double gain, Generator generator)
    {
        long rows = like.shape[0], cols = like.numel() / rows;
        var flat = randn([rows, cols], ScalarType.Float32, generator: generator);
        if (rows < cols) flat = flat.t();
        var (q, r) = linalg.qr(flat);
        q = q * r.diagonal().sign();
        if (rows < cols) q = q.t();
        return (q * gain).reshape(like.shape);
    }

    /// <summary>Δ-bias of Mamba2's reference: dt ~ logU(1e-3, 0.1) clamped ≥ 1e-4; returns dt + log(−expm1(−dt)) so that
    /// softplus(bias) = dt.</summary>
    public static Tensor TimestepBias(Tensor like, Generator generator)
    {
        var dt = Uniform(like, Math.Log(1e-3), Math.Log(0.1), generator).exp().clamp_min(1e-4);
        return dt + (-(-dt).expm1()).log();
    }
}
