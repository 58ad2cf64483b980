namespace Wren.Common;

/// <summary>Writes whole files atomically: readers see the old file or the new one, never a torn one.</summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="text"/> to a temporary file beside <paramref name="path"/>, then renames it over the path.</summary>
    public static void WriteAllText(string path, string text)
    {
        string temp = path + ".wren-tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }
}
