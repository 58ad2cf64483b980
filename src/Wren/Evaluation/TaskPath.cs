namespace Wren.Evaluation;

/// <summary>
/// A task or data file: on disk, or shipped inside the library (the repository's <c>tasks/</c> folder, embedded like the
/// <c>configs/</c> presets) so that <c>--tasks piqa</c> works without the repository.
/// </summary>
/// <param name="Path">A file path, or for shipped files the path under <c>tasks/</c> with '/' separators.</param>
/// <param name="Shipped">True for a file shipped in the library.</param>
public sealed record TaskPath(string Path, bool Shipped)
{
    const string ResourcePrefix = "Wren.Tasks.";

    /// <summary>How users see it: the path, or <c>tasks/…</c> for shipped files.</summary>
    public override string ToString() => Shipped ? "tasks/" + Path : Path;

    public bool Exists => Shipped ? Resources.ContainsKey(Path) : File.Exists(Path);

    public Stream Open()
    {
        if (!Shipped) return File.Exists(Path) ? File.OpenRead(Path) : throw new WrenException($"file not found: {Path}");
        return Resources.TryGetValue(Path, out var resource) && typeof(TaskPath).Assembly.GetManifestResourceStream(resource) is { } stream
            ? stream : throw new WrenException($"no shipped file tasks/{Path}");
    }

    public string ReadText()
    {
        using var reader = new StreamReader(Open());
        return reader.ReadToEnd();
    }

    /// <summary><paramref name="relative"/> resolved against this file's folder (absolute paths stay as they are).</summary>
    public TaskPath Sibling(string relative)
    {
        if (!Shipped)
        {
            string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!;
            return new TaskPath(System.IO.Path.GetFullPath(relative, folder), false);
        }
        if (System.IO.Path.IsPathRooted(relative)) return new TaskPath(relative, false);
        var parts = Path.Split('/').SkipLast(1).ToList();
        foreach (var part in relative.Replace('\\', '/').Split('/'))
        {
            if (part is "" or ".") continue;
            if (part == "..") { if (parts.Count > 0) parts.RemoveAt(parts.Count - 1); }
            else parts.Add(part);
        }
        return new TaskPath(string.Join('/', parts), true);
    }

    /// <summary>Shipped path ('/'-separated, whatever separator the build used) → resource name.</summary>
    static readonly Dictionary<string, string> Resources = typeof(TaskPath).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal))
        .ToDictionary(n => n[ResourcePrefix.Length..].Replace('\\', '/'), n => n, StringComparer.Ordinal);

    /// <summary>Paths of every shipped file under <c>tasks/</c> ('/'-separated).</summary>
    public static IReadOnlyCollection<string> ShippedFiles => Resources.Keys;
}
