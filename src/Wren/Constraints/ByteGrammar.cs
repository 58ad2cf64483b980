using System.Text;

namespace Wren.Constraints;

/// <summary>
/// A context-free grammar over bytes: rules whose alternatives are sequences of byte ranges and rule references. Every
/// constraint source (JSON Schema, regular expression, GBNF) compiles to one, so a token's bytes can be matched whatever
/// characters or grammar symbols they span. The start rule is rule 0.
/// </summary>
/// <remarks>
/// Symbols sit in one flat array; an alternative is a run of symbols ended by <see cref="SymbolKind.End"/>. This is
/// llama.cpp's grammar layout (llama-grammar.h: rules of element runs, each ending in END) with characters replaced by bytes.
/// Construction checks what the matcher relies on: every referenced rule is defined, no rule is left-recursive (the matcher
/// expands references eagerly, as llama.cpp's does), and the start rule derives at least one string.
/// </remarks>
public sealed class ByteGrammar
{
    internal enum SymbolKind : byte { End, Bytes, Rule }

    internal readonly record struct Symbol(SymbolKind Kind, byte Low, byte High, int Rule)
    {
        public static Symbol Range(byte low, byte high) => new(SymbolKind.Bytes, low, high, 0);
        public static Symbol Ref(int rule) => new(SymbolKind.Rule, 0, 0, rule);
        public static readonly Symbol EndOfAlternative = new(SymbolKind.End, 0, 0, 0);
    }

    internal ByteGrammar(Symbol[] symbols, int[][] alternatives, string[] names)
    {
        Symbols = symbols;
        Alternatives = alternatives;
        RuleNames = names;
    }

    internal Symbol[] Symbols { get; }
    /// <summary>Per rule: the start position of each alternative in <see cref="Symbols"/>.</summary>
    internal int[][] Alternatives { get; private set; }
    internal string[] RuleNames { get; }
    public int RuleCount => Alternatives.Length;
    public int SymbolCount => Symbols.Length;

    /// <summary>Builds rules one alternative at a time; <see cref="Build"/> checks and freezes them.</summary>
    internal sealed class Builder
    {
        /// <summary>Most symbols of one grammar: a schema or grammar past it is refused instead of exhausting memory.</summary>
        public const int MaxSymbols = 2_000_000;

        readonly List<List<Symbol[]>> rules = [];
        readonly List<string> names = [];
        readonly List<bool> defined = [];
        int symbols;

        public int NewRule(string name)
        {
            rules.Add([]);
            names.Add(name);
            defined.Add(false);
            return rules.Count - 1;
        }

        public string Name(int rule) => names[rule];
        public bool IsDefined(int rule) => defined[rule];

        /// <summary>Marks a rule as defined with no alternatives yet (alternatives are added by <see cref="Add"/>).</summary>
        public void Define(int rule) => defined[rule] = true;

        static WrenException TooLarge() =>
            new($"the grammar is too large: more than {MaxSymbols:N0} symbols (a smaller schema or grammar is needed)");

        public void Add(int rule, IEnumerable<Symbol> sequence)
        {
            var run = sequence.ToArray();
            symbols += run.Length + 1;
            if (symbols > MaxSymbols) throw TooLarge();
            rules[rule].Add(run);
            defined[rule] = true;
        }

        /// <summary>A new rule with the given alternatives; returns a reference to it.</summary>
        public Symbol Rule(string name, params IEnumerable<Symbol>[] alternatives)
        {
            int rule = NewRule(name);
            Define(rule);
            foreach (var a in alternatives) Add(rule, a);
            return Symbol.Ref(rule);
        }

        readonly Dictionary<string, Symbol> characterRules = [];

        /// <summary>One character of <paramref name="set"/> in UTF-8: a byte range, or a rule of byte-range sequences (one rule
        /// per set).</summary>
        /// <exception cref="WrenException">The set is empty.</exception>
        public Symbol Chars(CodePoints set)
        {
            if (set.IsEmpty) throw new WrenException("a character class matches no character");
            var key = set.ToString();
            if (characterRules.TryGetValue(key, out var known)) return known;
            var sequences = set.Utf8Sequences().ToList();
            return characterRules[key] = sequences is [[var single]] ? single : Rule("[" + key + "]", sequences.ToArray());
        }

        /// <summary>The bytes of <paramref name="text"/> in UTF-8, one single-byte range each.</summary>
        public static Symbol[] Literal(string text) => Literal(Encoding.UTF8.GetBytes(text));

        public static Symbol[] Literal(byte[] bytes) => bytes.Select(b => Symbol.Range(b, b)).ToArray();

