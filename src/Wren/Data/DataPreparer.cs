using System.Diagnostics;
using System.Security.Cryptography;
using Wren.Tokenization;

namespace Wren.Data;

/// <summary>Settings of <c>wren data prepare</c>.</summary>
public sealed record PrepareOptions
{
    public CorpusFormat Format { get; init; } = new();
    /// <summary>Share of pieces (text pieces, JSONL records, Parquet rows) sent to validation: every k-th, k = round(1/fraction).</summary>
    public double ValidationFraction { get; init; } = 0.02;
    public long ShardTokens { get; init; } = 100_000_000;
    /// <summary>Replace a dataset in the output folder even when it was made with another tokenizer or from other inputs.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>Progress of a preparation: input bytes read of the total, tokens written, elapsed seconds.</summary>
public readonly record struct PrepareProgress(long BytesRead, long TotalBytes, long Tokens, double Seconds);

/// <summary>Tokenizes a corpus into binary shards (uint16 when the vocabulary fits, else uint32) plus a manifest, streaming.</summary>
public static class DataPreparer
{
    public static DataManifest Prepare(IEnumerable<string> inputs, string output, TokenizerHandle tokenizer, PrepareOptions options,
                                       IProgress<PrepareProgress>? progress = null, CancellationToken cancellation = default)
    {
        if (options.ValidationFraction is < 0 or >= 1)
            throw new WrenException($"the validation fraction must be in [0, 1), got {options.ValidationFraction}");
        if (options.ShardTokens < 1024) throw new WrenException($"shards must hold at least 1024 tokens, got {options.ShardTokens}");
        var files = CorpusReader.Files(inputs);
        if (!options.Overwrite) RefuseToReplaceAnother(output, tokenizer.Identity, files);
        Directory.CreateDirectory(output);
        File.Delete(Path.Combine(output, DataManifest.FileName));   // the folder is incomplete until the new manifest lands
        foreach (var stale in Directory.GetFiles(output, "*.bin")) File.Delete(stale);

        var identity = tokenizer.Identity;
        string dtype = identity.VocabularySize <= 65536 ? "uint16" : "uint32";
        int validationEvery = options.ValidationFraction == 0 ? 0 : Math.Max(1, (int)Math.Round(1 / options.ValidationFraction));
        long totalBytes = files.Sum(f => new FileInfo(f).Length);
        var clock = Stopwatch.StartNew();
        long bytesBefore = 0, pieces = 0;
        var sources = new List<SourceInfo>();
        using var train = new ShardWriter(output, "train", dtype, options.ShardTokens);
        using var validation = new ShardWriter(output, "validation", dtype, options.ShardTokens);
        foreach (var file in files)
        {
            long documents = 0, fileBytes = new FileInfo(file).Length, readChars = 0;
            foreach (var piece in CorpusReader.Read(file, options.Format))
            {
                cancellation.ThrowIfCancellationRequested();
                var ids = tokenizer.Tokenizer.Encode(piece.Text);
                var split = validationEvery > 0 && pieces % validationEvery == validationEvery / 2 ? validation : train;
                split.Append(ids, piece.EndsDocument ? identity.EndOfTextId : null);
                pieces++;
                if (piece.EndsDocument) documents++;
                readChars += piece.Text.Length;
                if (pieces % 16 == 0)
                    progress?.Report(new(bytesBefore + Math.Min(fileBytes, readChars), totalBytes, train.Tokens + validation.Tokens,
                                         clock.Elapsed.TotalSeconds));
            }
            bytesBefore += fileBytes;
            sources.Add(new SourceInfo(file, fileBytes, documents));
        }
        var trainInfo = train.Finish();
        var validationInfo = validation.Finish();
        if (trainInfo.Tokens == 0) throw new WrenException($"the corpus is empty: no text in {string.Join(", ", files)}");
        if (validationEvery > 0 && validationInfo.Tokens == 0)
            throw new WrenException($"the corpus has only {pieces} piece(s), too few for a validation share of " +
                                    $"{options.ValidationFraction}; add text or raise --validation-fraction");
        progress?.Report(new(totalBytes, totalBytes, trainInfo.Tokens + validationInfo.Tokens, clock.Elapsed.TotalSeconds));
        if (tokenizer.JsonPath is { } json && Path.GetFullPath(json) != Path.GetFullPath(Path.Combine(output, DataManifest.TokenizerFile)))
            File.Copy(json, Path.Combine(output, DataManifest.TokenizerFile), overwrite: true);
        var manifest = new DataManifest(DataManifest.CurrentFormat, dtype, identity, sources, trainInfo, validationInfo,
                                        options.ValidationFraction, DateTimeOffset.UtcNow);
        manifest.Save(output);
        return manifest;
    }

