using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// One parameter to initialize: its name inside the operator's module (e.g. <c>A_log</c>, <c>q_conv1d.weight</c>),
/// the parameter, the model config, the generator every draw must come from (one stream for the whole model) and the index
/// of the layer it belongs to (RWKV-7's initialization depends on depth).
/// </summary>
public sealed record ParameterInit(string Name, Tensor Parameter, HybridConfig Config, Generator Generator, int Layer);

/// <summary>A mixer name of the search space; <paramref name="SlidingWindow"/>: its layers get the space's sliding window.</summary>
public sealed record SearchMixer(string Name, bool SlidingWindow = false);

/// <summary>
/// Everything Wren needs to know about one layer type, kept next to its module (<c>Attention.Spec</c>, …) and listed
/// once in <see cref="OperatorRegistry"/>. Config validation, cache footprint, initialization, the latency table and the
/// search space read these members; none of them names an operator.
/// </summary>
public sealed record OperatorSpec
{
    /// <summary>The <c>layer_types</c> entry (e.g. "a", "m2").</summary>
    public required string Name { get; init; }

    /// <summary>HF module name under <c>model.layers.{i}.</c>; null for FFN-only layers.</summary>
    public string? ModuleName { get; init; }

    public required string Description { get; init; }

    /// <summary>Builds the mixer of layer <c>i</c>; null for FFN-only layers.</summary>
    public Func<HybridConfig, int, Placement, Mixer>? Create { get; init; }

    /// <summary>Checks the config keys this operator reads; calls the given <c>fail(message)</c> (which throws) on the first
    /// problem.</summary>
    public Action<HybridConfig, Action<string>> Validate { get; init; } = (_, _) => { };

    /// <summary>
    /// Bytes the decode state of layer <c>i</c> holds for one sequence that has seen <c>positions</c> positions (meta
    /// tokens included), with activations of <c>elementSize</c> bytes. Must equal what <see cref="Mixer.NewState"/> allocates.
    /// </summary>
    public Func<HybridConfig, int, long, int, long> StateBytes { get; init; } = (_, _, _, _) => 0;

    /// <summary>
    /// The operator's own initialization of one of its parameters (drawn from <see cref="ParameterInit.Generator"/>),
    /// or null to use the defaults of <see cref="Initialization"/> (norm weights 1, convs U(±1/√K), the rest N(0, 0.02)).
    /// </summary>
    public Func<ParameterInit, Tensor?> Initialize { get; init; } = _ => null;

    /// <summary>
    /// The variant of layer <c>i</c> that the latency table prices apart (attention: its sliding window), or null. The
    /// table key is <see cref="Name"/>, or <c>Name:variant</c> (<see cref="LatencyKey"/>).
    /// </summary>
    public Func<HybridConfig, int, string?> LatencyVariant { get; init; } = (_, _) => null;

    /// <summary>
    /// <c>(config, variant, layers)</c> → the config with the given layers (all of this type) set to that latency variant
    /// (null: the plain form): how the latency table builds probes and random architectures from its keys.
    /// </summary>
    public Func<HybridConfig, string?, IReadOnlyList<int>, HybridConfig> WithLatencyVariant { get; init; } = (config, _, _) => config;

    /// <summary>True when one layer's decode cost grows with the context (the table measures it at every context).</summary>
    public bool CostGrowsWithContext { get; init; }

    /// <summary>Mixer names a search space may use for this operator (e.g. "a" and "swa" for attention); empty: not searched.</summary>
    public IReadOnlyList<SearchMixer> SearchNames { get; init; } = [];

    /// <summary>The latency-table key of layer <paramref name="layer"/>: <c>Name</c> or <c>Name:variant</c>.</summary>
    public string LatencyKey(HybridConfig config, int layer) => LatencyVariant(config, layer) is { } v ? $"{Name}:{v}" : Name;

    /// <summary>Splits a latency-table key into its operator and variant.</summary>
    public static (OperatorSpec Operator, string? Variant) ParseLatencyKey(string key)
    {
        int colon = key.IndexOf(':');
        return colon < 0 ? (OperatorRegistry.Get(key), null) : (OperatorRegistry.Get(key[..colon]), key[(colon + 1)..]);
    }
}
