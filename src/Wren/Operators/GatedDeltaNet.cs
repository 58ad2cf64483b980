using TorchSharp;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Operators;

/// <summary>
/// Gated DeltaNet (Yang et al. 2024): DeltaNet plus a per-head decay
/// <c>g_t = −exp(A_log)·softplus(a_proj(x) + dt_bias)</c> applied to the state before the delta update, and an
/// output gate: <c>o_proj(RMSNorm(o) ⊙ silu(g_proj(x)))</c> (normalize, then gate). Wren layer type "gdn",
/// module name <c>gdn</c>; same heads as DeltaNet (num_attention_heads heads of H/nh).
/// </summary>
internal sealed class GatedDeltaNet : DeltaRuleMixer
{
    readonly Linear a_proj, g_proj;
#pragma warning disable IDE1006   // Hugging Face checkpoint names (A_log, D), so strict loading needs no key map
    readonly Parameter A_log, dt_bias;
#pragma warning restore IDE1006

    /// <summary>Layer type "gdn", module <c>gdn</c>: DeltaNet's state and projections, plus A = U(0, 16) and a Δ-bias as
    /// Mamba2's.</summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "gdn",
        ModuleName = "gdn",
        Description = "Gated DeltaNet (Wren extension)",
        Create = (config, layer, placement) => new GatedDeltaNet(config, layer, placement),
        Validate = ValidateConfig,
        StateBytes = StateBytesOf,
        Initialize = p => p.Name switch
        {
            "A_log" => Initialization.Uniform(p.Parameter, 0, 16, p.Generator).clamp_min(1e-6).log(),
            "dt_bias" => Initialization.TimestepBias(p.Parameter, p.Generator),
            _ => InitializeProjection(p),
        },
        SearchNames = [new("gdn")],
    };

    public GatedDeltaNet(HybridConfig config, int layer, Placement placement) : base(config, placement, nameof(GatedDeltaNet))
    {
        a_proj = new Linear(config.HiddenSize, heads, placement);
        g_proj = new Linear(config.HiddenSize, config.HiddenSize, placement);
        var fp32 = placement with { Dtype = ScalarType.Float32 };
        A_log = fp32.Empty(heads);
        dt_bias = fp32.Empty(heads);
        RegisterComponents();
    }

    protected override Tensor[] StepParameters => [A_log, dt_bias];

    public override Tensor forward(MixerInput input)
    {
        if (FormOf(input) == OperatorForm.Fused)
            return FusedStep(input.Hidden, (RecurrentState)input.State!, new StepGates(a_proj, g_proj, A_log, dt_bias));
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        var (q, k, v, beta, extra) = Project(input, a_proj, g_proj);
        var g = -A_log.exp() * nn.functional.softplus(extra[0].to(ScalarType.Float32) + dt_bias, 1.0, 20.0);   // [B, T, nh]
        if (input.Padding is not null) g = g * input.Padding.Mask.unsqueeze(-1);             // no decay on pads
        var o = Recur(q, k, v, beta, g, input);
        var normed = o_norm.forward(o).reshape(x.shape[0], x.shape[1], -1);
        return o_proj.forward(normed * nn.functional.silu(extra[1])).MoveToOuterDisposeScope();
    }
}
