using static Wren.Constraints.ByteGrammar;

namespace Wren.Constraints;

/// <summary>
/// The states of a pushdown recognizer for a <see cref="ByteGrammar"/>, built lazily as bytes arrive. A state is the set of
/// stacks the nondeterministic parse can be in (llama.cpp's <c>llama_grammar_stacks</c>, llama-grammar.cpp): a stack is a
/// list of grammar positions, the top one at a byte range and the ones below the positions to return to. Stacks and states
/// are interned, so equal states share one id and each (state, byte) transition is computed once.
/// </summary>
/// <remarks>
/// A reference in tail position returns straight to its caller's caller (no frame is pushed for an empty remainder), so
/// repetition written as right recursion (<c>R ::= x R | ε</c>) keeps stacks flat: the states inside a long string repeat,
/// and so do their cached masks. The empty stack (id 0) is the accepting one: the input so far is a complete string.
/// Not thread-safe: <see cref="TokenMasker"/> serializes its users.
/// </remarks>
internal sealed class ParseStates
{
    /// <summary>The transition to no state: the byte cannot continue any stack.</summary>
    public const int Dead = -1;
    const int Unknown = int.MinValue;
    /// <summary>Deepest chain of references (and returns) one closure follows.</summary>
    public const int MaxDepth = 2000;

    readonly ByteGrammar grammar;
    readonly List<(int Position, int Parent)> stacks = [(-1, -1)];
    readonly Dictionary<(int, int), int> stackIds = [];
    readonly List<int[]> states = [];
    readonly List<int[]> transitions = [];
    readonly Dictionary<int[], int> stateIds = new(new SetComparer());
    readonly HashSet<int> scratch = [];

    public ParseStates(ByteGrammar grammar)
    {
        this.grammar = grammar;
        foreach (int a in grammar.Alternatives[0]) Close(a, 0, scratch);
        Start = Intern(scratch);
    }

    public int Start { get; }
    public int Count => states.Count;

    /// <summary>Whether the bytes that led to <paramref name="state"/> form a string of the grammar.</summary>
    public bool Accepts(int state) => states[state][0] == 0;

    /// <summary>Whether some byte continues <paramref name="state"/> (false: complete, nothing may follow).</summary>
    public bool CanContinue(int state) => states[state].Length > (Accepts(state) ? 1 : 0);

    /// <summary>The state after <paramref name="b"/>, or <see cref="Dead"/>.</summary>
    public int Advance(int state, byte b)
    {
        var row = transitions[state];
        if (row[b] != Unknown) return row[b];
        scratch.Clear();
        foreach (int s in states[state])
        {
            if (s == 0) continue;
            var (position, parent) = stacks[s];
            var symbol = grammar.Symbols[position];
            if (b >= symbol.Low && b <= symbol.High) Close(position + 1, parent, scratch);
        }
        return row[b] = scratch.Count == 0 ? Dead : Intern(scratch);
    }

    /// <summary>Adds to <paramref name="output"/> the stacks reached from position <paramref name="position"/> above stack
    /// <paramref name="parent"/> once every reference is expanded and every finished alternative returned from.</summary>
    /// <exception cref="WrenException">References nest deeper than <see cref="MaxDepth"/> (the recursion would exhaust the
    /// stack).</exception>
    void Close(int position, int parent, HashSet<int> output, int depth = 0)
    {
        if (depth > MaxDepth) throw new WrenException($"the grammar nests rule references more than {MaxDepth} deep");
        var symbol = grammar.Symbols[position];
        switch (symbol.Kind)
        {
            case SymbolKind.Bytes:
                output.Add(Stack(position, parent));
                break;
            case SymbolKind.End when parent == 0:
                output.Add(0);
                break;
            case SymbolKind.End:
                var (returnTo, below) = stacks[parent];
                Close(returnTo, below, output, depth + 1);
                break;
            default:
                int next = grammar.Symbols[position + 1].Kind == SymbolKind.End ? parent : Stack(position + 1, parent);
                foreach (int a in grammar.Alternatives[symbol.Rule]) Close(a, next, output, depth + 1);
                break;
        }
    }

    int Stack(int position, int parent)
    {
        if (stackIds.TryGetValue((position, parent), out int id)) return id;
        stacks.Add((position, parent));
        return stackIds[(position, parent)] = stacks.Count - 1;
    }

    int Intern(HashSet<int> set)
    {
        var key = set.ToArray();
        Array.Sort(key);
        if (stateIds.TryGetValue(key, out int id)) return id;
        states.Add(key);
        var row = new int[256];
        Array.Fill(row, Unknown);
        transitions.Add(row);
        return stateIds[key] = states.Count - 1;
    }

    sealed class SetComparer : IEqualityComparer<int[]>
    {
        public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(int[] set)
        {
            var hash = new HashCode();
            foreach (int s in set) hash.Add(s);
            return hash.ToHashCode();
        }
    }
}
