using TorchSharp;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// DeltaNet as Nemotron-Flash configures fla's layer: q/k/v projections each through a short conv (K=4, no
/// bias) and SiLU; q and k L2-normalized per head, q scaled by dk^(−1/2); β = sigmoid(b_proj(x)); the delta
/// rule (<see cref="DeltaRule"/>); per-head RMSNorm (shared weight, eps 1e-5); o_proj. HF module name: <c>gla</c>.
/// </summary>
internal sealed class DeltaNet : DeltaRuleMixer
{
    /// <summary>Layer type "deltanet", module <c>gla</c> (the released checkpoint's name).</summary>
    public static OperatorSpec Spec { get; } = new()
    {
        Name = "deltanet",
        ModuleName = "gla",
        Description = "DeltaNet (chunked WY/UT delta rule)",
        Create = (config, layer, placement) => new DeltaNet(config, layer, placement),
        Validate = ValidateConfig,
        StateBytes = StateBytesOf,
        Initialize = InitializeProjection,
        SearchNames = [new("deltanet")],
    };

    public DeltaNet(HybridConfig config, int layer, Placement placement) : base(config, placement, nameof(DeltaNet))
    {
        RegisterComponents();
    }

    public override Tensor forward(MixerInput input)
    {
        using var scope = NewDisposeScope();
        var (q, k, v, beta, _) = Project(input);
        var o = Recur(q, k, v, beta, null, input);
        return o_proj.forward(o_norm.forward(o).reshape(input.Hidden.shape[0], input.Hidden.shape[1], -1)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// What DeltaNet and Gated DeltaNet share: projections, short convs, q/k normalization, β, the per-head output
/// norm and the choice between the chunked and recurrent forms. Fields carry fla/HF names.
/// </summary>
internal abstract class DeltaRuleMixer : Mixer
{
    /// <summary>Kernel size of the q/k/v short convs (fla's default, which Nemotron-Flash keeps).</summary>
    public const int ConvKernel = 4;

    protected readonly Linear q_proj, k_proj, v_proj, b_proj, o_proj;
    protected readonly ShortConv q_conv1d, k_conv1d, v_conv1d;
    protected readonly RmsNorm o_norm;
    protected readonly int heads, headDim;

    protected DeltaRuleMixer(HybridConfig config, Placement placement, string name) : base(name)
    {
        int hidden = config.HiddenSize;
        heads = config.NumAttentionHeads;
        headDim = config.LinearHeadDim;
        q_proj = new Linear(hidden, hidden, placement);
        k_proj = new Linear(hidden, hidden, placement);
        v_proj = new Linear(hidden, hidden, placement);
        b_proj = new Linear(hidden, heads, placement);
        q_conv1d = new ShortConv(hidden, ConvKernel, withBias: false, placement);
        k_conv1d = new ShortConv(hidden, ConvKernel, withBias: false, placement);
        v_conv1d = new ShortConv(hidden, ConvKernel, withBias: false, placement);
        o_norm = new RmsNorm(headDim, 1e-5, placement);
        o_proj = new Linear(hidden, hidden, placement);
    }

    /// <summary>hidden_size divisible by num_attention_heads: DeltaNet heads are H / nh wide.</summary>
    protected static void ValidateConfig(HybridConfig c, Action<string> fail)
    {
        if (c.HiddenSize % c.NumAttentionHeads != 0)
            fail($"hidden_size ({c.HiddenSize}) must be divisible by num_attention_heads ({c.NumAttentionHeads}) for DeltaNet heads");
    }

    /// <summary>Per sequence: three conv histories [H, K−1] in the model dtype and the state [nh, d, d] in float32.</summary>
    protected static long StateBytesOf(HybridConfig c, int layer, long positions, int elementSize) =>
        3L * c.HiddenSize * (ConvKernel - 1) * elementSize + 4L * c.NumAttentionHeads * c.LinearHeadDim * c.LinearHeadDim;

    /// <summary>fla's initialization of the projections: xavier-uniform with gain 2^−2.5.</summary>
    protected static Tensor? InitializeProjection(ParameterInit p)
    {
        if (!p.Name.EndsWith("weight", StringComparison.Ordinal) || p.Parameter.dim() != 2) return null;
        double gain = Math.Pow(2, -2.5), bound = gain * Math.Sqrt(6.0 / (p.Parameter.shape[0] + p.Parameter.shape[1]));
        return Initialization.Uniform(p.Parameter, -bound, bound, p.Generator);
    }

    public override IMixerState NewState(CacheShape shape, Device device) =>
        new RecurrentState(
            [q_conv1d.NewState(shape.Batch, device), k_conv1d.NewState(shape.Batch, device), v_conv1d.NewState(shape.Batch, device)],
            zeros([shape.Batch, heads, headDim, headDim], ScalarType.Float32, device));

    /// <summary>
    /// q, k [B, T, nh, d] (L2-normed; q scaled), v [B, T, nh, d], β [B, T, nh] (0 on pads), and the outputs of
    /// <paramref name="extra"/> projections of the same input (fused with these at batch-1 decode). Time-first, as
    /// <see cref="DeltaRule"/> takes them: reshapes only, no transposes.
    /// </summary>
    protected (Tensor Q, Tensor K, Tensor V, Tensor Beta, Tensor[] Extra) Project(MixerInput input, params Linear[] extra)
    {
        var x = input.Hidden;
        long B = x.shape[0], T = x.shape[1];
        var state = (RecurrentState?)input.State;
        var projected = Linear.ProjectMany(x, [q_proj, k_proj, v_proj, b_proj, .. extra]);
        Tensor Heads(Tensor t) => t.reshape(B, T, heads, headDim);
        var q = Heads(q_conv1d.Forward(projected[0], state?.Conv[0], input.Padding));
        var k = Heads(k_conv1d.Forward(projected[1], state?.Conv[1], input.Padding));
        var v = Heads(v_conv1d.Forward(projected[2], state?.Conv[2], input.Padding));
        q = ChunkMath.L2Norm(q) * Math.Pow(headDim, -0.5);
        k = ChunkMath.L2Norm(k);
        var beta = nn.functional.sigmoid(projected[3]);                                  // [B, T, nh]
        if (input.Padding is not null) beta = beta * input.Padding.Mask.unsqueeze(-1);   // β = 0: pads leave S unchanged
        return (q, k, v, beta, projected[4..]);
    }

    /// <summary>Runs the delta rule in the form <see cref="DecodeForm"/> chooses, updates the state, returns [B, T, nh, d].</summary>
    protected Tensor Recur(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, MixerInput input)
    {
        var S = ((RecurrentState?)input.State)?.Recurrent;
        (Tensor Output, Tensor? State) result = DecodeForm.Choose(q.shape[1], S, q, k, v) switch
        {
            OperatorForm.Fused => (DeltaRule.FusedRecurrent(q, k, v, beta, g, S!), null),
            OperatorForm.Recurrent => DeltaRule.Recurrent(q, k, v, beta, g, S),
            _ => DeltaRule.Chunked(q, k, v, beta, g, S),
        };
        if (result.State is not null) S?.copy_(result.State);
        return result.Output.to(input.Hidden.dtype);
    }
}
