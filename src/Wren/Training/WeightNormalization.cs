using TorchSharp;
using Wren.Models;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Training;

/// <summary>Which side of a matrix is projected to unit norm: rows (output units) or columns (input units).</summary>
public enum NormalizedAxis { Rows, Columns }

/// <summary>A matrix that weight normalization keeps on the unit sphere.</summary>
public sealed record NormalizedMatrix(string Name, Parameter Weight, NormalizedAxis Axis)
{
    /// <summary>The L2 norm of every normalized row or column.</summary>
    public Tensor Norms() => Weight.detach().norm(Axis == NormalizedAxis.Rows ? 1 : 0, keepdim: false, p: 2);
}

/// <summary>
/// Weight normalization as the method defines it (Nemotron-Flash paper, weight normalization): after every optimizer step, project
/// weights onto the unit sphere, not a reparameterization.
/// <list type="bullet">
/// <item>Matrices that read the hidden state, each row to norm 1: every <c>*_proj</c> input projection (q/k/v, beta,
/// gates, Mamba2 <c>in_proj</c>, FFN gate/up) and <c>lm_head</c>.</item>
/// <item>Matrices whose output is added to the residual stream, each column to norm 1: <c>o_proj</c>, <c>out_proj</c>,
/// FFN <c>down_proj</c>; and the token embeddings, whose vectors are what the residual stream starts from (one per token).</item>
/// </list>
/// Norm weights, biases, convolutions, A_log/D/dt_bias and meta tokens are left alone.
/// </summary>
public static class WeightNormalization
{
    static readonly string[] ResidualWriters = ["o_proj", "out_proj", "down_proj"];

    public static IReadOnlyList<NormalizedMatrix> Targets(HybridForCausalLM model)
    {
        var targets = new List<NormalizedMatrix>();
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.dim() != 2 || !name.EndsWith(".weight", StringComparison.Ordinal)) continue;
            string owner = name[..^".weight".Length];
            string leaf = owner[(owner.LastIndexOf('.') + 1)..];
            // [V, H]: one residual vector per token
            if (name == "model.embed_tokens.weight") targets.Add(new(name, p, NormalizedAxis.Rows));
            else if (name == "lm_head.weight") targets.Add(new(name, p, NormalizedAxis.Rows));
            else if (ResidualWriters.Contains(leaf)) targets.Add(new(name, p, NormalizedAxis.Columns));
            else if (leaf.EndsWith("_proj", StringComparison.Ordinal)) targets.Add(new(name, p, NormalizedAxis.Rows));
        }
        return targets;
    }

    /// <summary>Projects every target onto unit-norm rows or columns, in place.</summary>
    public static void Apply(IReadOnlyList<NormalizedMatrix> targets)
    {
        using var _ = no_grad();
        foreach (var target in targets)
        {
            using var scope = NewDisposeScope();
            var norms = target.Weight.norm(target.Axis == NormalizedAxis.Rows ? 1 : 0, keepdim: true, p: 2).clamp_min(1e-12);
            target.Weight.div_(norms);
        }
    }

    /// <summary>Mean, min and max of the row/column norms over all targets (1, 1, 1 right after <see cref="Apply"/>).</summary>
    public static (double Mean, double Min, double Max) Statistics(IReadOnlyList<NormalizedMatrix> targets)
    {
        using var scope = NewDisposeScope();
        var all = cat(targets.Select(t => t.Norms()).ToArray());
        return (all.mean().item<float>(), all.min().item<float>(), all.max().item<float>());
    }
}