    /// <summary>
    /// A dataset folder is replaced in place only by the same preparation (same tokenizer, same inputs): a run trained on the
    /// old shards would otherwise continue on other ids without noticing.
    /// </summary>
    static void RefuseToReplaceAnother(string output, TokenizerIdentity tokenizer, IReadOnlyList<string> files)
    {
        if (!File.Exists(Path.Combine(output, DataManifest.FileName))) return;
        var existing = DataManifest.Load(output);
        string? difference = existing.Tokenizer.Sha256 != tokenizer.Sha256
            ? $"another tokenizer ({existing.Tokenizer.Kind} {existing.Tokenizer.Name}, SHA-256 {existing.Tokenizer.Sha256[..12]}…, " +
              $"not {tokenizer.Name}, {tokenizer.Sha256[..12]}…)"
            : !existing.Sources.Select(s => s.Path).SequenceEqual(files) ? "other inputs" : null;
        if (difference is not null)
            throw new WrenException($"{output} holds a dataset prepared with {difference}; choose another --out, or pass --overwrite " +
                                    "to replace it (runs trained on the old data will then refuse it)");
    }

    /// <summary>Appends tokens to <c>{split}-00000.bin</c>, … rolling over at the shard size; each shard lands atomically with its
    /// hash.</summary>
    sealed class ShardWriter(string folder, string split, string dtype, long shardTokens) : IDisposable
    {
        readonly List<ShardInfo> shards = [];
        FileStream? stream;
        IncrementalHash? hash;
        long shardCount, pieces;
        readonly byte[] buffer = new byte[1 << 16];
        int buffered;

        public long Tokens { get; private set; }

        public void Append(IReadOnlyList<int> ids, int? endOfText)
        {
            pieces++;
            foreach (var id in ids) Write(id);
            if (endOfText is { } eot) Write(eot);
        }

        void Write(int id)
        {
            if (stream is null)
            {
                stream = new FileStream(TempPath(shards.Count), FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
                hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            }
            int width = dtype == "uint16" ? 2 : 4;
            if (buffered + width > buffer.Length) Flush();
            if (width == 2) BitConverter.TryWriteBytes(buffer.AsSpan(buffered), (ushort)id);
            else BitConverter.TryWriteBytes(buffer.AsSpan(buffered), (uint)id);
            buffered += width;
            Tokens++;
            if (++shardCount == shardTokens) Close();
        }

        void Flush()
        {
            stream!.Write(buffer, 0, buffered);
            hash!.AppendData(buffer, 0, buffered);
            buffered = 0;
        }

        string FinalPath(int index) => Path.Combine(folder, $"{split}-{index:D5}.bin");
        string TempPath(int index) => FinalPath(index) + ".wren-tmp";

        void Close()
        {
            if (stream is null) return;
            Flush();
            stream.Flush(true);
            stream.Dispose();
            stream = null;
            File.Move(TempPath(shards.Count), FinalPath(shards.Count), overwrite: true);
            shards.Add(new ShardInfo(Path.GetFileName(FinalPath(shards.Count)), shardCount,
                                     Convert.ToHexStringLower(hash!.GetHashAndReset())));
            hash.Dispose();
            shardCount = 0;
        }

        public SplitInfo Finish()
        {
            Close();
            return new SplitInfo(Tokens, pieces, shards);
        }

        public void Dispose()
        {
            stream?.Dispose();
            hash?.Dispose();
        }
    }
}
