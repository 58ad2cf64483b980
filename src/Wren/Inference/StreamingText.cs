using Wren.Tokenization;

namespace Wren.Inference;

/// <summary>
/// The text of a growing list of generated ids, released piece by piece: text that ends in an incomplete UTF-8
/// character (U+FFFD) or could still become a stop string is held back; a stop string ends the text before it
/// (OpenAI's rule: the stop sequence is not returned).
/// </summary>
internal sealed class StreamingText(ITextTokenizer tokenizer, IReadOnlyList<string> stopStrings)
{
    readonly List<int> ids = [];
    int released;   // characters of the decoded text already returned

    /// <summary>Adds a token; returns the newly releasable text and whether a stop string was reached.</summary>
    public (string Delta, bool Stopped) Add(int id)
    {
        ids.Add(id);
        string text = tokenizer.Decode(ids);
        int cut = stopStrings.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        if (cut >= 0) return (cut > released ? text[released..cut] : "", true);
        int end = text.Length;
        if (text.EndsWith('\uFFFD')) end = text.TrimEnd('\uFFFD').Length;
        int hold = 0;                                          // a tail that may still grow into a stop string
        foreach (var stop in stopStrings)
            for (int k = Math.Min(stop.Length - 1, end); k > hold; k--)
                if (text.AsSpan(end - k, k).SequenceEqual(stop.AsSpan(0, k))) { hold = k; break; }
        end -= hold;
        if (end <= released) return ("", false);
        var delta = text[released..end];
        released = end;
        return (delta, false);
    }

    /// <summary>Everything still held back (at the end of generation: a partial stop string is real text).</summary>
    public string Flush()
    {
        string text = tokenizer.Decode(ids);
        var rest = text.Length > released ? text[released..] : "";
        released = text.Length;
        return rest;
    }
}
