using Wren.Modules;
using Wren.Operators;

namespace Wren.Models;

/// <summary>One layer type: its config name, the state_dict name of its mixer module, and how to build it.</summary>
/// <param name="Name">The <c>layer_types</c> entry.</param>
/// <param name="ModuleName">HF module name under <c>model.layers.{i}.</c>; null for FFN-only layers.</param>
/// <param name="Create">Builds the mixer; null for FFN-only layers.</param>
public sealed record OperatorSpec(string Name, string? ModuleName, Func<HybridConfig, int, Placement, Mixer>? Create, string Description);

/// <summary>Layer-type names → operators. Adding an operator is one file plus one line here.</summary>
public static class OperatorRegistry
{
    static readonly OperatorSpec[] Specs =
    [
        new("a", "self_attn", (c, i, p) => new Attention(c, i, p), "softmax attention: GQA, RoPE, optional q/k norm and sliding window"),
        new("m2", "mamba", (c, i, p) => new Mamba2(c, i, p), "Mamba2 (chunked SSD)"),
        new("deltanet", "gla", (c, i, p) => new DeltaNet(c, i, p), "DeltaNet (chunked WY/UT delta rule)"),
        new("gdn", "gdn", (c, i, p) => new GatedDeltaNet(c, i, p), "Gated DeltaNet (Wren extension)"),
        new("f", null, null, "FFN-only layer"),
    ];

    static readonly Dictionary<string, string> Aliases = new() { ["m"] = "m2" };

    public static IEnumerable<string> Names => Specs.Select(s => s.Name).Concat(Aliases.Keys);

    public static string Canonical(string name) => Aliases.GetValueOrDefault(name, name);

    public static bool IsKnown(string name) => Specs.Any(s => s.Name == Canonical(name));

    public static OperatorSpec Get(string name) =>
        Specs.FirstOrDefault(s => s.Name == Canonical(name))
        ?? throw new WrenException($"unknown layer type '{name}' (known: {string.Join(", ", Names)})");
}
