namespace Wren.Common;

/// <summary>Two-objective Pareto fronts (both objectives minimized): the search's loss–latency front, the sweep's PPL–latency
/// frontier.</summary>
internal static class Pareto
{
    /// <summary>Items no other item beats in both objectives (ties kept), in input order.</summary>
    public static IEnumerable<T> Front<T>(IReadOnlyList<T> items, Func<T, double> first, Func<T, double> second) =>
        items.Where(a => !items.Any(b => first(b) <= first(a) && second(b) <= second(a) && (first(b) < first(a) || second(b) < second(a))));
}
