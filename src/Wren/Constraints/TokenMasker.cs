using System.Runtime.CompilerServices;
using Wren.Tokenization;

namespace Wren.Constraints;

/// <summary>
/// The vocabulary as a trie of token bytes, built once per tokenizer: walking it against a parse state visits each shared
/// prefix once and drops a whole subtree at the first byte the grammar refuses (the approach of llama.cpp's token trie and
/// xgrammar's per-tokenizer preprocessing).
/// </summary>
internal sealed class TokenTrie
{
    static readonly ConditionalWeakTable<TokenBytes, TokenTrie> Cache = new();

    // Node n's children are childLabel/childNode[childStart[n] .. childStart[n + 1]); its tokens tokens[tokenStart[n] ..].
    readonly int[] childStart, childNode, tokenStart, tokens;
    readonly byte[] childLabel;

    TokenTrie(TokenBytes vocabulary)
    {
        Vocabulary = vocabulary;
        var children = new List<SortedDictionary<byte, int>> { new() };
        var ending = new List<List<int>> { new() };
        for (int id = 0; id < vocabulary.Bytes.Count; id++)
        {
            if (vocabulary.Bytes[id] is not { Length: > 0 } bytes) continue;
            int node = 0;
            foreach (byte b in bytes)
            {
                if (!children[node].TryGetValue(b, out int next))
                {
                    next = children.Count;
                    children.Add(new());
                    ending.Add([]);
                    children[node][b] = next;
                }
                node = next;
            }
            ending[node].Add(id);
        }
        childStart = new int[children.Count + 1];
        tokenStart = new int[children.Count + 1];
        for (int n = 0; n < children.Count; n++)
        {
            childStart[n + 1] = childStart[n] + children[n].Count;
            tokenStart[n + 1] = tokenStart[n] + ending[n].Count;
        }
        childLabel = children.SelectMany(c => c.Keys).ToArray();
        childNode = children.SelectMany(c => c.Values).ToArray();
        tokens = ending.SelectMany(e => e).ToArray();
    }

    public TokenBytes Vocabulary { get; }
    public int NodeCount => childStart.Length - 1;

    public static TokenTrie For(TokenBytes vocabulary) => Cache.GetValue(vocabulary, v => new TokenTrie(v));

    /// <summary>Sets in <paramref name="mask"/> every token below <paramref name="limit"/> whose bytes <paramref name="advance"/>
    /// carries from <paramref name="state"/> to a live state.</summary>
    public void Walk(int state, Func<int, byte, int> advance, ulong[] mask, int limit)
    {
        var pending = new Stack<(int Node, int State)>();
        pending.Push((0, state));
        while (pending.TryPop(out var top))
            for (int c = childStart[top.Node]; c < childStart[top.Node + 1]; c++)
            {
                int next = advance(top.State, childLabel[c]);
                if (next == ParseStates.Dead) continue;
                int node = childNode[c];
                for (int t = tokenStart[node]; t < tokenStart[node + 1]; t++)
                    if (tokens[t] < limit) mask[tokens[t] >> 6] |= 1UL << (tokens[t] & 63);
                if (childStart[node + 1] > childStart[node]) pending.Push((node, next));
            }
    }
}

/// <summary>
/// Token masks of one grammar over one vocabulary: for a parse state, the tokens whose bytes keep the output a prefix of
/// some string of the grammar, cached per state. Stop tokens are handled by the caller (<see cref="GrammarCursor"/>).
/// Thread-safe: calls are serialized by a lock (the engine thread is the usual only caller).
/// </summary>
public sealed class TokenMasker
{
    /// <summary>Cached masks beyond which the cache is cleared (each holds vocabulary/8 bytes).</summary>
    const int MaxCachedMasks = 4096;

    readonly ParseStates states;
    readonly TokenTrie trie;
    readonly Dictionary<int, ulong[]> masks = [], firstMasks = [];
    readonly Func<int, byte, int> advance;

    /// <param name="vocabulary">Token bytes of the model's tokenizer (<see cref="ITextTokenizer.TokenBytes"/>).</param>
    /// <param name="modelVocabularySize">Rows of the model's logits (≥ the tokenizer's ids; padded rows are never allowed).</param>
    public TokenMasker(ByteGrammar grammar, TokenBytes vocabulary, int modelVocabularySize)
    {
        Grammar = grammar;
        states = new ParseStates(grammar);
        trie = TokenTrie.For(vocabulary);
        advance = states.Advance;
        VocabularySize = modelVocabularySize;
    }