        /// <summary><paramref name="item"/> repeated <paramref name="min"/> to <paramref name="max"/> times (null: unbounded).</summary>
        /// <remarks>Unbounded: R ::= item R | ε (right recursion: the matcher's stacks stay flat, see GrammarMatcher).
        /// Bounded: a chain of optional tails, O(max) rules.</remarks>
        public Symbol[] Repeat(string name, Symbol[] item, int min, int? max)
        {
            if (max is { } m && m < min) throw new WrenException($"{name}: the maximum count {m} is below the minimum {min}");
            // Checked before expanding: a count such as minLength 10⁹ would otherwise be materialized before Add sees it.
            long expanded = (long)(item.Length + 1) * min + (max is { } top ? (long)(top - min) * (item.Length + 2) : item.Length + 2);
            if (symbols + expanded > MaxSymbols) throw TooLarge();
            var head = Enumerable.Repeat(item, min).SelectMany(x => x);
            if (max is null)
            {
                int star = NewRule(name + "*");
                Add(star, [.. item, Symbol.Ref(star)]);
                Add(star, []);
                return [.. head, Symbol.Ref(star)];
            }
            Symbol[] tail = [];
            for (int i = min; i < max; i++) tail = [Rule($"{name}{{{i}}}", [.. item, .. tail], [])];
            return [.. head, .. tail];
        }

        public ByteGrammar Build()
        {
            for (int r = 0; r < rules.Count; r++)
                if (!defined[r]) throw new WrenException($"the grammar refers to an undefined rule '{names[r]}'");
            var flat = new List<Symbol>();
            var starts = new int[rules.Count][];
            for (int r = 0; r < rules.Count; r++)
            {
                starts[r] = new int[rules[r].Count];
                for (int a = 0; a < rules[r].Count; a++)
                {
                    starts[r][a] = flat.Count;
                    flat.AddRange(rules[r][a]);
                    flat.Add(Symbol.EndOfAlternative);
                }
            }
            var grammar = new ByteGrammar(flat.ToArray(), starts, names.ToArray());
            grammar.Check();
            return grammar;
        }
    }

    /// <summary>Productive rules (those deriving some string), then left recursion through nullable prefixes.</summary>
    /// <exception cref="WrenException">The start rule derives nothing, or a rule is left-recursive.</exception>
    void Check()
    {
        int n = RuleCount;
        var productive = new bool[n];
        var nullable = new bool[n];
        bool Derives(int start, bool[] known, bool nullOnly)
        {
            for (int p = start; Symbols[p].Kind != SymbolKind.End; p++)
            {
                var s = Symbols[p];
                if (s.Kind == SymbolKind.Bytes ? nullOnly : !known[s.Rule]) return false;
            }
            return true;
        }
        foreach (var (known, nullOnly) in new[] { (productive, false), (nullable, true) })
            for (bool changed = true; changed;)
            {
                changed = false;
                for (int r = 0; r < n; r++)
                    if (!known[r] && Alternatives[r].Any(a => Derives(a, known, nullOnly))) known[r] = changed = true;
            }
        if (n == 0 || !productive[0]) throw new WrenException("the grammar accepts no string");
        // Alternatives that derive nothing are dropped, so every state the matcher reaches can still be completed.
        Alternatives = Alternatives.Select(alts => alts.Where(a => Derives(a, productive, false)).ToArray()).ToArray();
        // Left edges: r → q when q can come first in r (after nullable rules only). A cycle is left recursion.
        var state = new byte[n];   // 0 unseen, 1 on the path, 2 done
        void Visit(int r, List<int> path)
        {
            if (path.Count > ParseStates.MaxDepth)
                throw new WrenException($"the grammar nests rule references more than {ParseStates.MaxDepth} deep");
            state[r] = 1;
            path.Add(r);
            foreach (var a in Alternatives[r])
                for (int p = a; Symbols[p].Kind == SymbolKind.Rule; p++)
                {
                    int q = Symbols[p].Rule;
                    if (state[q] == 1)
                        throw new WrenException("the grammar is left-recursive: " +
                                                string.Join(" → ", path.SkipWhile(x => x != q).Append(q).Select(x => RuleNames[x])) +
                                                " (rewrite it with repetition, e.g. item ::= x (\",\" x)*)");
                    if (state[q] == 0) Visit(q, path);
                    if (!nullable[q]) break;
                }
            path.RemoveAt(path.Count - 1);
            state[r] = 2;
        }
        for (int r = 0; r < n; r++)
            if (state[r] == 0) Visit(r, []);
    }
}
