using TorchSharp;
using Wren.Kernels;
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
        if (FormOf(input) == OperatorForm.Fused) return FusedStep(input.Hidden, (RecurrentState)input.State!, null);
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
internal abstract class DeltaRuleMixer : Mixer, IFusedDecoder
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

    /// <summary>Gated DeltaNet's part of the fused step: a_proj and g_proj, and A_log and dt_bias [nh] (float32).</summary>
    protected sealed record StepGates(Linear Decay, Linear Output, Tensor ALog, Tensor DtBias);

    /// <summary>The small parameters a subclass adds to the fused step (Gated DeltaNet: A_log and dt_bias).</summary>
    protected virtual Tensor[] StepParameters => [];

    public OperatorForm FormOf(MixerInput input)
    {
        var state = (RecurrentState?)input.State;
        return DecodeForm.Choose(input, state?.Recurrent,
            [.. state?.Conv ?? [], q_conv1d.Weight, k_conv1d.Weight, v_conv1d.Weight, o_norm.Weight, .. StepParameters]);
    }

    /// <summary>
    /// The fused decode step (<see cref="OperatorForm.Fused"/>): the q, k, v, b (and a, g) projections in one
    /// matrix–vector pass, then per head, in chunks over the kernel threads, one pass: the three conv steps and SiLU, the
    /// L2 norms (q scaled by d^(−1/2)), β = σ(b), the decay <c>e^g</c> with <c>g = −exp(A_log)·softplus(a + dt_bias)</c>,
    /// the delta-rule update and read-out (<see cref="DeltaRule.FusedHead"/>), the per-head RMSNorm and the output gate
    /// <c>silu(g)</c>; then o_proj. x [B, 1, hidden] float32; the state's tensors are updated in place. Tests hold it to the
    /// recurrent form and the chunked form.
    /// </summary>
    protected unsafe Tensor FusedStep(Tensor x, RecurrentState state, StepGates? gates)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], hidden = (long)heads * headDim;
        const int K = ConvKernel;
        for (int i = 0; i < 3; i++) KernelTensors.RequireInPlace(state.Conv[i], "conv state", ScalarType.Float32, B, hidden, K - 1);
        KernelTensors.RequireInPlace(state.Recurrent, "state", ScalarType.Float32, B, heads, headDim, headDim);
        Linear[] extra = gates is null ? [] : [gates.Decay, gates.Output];
        var projected = Linear.ProjectMany(x, [q_proj, k_proj, v_proj, b_proj, .. extra]).Select(t => t.contiguous()).ToArray();
        float* q = KernelTensors.Floats(projected[0]), k = KernelTensors.Floats(projected[1]), v = KernelTensors.Floats(projected[2]);
        float* bRaw = KernelTensors.Floats(projected[3]);
        float* aRaw = null, gate = null, aLog = null, dtBias = null;
        if (gates is not null)
        {
            aRaw = KernelTensors.Floats(projected[4]);
            gate = KernelTensors.Floats(projected[5]);
            aLog = KernelTensors.Floats(gates.ALog);
            dtBias = KernelTensors.Floats(gates.DtBias);
        }
        float* qHistory = KernelTensors.Floats(state.Conv[0]), kHistory = KernelTensors.Floats(state.Conv[1]);
        float* vHistory = KernelTensors.Floats(state.Conv[2]), S = KernelTensors.Floats(state.Recurrent);
        float* qWeight = KernelTensors.Floats(q_conv1d.Weight), kWeight = KernelTensors.Floats(k_conv1d.Weight);
        float* vWeight = KernelTensors.Floats(v_conv1d.Weight), normWeight = KernelTensors.Floats(o_norm.Weight);
        var o = empty(B, 1, hidden);
        float* po = KernelTensors.Floats(o);
        float scale = (float)Math.Pow(headDim, -0.5), eps = (float)o_norm.Eps;
        int d = headDim;
        StepMath.ForUnits(B * heads, (long)d * d, (begin, end) =>
        {
            float* u = stackalloc float[d];
            for (long bh = begin; bh < end; bh++)
            {
                long b = bh / heads, first = bh % heads * d, row = b * hidden, history = row * (K - 1);
                ShortConv.Step(q + row, qHistory + history, qWeight, null, first, first + d, K);
                ShortConv.Step(k + row, kHistory + history, kWeight, null, first, first + d, K);
                ShortConv.Step(v + row, vHistory + history, vWeight, null, first, first + d, K);
                float* qh = q + row + first, kh = k + row + first, oh = po + row + first;
                StepMath.L2Normalize(qh, d, scale);
                StepMath.L2Normalize(kh, d, 1f);
                long h = bh % heads;
                float decay = aRaw is null ? 1f : MathF.Exp(-MathF.Exp(aLog[h]) * StepMath.Softplus(aRaw[bh] + dtBias[h]));
                DeltaRule.FusedHead(qh, kh, v + row + first, StepMath.Sigmoid(bRaw[bh]), decay, S + bh * d * d, oh, u, d, d);
                StepMath.RmsNormalize(oh, normWeight, d, eps);
                if (gate is not null) for (long i = 0; i < d; i++) oh[i] *= StepMath.Silu(gate[row + first + i]);
            }
        });
        return o_proj.forward(o).MoveToOuterDisposeScope();
    }

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
