namespace Wren.Cli.Commands;

/// <summary>Option values and printed quantities shared by several commands.</summary>
internal static class Formats
{
    /// <summary>A comma-separated list of whole numbers given to <paramref name="option"/>.</summary>
    public static int[] Ints(string text, string option)
    {
        try { return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(); }
        catch (FormatException) { throw new WrenException($"{option} takes a comma-separated list of whole numbers, got '{text}'"); }
    }

    /// <summary>Bytes in B, KiB, MiB or GiB.</summary>
    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:F1} KiB",
        _ => $"{bytes} B",
    };
}
