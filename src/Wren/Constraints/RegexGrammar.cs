using System.Globalization;
using static Wren.Constraints.ByteGrammar;

namespace Wren.Constraints;

/// <summary>
/// The common subset of ECMA-262 regular expressions (the dialect of JSON Schema's <c>pattern</c>) as grammar rules:
/// literals, <c>.</c>, classes (<c>[a-z]</c>, <c>[^…]</c>, <c>\d \w \s \D \W \S</c>), groups (<c>( )</c>, <c>(?: )</c>),
/// alternation, the quantifiers <c>* + ? {n} {n,} {n,m}</c> (lazy forms match the same strings) and the anchors
/// <c>^ $</c> at the ends. A side without its anchor matches any text there, as a JSON Schema pattern is a search.
/// Back-references, look-around and word boundaries are refused.
/// </summary>
internal sealed class RegexGrammar
{
    readonly string pattern;
    readonly Builder builder;
    readonly Func<CodePoints, Symbol> character;
    readonly string what;
    int at, depth;

    RegexGrammar(string pattern, Builder builder, Func<CodePoints, Symbol> character, string what)
    {
        this.pattern = pattern;
        this.builder = builder;
        this.character = character;
        this.what = what;
    }

    /// <summary>The symbols of a string the pattern matches, each character emitted by <paramref name="character"/>.</summary>
    /// <param name="what">How errors name the pattern (e.g. "pattern at #/properties/id").</param>
    /// <exception cref="WrenException">Syntax outside the subset, or a malformed pattern.</exception>
    public static Symbol[] Compile(string pattern, Builder builder, Func<CodePoints, Symbol> character, string what)
    {
        var parser = new RegexGrammar(pattern, builder, character, what);
        bool start = pattern.StartsWith('^');
        if (start) parser.at = 1;
        var body = parser.Alternation();
        bool end = parser.at == pattern.Length - 1 && pattern[parser.at] == '$';
        if (end) parser.at++;
        if (parser.at != pattern.Length) throw parser.Error($"unexpected '{pattern[parser.at]}'");
        var any = builder.Repeat("any", [character(CodePoints.All)], 0, null);
        return [.. start ? [] : any, .. body, .. end ? [] : any];
    }

    WrenException Error(string message) => new($"{what}: {message} at offset {at} of the regular expression '{pattern}'");

    bool More => at < pattern.Length;
    char Peek => pattern[at];

    Symbol[] Alternation()
    {
        var alternatives = new List<Symbol[]> { Sequence() };
        while (More && Peek == '|')
        {
            at++;
            alternatives.Add(Sequence());
        }
        return alternatives.Count == 1 ? alternatives[0] : [builder.Rule("alt", alternatives.ToArray())];
    }

    Symbol[] Sequence()
    {
        var sequence = new List<Symbol>();
        while (More && Peek != '|' && Peek != ')' && !(Peek == '$' && at == pattern.Length - 1))
        {
            var atom = Atom();
            sequence.AddRange(Quantified(atom));
        }
        return sequence.ToArray();
    }

    Symbol[] Quantified(Symbol[] atom)
    {
        if (!More) return atom;
        (int Min, int? Max)? count = Peek switch
        {
            '*' => (0, null),
            '+' => (1, null),
            '?' => (0, 1),
            '{' => Braces(),
            _ => null,
        };
        if (count is null) return atom;
        at++;   // past the quantifier (Braces leaves it at the '}')
        if (More && Peek == '?') at++;   // lazy: the same strings
        if (More && Peek is '*' or '+' or '?' or '{') throw Error("a quantifier cannot follow a quantifier");
        return builder.Repeat("repeat", atom, count.Value.Min, count.Value.Max);
    }

    (int, int?) Braces()
    {
        int close = pattern.IndexOf('}', at);
        if (close < 0) throw Error("'{' without '}'");
        var parts = pattern[(at + 1)..close].Split(',');
        static int? Number(string s) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : null;
        int min = Number(parts[0]) ?? throw Error("a count in braces needs a number");
        int? max = parts.Length == 1 ? min : parts[1].Length == 0 ? null : Number(parts[1]) ?? throw Error("bad count in braces");
        if (parts.Length > 2 || max < min) throw Error("bad count in braces");
        at = close;
        return (min, max);
    }

