namespace Wren.Common;

/// <summary>Writes whole files atomically: readers see the old file or the new one, never a torn one.</summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="text"/> to a temporary file beside <paramref name="path"/>, then renames it over the path.</summary>
    public static void WriteAllText(string path, string text)
    {
        string temp = TempPath(path);
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The temporary file beside <paramref name="path"/> that an atomic write renames over it.</summary>
    /// <exception cref="WrenException">The folder of <paramref name="path"/> does not exist (named as the user gave it, not the
    /// temporary name the write would otherwise report).</exception>
    public static string TempPath(string path)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder)) throw new WrenException($"cannot write {path}: the folder {folder} does not exist");
        return path + ".wren-tmp";
    }
}