    public ByteGrammar Grammar { get; }
    public int VocabularySize { get; }
    internal TokenBytes Vocabulary => trie.Vocabulary;
    internal object Gate { get; } = new();
    internal ParseStates States => states;

    /// <summary>A cursor at the grammar's start, for one completion.</summary>
    public GrammarCursor Start(IReadOnlyList<int> stopTokenIds) => new(this, stopTokenIds);

    /// <summary>The allowed tokens at <paramref name="state"/> as a bitset over the model's vocabulary (bit id of word id/64).</summary>
    /// <param name="first">The completion's first token: a decoder that strips the text's first space drops it from the token.</param>
    internal ulong[] Mask(int state, bool first)
    {
        first &= Vocabulary.StripsFirstSpace;
        var cache = first ? firstMasks : masks;
        if (cache.TryGetValue(state, out var mask)) return mask;
        if (cache.Count >= MaxCachedMasks) cache.Clear();
        mask = new ulong[(VocabularySize + 63) / 64];
        if (!first) trie.Walk(state, advance, mask, VocabularySize);
        else
            // A space-led first token contributes its remaining bytes: checked token by token (once per state).
            for (int id = 0; id < Math.Min(Vocabulary.Bytes.Count, VocabularySize); id++)
                if (Vocabulary.Bytes[id] is { Length: > 0 } bytes && Run(state, bytes[0] == (byte)' ' ? bytes.AsSpan(1) : bytes) >= 0)
                    mask[id >> 6] |= 1UL << (id & 63);
        return cache[state] = mask;
    }

    /// <summary>The state after <paramref name="bytes"/> (an empty span leaves it; a refused byte gives ParseStates.Dead).</summary>
    internal int Run(int state, ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0) return ParseStates.Dead;
        foreach (byte b in bytes)
            if ((state = states.Advance(state, b)) == ParseStates.Dead) break;
        return state;
    }
}

/// <summary>
/// Where one completion stands in its grammar: the allowed next tokens, and the state after each sampled token. Stop tokens
/// are allowed only where the output so far is a complete string of the grammar; when nothing can follow, the completion is
/// done (<see cref="IsComplete"/>).
/// </summary>
public sealed class GrammarCursor
{
    readonly TokenMasker masker;
    readonly int[] stops;
    int state;
    bool first = true;

    internal GrammarCursor(TokenMasker masker, IReadOnlyList<int> stopTokenIds)
    {
        this.masker = masker;
        stops = stopTokenIds.Where(id => id >= 0 && id < masker.VocabularySize).Distinct().ToArray();
        state = masker.States.Start;
    }

    /// <summary>The output so far is a string of the grammar and no byte may follow it.</summary>
    public bool IsComplete
    {
        get { lock (masker.Gate) return masker.States.Accepts(state) && !masker.States.CanContinue(state); }
    }

    /// <summary>The allowed tokens now: [V] with true where allowed (V = the model's vocabulary).</summary>
    public bool[] Allowed()
    {
        var allowed = new bool[masker.VocabularySize];
        lock (masker.Gate)
        {
            var mask = masker.Mask(state, first);
            for (int id = 0; id < allowed.Length; id++) allowed[id] = (mask[id >> 6] >> (id & 63) & 1) != 0;
            bool accepts = masker.States.Accepts(state);
            foreach (int id in stops) allowed[id] = accepts;
        }
        return allowed;
    }

    /// <summary>Moves past <paramref name="tokenId"/> (a stop token leaves the state as it is).</summary>
    /// <exception cref="InvalidOperationException">The token was not allowed (a caller that sampled outside the mask).</exception>
    public void Advance(int tokenId)
    {
        if (stops.Contains(tokenId)) return;
        lock (masker.Gate)
        {
            var bytes = masker.Vocabulary.Bytes[tokenId] ?? [];
            var span = first && masker.Vocabulary.StripsFirstSpace && bytes.Length > 0 && bytes[0] == (byte)' '
                ? bytes.AsSpan(1) : bytes.AsSpan();
            int next = masker.Run(state, span);
            if (next == ParseStates.Dead) throw new InvalidOperationException($"token {tokenId} does not continue the grammar");
            state = next;
            first = false;
        }
    }
}
