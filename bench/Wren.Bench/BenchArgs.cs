namespace Wren.Bench;

/// <summary>The benchmarks' <c>--name value</c> options.</summary>
static class BenchArgs
{
    /// <summary>The value after <paramref name="name"/> in <paramref name="args"/>, or <paramref name="fallback"/> when absent.</summary>
    public static string Get(string[] args, string name, string fallback) =>
        Array.IndexOf(args, name) is var i && i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
