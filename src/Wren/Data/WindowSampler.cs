namespace Wren.Data;

/// <summary>
/// Training windows of <c>SequenceLength + 1</c> tokens at uniformly random positions. Batch <c>i</c> depends only on
/// (seed, i), so the data position of a run is just the number of batches drawn: resuming needs no sampler state.
/// </summary>
internal sealed class WindowSampler
{
    readonly TokenSplit split;
    readonly ulong seed;

    public int BatchSize { get; }
    public int SequenceLength { get; }

    public WindowSampler(TokenSplit split, int batchSize, int sequenceLength, long seed, string splitName = "train")
    {
        if (split.Tokens < sequenceLength + 1)
            throw new WrenException($"the {splitName} split holds {split.Tokens} tokens, fewer than one window of {sequenceLength + 1}; " +
                                    $"lower --seq-len or add data");
        this.split = split;
        this.seed = (ulong)seed;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
    }

    /// <summary>Batch number <paramref name="index"/>: [BatchSize × (SequenceLength + 1)] token ids, row-major.</summary>
    public long[] Batch(long index) => Batch(index, 0, BatchSize);

    /// <summary>
    /// Rows [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) of batch <paramref name="index"/>:
    /// [count × (SequenceLength + 1)] token ids. Row r is drawn from the generator state advanced r + 1 times, which
    /// SplitMix64 reaches directly (its state moves by a constant), so any share of a batch equals the same rows of the whole.
    /// </summary>
    public long[] Batch(long index, int first, int count)
    {
        if (first < 0 || count < 0 || first + count > BatchSize)
            throw new ArgumentOutOfRangeException(nameof(count), $"rows {first}..{first + count} of a batch of {BatchSize}");
        int width = SequenceLength + 1;
        var tokens = new long[count * width];
        ulong state = Mix(seed + Mix((ulong)index + 1)) + (ulong)first * Gamma;   // hashed, so consecutive batches share no rows
        long positions = split.Tokens - width + 1;
        for (int row = 0; row < count; row++)
            split.Read((long)(SplitMix64(ref state) % (ulong)positions), tokens.AsSpan(row * width, width));
        return tokens;
    }

    /// <summary><paramref name="count"/> windows spread evenly over a split (deterministic; for validation).</summary>
    public static long[] Evenly(TokenSplit split, int count, int sequenceLength, out int windows)
    {
        int width = sequenceLength + 1;
        if (split.Tokens < width) throw new WrenException($"the validation split holds {split.Tokens} tokens, fewer than one window of " +
                                                          $"{width}; lower --seq-len or raise the validation fraction");
        windows = (int)Math.Min(count, Math.Max(1, split.Tokens / width));
        var tokens = new long[windows * width];
        long last = split.Tokens - width;
        for (int i = 0; i < windows; i++)
            split.Read(windows == 1 ? 0 : last * i / (windows - 1), tokens.AsSpan(i * width, width));
        return tokens;
    }

    /// <summary>SplitMix64 (Steele et al.): a tiny, fixed generator, so sampling never changes with the .NET version.</summary>
    static ulong SplitMix64(ref ulong state) => Mix(state += Gamma);

    const ulong Gamma = 0x9E3779B97F4A7C15UL;

    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
