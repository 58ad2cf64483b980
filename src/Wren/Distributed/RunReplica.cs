using System.Text;

namespace Wren.Distributed;

/// <summary>
/// Gives every rank rank 0's copy of the files a run starts from (training.json, the latest checkpoint), so the other
/// ranks need neither a shared file system nor write access to the run folder: rank 0 broadcasts the files and each other
/// rank writes them into its own replica folder (in the temporary folder; deleted with the trainer).
/// </summary>
internal static class RunReplica
{
    const int Piece = 64 << 20;

    /// <summary>A fresh replica folder for this rank.</summary>
    public static string CreateFolder(ProcessGroup group)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"wren-rank{group.Rank}-{Environment.ProcessId}");
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.CreateDirectory(folder);
        return folder;
    }

    /// <summary>Rank 0 sends <paramref name="files"/> (relative to <paramref name="source"/>); the other ranks write them under
    /// <paramref name="destination"/>. Every rank calls this.</summary>
    public static void Share(ProcessGroup group, string source, IReadOnlyList<string> files, string destination)
    {
        if (group.Size == 1) return;
        var names = Encoding.UTF8.GetString(group.Broadcast(group.IsRoot ? Encoding.UTF8.GetBytes(string.Join('\n', files)) : null,
                                                            "sharing the run's files")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        foreach (string name in names)
        {
            using var input = group.IsRoot ? File.OpenRead(Path.Combine(source, name)) : null;
            long length = BitConverter.ToInt64(group.Broadcast(group.IsRoot ? BitConverter.GetBytes(input!.Length) : null,
                                                               $"sharing {name}"));
            string target = Path.Combine(destination, name);
            if (!group.IsRoot) Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            using var output = group.IsRoot ? null : File.Create(target);
            var buffer = group.IsRoot ? new byte[(int)Math.Min(Piece, length)] : null;
            for (long done = 0; done < length; done += Piece)
            {
                byte[]? piece = null;
                if (group.IsRoot)
                {
                    int size = (int)Math.Min(Piece, length - done);
                    input!.ReadExactly(buffer.AsSpan(0, size));
                    piece = size == buffer!.Length ? buffer : buffer[..size];
                }
                var received = group.Broadcast(piece, $"sharing {name}");
                output?.Write(received);
            }
        }
    }
}
