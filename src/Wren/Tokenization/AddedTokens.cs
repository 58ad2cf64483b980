namespace Wren.Tokenization;

/// <summary>
/// One entry of tokenizer.json's <c>added_tokens</c> (Hugging Face tokenizers' <c>AddedToken</c>): its text, the id written in
/// the file, whether it is a special (control) token, and its matching options.
/// </summary>
/// <param name="LeftStrip"><c>lstrip</c>: a match also takes the whitespace before it.</param>
/// <param name="RightStrip"><c>rstrip</c>: a match also takes the whitespace after it.</param>
/// <param name="SingleWord"><c>single_word</c>: it matches only where no word character touches it.</param>
public sealed record AddedToken(string Content, int Id, bool Special, bool LeftStrip, bool RightStrip, bool SingleWord);

/// <summary>One part of a prompt: text, or a control token (its text, e.g. <c>&lt;|im_start|&gt;</c>) that the prompt's
/// chat template wrote itself.</summary>
public readonly record struct PromptPiece(string Text, bool Control);

/// <summary>
/// Leftmost-longest, non-overlapping matches of a fixed set of strings in a text, as Hugging Face tokenizers finds added
/// tokens (<c>AddedVocabulary</c>: an Aho-Corasick automaton with <c>MatchKind::LeftmostLongest</c>): at the first position
/// where any string starts, the longest one starting there; the search goes on after it. A character trie, so a text costs
/// at most its length times the longest string's.
/// </summary>
internal sealed class LeftmostLongestMatcher<T>
{
    sealed class Node
    {
        public Dictionary<char, Node>? Next;
        public T? Value;
        public bool Terminal;
    }

    readonly Node root = new();

    public LeftmostLongestMatcher(IEnumerable<(string Text, T Value)> entries)
    {
        foreach (var (text, value) in entries)
        {
            if (text.Length == 0) continue;
            var node = root;
            foreach (char c in text)
            {
                node.Next ??= [];
                if (!node.Next.TryGetValue(c, out var child)) node.Next[c] = child = new Node();
                node = child;
            }
            (node.Value, node.Terminal) = (value, true);
        }
    }

    /// <summary>The matches in order: start index, length and the matched string's value.</summary>
    public IEnumerable<(int Start, int Length, T Value)> Matches(string text)
    {
        for (int i = 0; i < text.Length;)
        {
            int length = 0;
            T? value = default;
            var node = root;
            for (int j = i; j < text.Length && node.Next is { } next && next.TryGetValue(text[j], out node); j++)
                if (node.Terminal) (length, value) = (j - i + 1, node.Value);
            if (length == 0)
            {
                i++;
                continue;
            }
            yield return (i, length, value!);
            i += length;
        }
    }
}
