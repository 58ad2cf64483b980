using Wren.Operators;

namespace Wren.Models;

/// <summary>
/// Layer-type names → operators. Adding an operator is one file (the module and its <see cref="OperatorSpec"/>) plus one
/// line in <see cref="BuiltIn"/>; config validation, footprint, initialization, latency table and search space follow.
/// </summary>
public static class OperatorRegistry
{
    static readonly OperatorSpec[] BuiltIn = [Attention.Spec, Mamba2.Spec, DeltaNet.Spec, GatedDeltaNet.Spec, Ffn.Spec,
                                                Mamba1.Spec, GatedLinearAttention.Spec, Mlstm.Spec, Rwkv7.Spec,
                                                Hymba.Spec];

    static readonly Lock Gate = new();
    static OperatorSpec[] specs = BuiltIn;

    static readonly Dictionary<string, string> Aliases = new() { ["m"] = "m2" };

    /// <summary>Every registered operator, built-in ones first.</summary>
    public static IReadOnlyList<OperatorSpec> All => specs;

    public static IEnumerable<string> Names => specs.Select(s => s.Name).Concat(Aliases.Keys);

    public static string Canonical(string name) => Aliases.GetValueOrDefault(name, name);

    public static bool IsKnown(string name) => specs.Any(s => s.Name == Canonical(name));

    public static OperatorSpec Get(string name) =>
        specs.FirstOrDefault(s => s.Name == Canonical(name))
        ?? throw new WrenException($"unknown layer type '{name}' (known: {string.Join(", ", Names)})");

    /// <summary>The operator of layer <paramref name="layer"/> of <paramref name="config"/>.</summary>
    public static OperatorSpec Of(HybridConfig config, int layer) => Get(config.LayerTypes[layer]);

    /// <summary>The operator a search-space mixer name stands for (see <see cref="OperatorSpec.SearchNames"/>), or null.</summary>
    public static (OperatorSpec Operator, SearchMixer Mixer)? ForSearchName(string mixer) =>
        specs.SelectMany(s => s.SearchNames.Select(m => (s, m))).FirstOrDefault(x => x.m.Name == mixer) is ({ } spec, { } found)
            ? (spec, found) : null;

    /// <summary>Every mixer name a search space may use.</summary>
    public static IEnumerable<string> SearchNames => specs.SelectMany(s => s.SearchNames.Select(m => m.Name));

    /// <summary>Adds an operator defined outside Wren (a plug-in, or a test's toy operator); its name must be new.</summary>
    public static void Register(OperatorSpec spec)
    {
        lock (Gate)
        {
            if (IsKnown(spec.Name)
                || Aliases.ContainsKey(spec.Name)) throw new WrenException($"layer type '{spec.Name}' is already registered");
            specs = [.. specs, spec];
        }
    }
}
