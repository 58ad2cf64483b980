using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using Wren.Tokenization;

namespace Wren.Data;

/// <summary>A prepared dataset opened for training: the manifest and its two splits, memory-mapped.</summary>
public sealed class TokenDataset : IDisposable
{
    public string Folder { get; }
    public DataManifest Manifest { get; }
    internal TokenSplit Train { get; }
    internal TokenSplit Validation { get; }

    TokenDataset(string folder, DataManifest manifest, bool verify)
    {
        Folder = folder;
        Manifest = manifest;
        Train = new TokenSplit(folder, manifest.Train, manifest.TokenBytes, verify);
        try { Validation = new TokenSplit(folder, manifest.Validation, manifest.TokenBytes, verify); }
        catch { Train.Dispose(); throw; }
    }

    /// <summary>Opens <paramref name="folder"/>; every shard's size is checked, and with <paramref name="verify"/> its SHA-256
    /// too.</summary>
    public static TokenDataset Open(string folder, bool verify = true) => new(folder, DataManifest.Load(folder), verify);

    /// <summary>The tokenizer the dataset was prepared with (its tokenizer.json copy, or the tiktoken encoding).</summary>
    public TokenizerHandle OpenTokenizer()
    {
        var handle = TokenizerSource.Open(Manifest.Tokenizer.Kind == "tiktoken" ? Manifest.Tokenizer.Name : Path.Combine(Folder,
            DataManifest.TokenizerFile));
        Manifest.EnsureTokenizer(handle.Identity, "the dataset's tokenizer copy");
        return handle;
    }

    public void Dispose()
    {
        Train.Dispose();
        Validation.Dispose();
    }
}

/// <summary>The tokens of one split as one memory-mapped sequence across its shards.</summary>
internal sealed unsafe class TokenSplit : IDisposable
{
    readonly int width;
    readonly List<(MemoryMappedFile Map, MemoryMappedViewAccessor View, nint Data, long Start, long Tokens)> shards = [];

    public long Tokens { get; }

    internal TokenSplit(string folder, SplitInfo info, int width, bool verify)
    {
        this.width = width;
        try
        {
            long start = 0;
            foreach (var shard in info.Shards)
            {
                string path = Path.Combine(folder, shard.File);
                if (!File.Exists(path)) throw new WrenException($"{path}: shard missing (listed in {DataManifest.FileName})");
                long length = new FileInfo(path).Length;
                if (length != shard.Tokens * width)
                    throw new WrenException($"{path}: {length} bytes, but the manifest lists {shard.Tokens} tokens × {width} bytes = " +
                                            $"{shard.Tokens * width}: truncated or corrupt; prepare the data again");
                if (verify) Verify(path, shard);
                if (shard.Tokens == 0) continue;
                var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
                var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
                byte* data = null;
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref data);
                shards.Add((map, view, (nint)data, start, shard.Tokens));
                start += shard.Tokens;
            }
            if (start != info.Tokens) throw new WrenException($"{folder}: shards hold {start} tokens but the manifest says {info.Tokens}");
            Tokens = start;
        }
        catch { Dispose(); throw; }
    }

    static void Verify(string path, ShardInfo shard)
    {
        using var stream = File.OpenRead(path);
        string actual = Convert.ToHexStringLower(SHA256.HashData(stream));
        if (actual != shard.Sha256) throw new WrenException($"{path}: SHA-256 {actual[..12]}… does not match the manifest's " +
                                                            $"{shard.Sha256[..12]}…: the shard is corrupt; prepare the data again");
    }

    /// <summary>Copies tokens [start, start + destination.Length) into <paramref name="destination"/>, across shard boundaries.</summary>
    public void Read(long start, Span<long> destination)
    {
        if (start < 0 || start + destination.Length > Tokens) throw new ArgumentOutOfRangeException(nameof(start));
        int written = 0;
        foreach (var shard in shards)
        {
            if (written == destination.Length) break;
            long position = start + written;
            if (position >= shard.Start + shard.Tokens) continue;
            long offset = position - shard.Start;
            int count = (int)Math.Min(destination.Length - written, shard.Tokens - offset);
            if (width == 2)
            {
                var source = new ReadOnlySpan<ushort>((byte*)shard.Data + offset * 2, count);
                for (int i = 0; i < count; i++) destination[written + i] = source[i];
            }
            else
            {
                var source = new ReadOnlySpan<uint>((byte*)shard.Data + offset * 4, count);
                for (int i = 0; i < count; i++) destination[written + i] = source[i];
            }
            written += count;
        }
    }

    public void Dispose()
    {
        foreach (var shard in shards)
        {
            shard.View.SafeMemoryMappedViewHandle.ReleasePointer();
            shard.View.Dispose();
            shard.Map.Dispose();
        }
        shards.Clear();
    }
}