    Symbol[] Atom()
    {
        char c = pattern[at++];
        switch (c)
        {
            case '(':
                if (++depth > 100) throw Error("groups nest more than 100 deep");
                if (More && Peek == '?')
                {
                    if (at + 1 < pattern.Length && pattern[at + 1] == ':') at += 2;
                    else throw Error("look-around and named groups are not supported");
                }
                var inner = Alternation();
                if (!More || Peek != ')') throw Error("'(' without ')'");
                at++;
                depth--;
                return [builder.Rule("group", inner)];
            case '[':
                return [character(Class())];
            case '.':
                return [character(CodePoints.Single('\n').Complement())];
            case '\\':
                return [character(Escape(inClass: false))];
            case '^' or '$':
                throw Error($"'{c}' is supported only at the ends of the pattern");
            case ')' or '*' or '+' or '?' or '{':
                throw Error($"unexpected '{c}'");
            default:
                at--;
                return [character(CodePoints.Single(NextCodePoint()))];
        }
    }

    int NextCodePoint()
    {
        int c = char.ConvertToUtf32(pattern, at);
        at += char.IsSurrogatePair(pattern, at) ? 2 : 1;
        return c;
    }

    static readonly CodePoints Digits = CodePoints.Of(('0', '9'));
    static readonly CodePoints Word = CodePoints.Of(('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_'));
    static readonly CodePoints Space = CodePoints.Of(('\t', '\r'), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
        (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF));

    CodePoints Escape(bool inClass)
    {
        if (!More) throw Error("a pattern cannot end with '\\'");
        char c = pattern[at++];
        switch (c)
        {
            case 'd': return Digits;
            case 'D': return Digits.Complement();
            case 'w': return Word;
            case 'W': return Word.Complement();
            case 's': return Space;
            case 'S': return Space.Complement();
            case 'n': return CodePoints.Single('\n');
            case 't': return CodePoints.Single('\t');
            case 'r': return CodePoints.Single('\r');
            case 'f': return CodePoints.Single('\f');
            case 'v': return CodePoints.Single('\v');
            case 'u' when at + 4 <= pattern.Length
                          && int.TryParse(pattern.AsSpan(at, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int u):
                at += 4;
                return CodePoints.Single(u);
            case 'b' when inClass: return CodePoints.Single('\b');
            case >= '0' and <= '9' or 'b' or 'B' or 'k' or 'p' or 'P' or 'c' or 'x' or 'u':
                throw Error($"'\\{c}' is not supported");
            default:
                if (char.IsLetterOrDigit(c)) throw Error($"unknown escape '\\{c}'");
                return CodePoints.Single(c);
        }
    }

    CodePoints Class()
    {
        bool negated = More && Peek == '^';
        if (negated) at++;
        var ranges = new List<(int, int)>();
        bool firstItem = true;
        while (true)
        {
            if (!More) throw Error("'[' without ']'");
            if (Peek == ']' && !firstItem) { at++; break; }
            firstItem = false;
            var low = Member();
            if (More && Peek == '-' && at + 1 < pattern.Length && pattern[at + 1] != ']')
            {
                at++;
                var high = Member();
                if (low.Ranges is not [var (l, l2)] || l != l2 || high.Ranges is not [var (h, h2)] || h != h2)
                    throw Error("a class range needs single characters at both ends");
                if (h < l) throw Error("a class range runs backwards");
                ranges.Add((l, h));
            }
            else ranges.AddRange(low.Ranges);
        }
        var set = CodePoints.Of(ranges);
        return negated ? set.Complement() : set;
    }

    CodePoints Member()
    {
        if (Peek == '\\')
        {
            at++;
            return Escape(inClass: true);
        }
        return CodePoints.Single(NextCodePoint());
    }
}
