using static Wren.Constraints.ByteGrammar;

namespace Wren.Constraints;

/// <summary>
/// A set of Unicode scalar values (code points less the surrogates U+D800–U+DFFF) as sorted, disjoint inclusive ranges, and
/// its UTF-8 form as byte-range sequences: the way a character class becomes bytes in a <see cref="ByteGrammar"/>.
/// </summary>
internal sealed class CodePoints
{
    public const int MaxCodePoint = 0x10FFFF;

    CodePoints(List<(int Low, int High)> ranges) => Ranges = ranges;

    public IReadOnlyList<(int Low, int High)> Ranges { get; }

    /// <summary>Every scalar value.</summary>
    public static CodePoints All { get; } = Of((0, MaxCodePoint));

    public bool IsEmpty => Ranges.Count == 0;

    /// <summary>The union of <paramref name="ranges"/> (in any order, overlapping or not), surrogates removed.</summary>
    public static CodePoints Of(params IEnumerable<(int Low, int High)> ranges)
    {
        var sorted = ranges.Where(r => r.Low <= r.High).OrderBy(r => r.Low).ToList();
        var merged = new List<(int Low, int High)>();
        foreach (var (low, high) in sorted)
            if (merged.Count > 0 && low <= merged[^1].High + 1) merged[^1] = (merged[^1].Low, Math.Max(merged[^1].High, high));
            else merged.Add((low, high));
        var result = new List<(int Low, int High)>();
        foreach (var (low, high) in merged)
        {
            if (low < 0xD800) result.Add((low, Math.Min(high, 0xD7FF)));
            if (high > 0xDFFF) result.Add((Math.Max(low, 0xE000), Math.Min(high, MaxCodePoint)));
        }
        return new CodePoints(result.Where(r => r.Low <= r.High).ToList());
    }

    public static CodePoints Single(int c) => Of((c, c));

    public CodePoints Union(CodePoints other) => Of(Ranges.Concat(other.Ranges));

    public CodePoints Complement()
    {
        var gaps = new List<(int, int)>();
        int next = 0;
        foreach (var (low, high) in Ranges)
        {
            gaps.Add((next, low - 1));
            next = high + 1;
        }
        gaps.Add((next, MaxCodePoint));
        return Of(gaps);
    }

    public CodePoints Minus(CodePoints other) => Of(Complement().Ranges.Concat(other.Ranges)).Complement();

    public bool Contains(int c) => Ranges.Any(r => c >= r.Low && c <= r.High);

    /// <summary>The UTF-8 encodings of the set: each sequence of byte ranges matches exactly the encodings of one sub-range.
    /// The split follows RFC 3629's length classes, then aligns each range to whole continuation-byte blocks (the method of
    /// Go's regexp/syntax and Russ Cox's utf8-ranges).</summary>
    public IEnumerable<Symbol[]> Utf8Sequences() => Ranges.SelectMany(r => Split(r.Low, r.High));

    static IEnumerable<Symbol[]> Split(int low, int high)
    {
        foreach (int limit in new[] { 0x7F, 0x7FF, 0xFFFF })
            if (low <= limit && high > limit)
                return Split(low, limit).Concat(Split(limit + 1, high));
        if (high <= 0x7F) return [[Symbol.Range((byte)low, (byte)high)]];
        int length = high <= 0x7FF ? 2 : high <= 0xFFFF ? 3 : 4;
        for (int i = 1; i < length; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((low & ~m) != (high & ~m))
            {
                if ((low & m) != 0) return Split(low, low | m).Concat(Split((low | m) + 1, high));
                if ((high & m) != m) return Split(low, (high & ~m) - 1).Concat(Split(high & ~m, high));
            }
        }
        var a = Encode(low, length);
        var b = Encode(high, length);
        return [a.Select((x, j) => Symbol.Range(x, b[j])).ToArray()];
    }

    static byte[] Encode(int c, int length) => length switch
    {
        2 => [(byte)(0xC0 | c >> 6), (byte)(0x80 | c & 0x3F)],
        3 => [(byte)(0xE0 | c >> 12), (byte)(0x80 | c >> 6 & 0x3F), (byte)(0x80 | c & 0x3F)],
        _ => [(byte)(0xF0 | c >> 18), (byte)(0x80 | c >> 12 & 0x3F), (byte)(0x80 | c >> 6 & 0x3F), (byte)(0x80 | c & 0x3F)],
    };

    public override string ToString() => string.Join(",", Ranges.Select(r => $"{r.Low:x}-{r.High:x}"));
}
