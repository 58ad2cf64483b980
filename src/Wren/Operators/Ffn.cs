using TorchSharp;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// Feed-forward block. "silu": <c>down(silu(gate(x)) ⊙ up(x))</c> (SwiGLU); "relu2": <c>down(relu(up(x))²)</c>.
/// </summary>
internal sealed class Ffn : nn.Module<Tensor, Tensor>
{
    /// <summary>Layer type "f": an FFN-only layer (no mixer, no state).</summary>
    public static OperatorSpec Spec { get; } = new() { Name = "f", Description = "FFN-only layer" };

    readonly Linear? gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;

    public Ffn(long hidden, long inner, string activation, Placement placement) : base(nameof(Ffn))
    {
        if (activation == "silu") gate_proj = new Linear(hidden, inner, placement);
        up_proj = new Linear(hidden, inner, placement);
        down_proj = new Linear(inner, hidden, placement);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor inner;
        if (gate_proj is null) inner = nn.functional.relu(up_proj.forward(x)).square();
        else
        {
            var gateAndUp = Linear.ProjectMany(x, gate_proj, up_proj);
            inner = nn.functional.silu(gateAndUp[0]) * gateAndUp[1];
        }
        return down_proj.forward(inner).MoveToOuterDisposeScope();
    }
}
