using System.Globalization;
using System.Text;
using static Wren.Constraints.ByteGrammar;

namespace Wren.Constraints;

/// <summary>
/// llama.cpp's GBNF (grammars/README.md there): <c>name ::= alternatives</c> rules, the start rule <c>root</c>, string
/// literals with <c>\n \t \r \\ \" \xHH \uHHHH \UHHHHHHHH</c> escapes, character classes <c>[a-z]</c> / <c>[^…]</c>, <c>.</c>
/// (any character), groups, <c>|</c>, the quantifiers <c>* + ? {m} {m,} {m,n}</c> and <c>#</c> comments. Characters are
/// code points matched as their UTF-8 bytes.
/// </summary>
public static class GbnfGrammar
{
    /// <exception cref="WrenException">A syntax error (with its line), an undefined rule, no <c>root</c>, left recursion, or a
    /// grammar that accepts no string.</exception>
    public static ByteGrammar Parse(string text)
    {
        var parser = new Parser(text);
        parser.Rules();
        return parser.Builder.Build();
    }

    sealed class Parser(string text)
    {
        public Builder Builder { get; } = new();
        readonly Dictionary<string, int> rules = [];
        int at, depth;

        WrenException Error(string message) =>
            new($"grammar line {text.AsSpan(0, Math.Min(at, text.Length)).Count('\n') + 1}: {message}");

        int RuleId(string name)
        {
            if (rules.TryGetValue(name, out int id)) return id;
            return rules[name] = Builder.NewRule(name);
        }

        public void Rules()
        {
            RuleId("root");
            Space(newlines: true);
            if (at >= text.Length) throw new WrenException("the grammar is empty: it needs at least a 'root ::= …' rule");
            while (at < text.Length)
            {
                var name = Name() ?? throw Error("a rule must start with a name");
                Space(newlines: false);
                if (string.Compare(text, at, "::=", 0, 3, StringComparison.Ordinal) != 0) throw Error($"expected '::=' after '{name}'");
                at += 3;
                int rule = RuleId(name);
                if (Builder.IsDefined(rule)) throw Error($"the rule '{name}' is defined twice");
                Builder.Define(rule);
                foreach (var alternative in Alternatives(nested: false)) Builder.Add(rule, alternative);
                Space(newlines: true);
            }
        }

        string? Name()
        {
            int start = at;
            while (at < text.Length && (char.IsAsciiLetterOrDigit(text[at]) || text[at] is '-' or '_')) at++;
            return at > start ? text[start..at] : null;
        }

        /// <summary>Skips blanks and comments; newlines too when <paramref name="newlines"/> (inside groups, between rules).</summary>
        void Space(bool newlines)
        {
            while (at < text.Length)
            {
                char c = text[at];
                if (c is ' ' or '\t' || newlines && c is '\r' or '\n') at++;
                else if (c == '#') { while (at < text.Length && text[at] != '\n') at++; }
                else if (!newlines && c is '\r' or '\n' && ContinuesOnNextLine()) at++;
                else break;
            }
        }

        /// <summary>A rule goes on over a line break unless the next line starts a new rule (<c>name ::=</c>).</summary>
        bool ContinuesOnNextLine()
        {
            int p = at;
            while (p < text.Length && text[p] is ' ' or '\t' or '\r' or '\n') p++;
            int start = p;
            while (p < text.Length && (char.IsAsciiLetterOrDigit(text[p]) || text[p] is '-' or '_')) p++;
            if (p == start) return p < text.Length && text[p] != '#';
            while (p < text.Length && text[p] is ' ' or '\t') p++;
            return string.Compare(text, p, "::=", 0, 3, StringComparison.Ordinal) != 0;
        }

        List<Symbol[]> Alternatives(bool nested)
        {
            var alternatives = new List<Symbol[]> { Sequence(nested) };
            while (at < text.Length && text[at] == '|')
            {
                at++;
                alternatives.Add(Sequence(nested));
            }
            return alternatives;
        }

        Symbol[] Sequence(bool nested)
        {
            var sequence = new List<Symbol>();
            while (true)
            {
                Space(nested);
                if (at >= text.Length || text[at] is '|' or ')' or '\n' or '\r') break;
                var atom = Atom();
                Space(nested);
                sequence.AddRange(Quantified(atom));
            }
            return sequence.ToArray();
        }

        Symbol[] Quantified(Symbol[] atom)
        {
            if (at >= text.Length) return atom;
            (int, int?)? count = text[at] switch { '*' => (0, null), '+' => (1, null), '?' => (0, 1), '{' => Braces(), _ => null };
            if (count is not { } c) return atom;
            at++;
            return Builder.Repeat("repeat", atom, c.Item1, c.Item2);
        }

        (int, int?) Braces()
        {
            int close = text.IndexOf('}', at);
            if (close < 0) throw Error("'{' without '}'");
            var parts = text[(at + 1)..close].Split(',').Select(p => p.Trim()).ToArray();
            static int? Number(string s) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : null;
            int min = Number(parts[0]) ?? throw Error("a count in braces needs a number");
            int? max = parts.Length == 1 ? min : parts[1].Length == 0 ? null : Number(parts[1]) ?? throw Error("bad count in braces");
            if (parts.Length > 2 || max < min) throw Error("bad count in braces");
            at = close;
            return (min, max);
        }

        Symbol[] Atom()
        {
            char c = text[at];
            if (c == '"')
            {
                at++;
                var bytes = new List<byte>();
                while (true)
                {
                    if (at >= text.Length || text[at] is '\n') throw Error("unterminated string literal");
                    if (text[at] == '"') { at++; break; }
                    bytes.AddRange(Encoding.UTF8.GetBytes(char.ConvertFromUtf32(Character())));
                }
                return Builder.Literal(bytes.ToArray());
            }
            if (c == '[')
            {
                at++;
                bool negated = at < text.Length && text[at] == '^';
                if (negated) at++;
                var ranges = new List<(int, int)>();
                while (true)
                {
                    if (at >= text.Length) throw Error("'[' without ']'");
                    if (text[at] == ']') { at++; break; }
                    int low = Character(), high = low;
                    if (at + 1 < text.Length && text[at] == '-' && text[at + 1] != ']')
                    {
                        at++;
                        high = Character();
                        if (high < low) throw Error("a class range runs backwards");
                    }
                    ranges.Add((low, high));
                }
                var set = CodePoints.Of(ranges);
                return [Builder.Chars(negated ? set.Complement() : set)];
            }
            if (c == '.') { at++; return [Builder.Chars(CodePoints.All)]; }
            if (c == '(')
            {
                if (++depth > 100) throw Error("groups nest more than 100 deep");
                at++;
                var group = Alternatives(nested: true);
                Space(newlines: true);
                if (at >= text.Length || text[at] != ')') throw Error("'(' without ')'");
                at++;
                depth--;
                return [Builder.Rule("group", group.ToArray())];
            }
            var name = Name() ?? throw Error($"unexpected '{c}'");
            return [Symbol.Ref(RuleId(name))];
        }

        /// <summary>One code point of a literal or class, escapes decoded.</summary>
        int Character()
        {
            if (text[at] != '\\')
            {
                int c = char.ConvertToUtf32(text, at);
                at += char.IsSurrogatePair(text, at) ? 2 : 1;
                return c;
            }
            if (++at >= text.Length) throw Error("a grammar cannot end with '\\'");
            char e = text[at++];
            int digits = e switch { 'x' => 2, 'u' => 4, 'U' => 8, _ => 0 };
            if (digits > 0)
            {
                if (at + digits > text.Length
                    || !int.TryParse(text.AsSpan(at, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int code)
                    || code > CodePoints.MaxCodePoint)
                    throw Error($"'\\{e}' needs {digits} hex digits");
                at += digits;
                return code;
            }
            return e switch
            {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' or '"' or '[' or ']' or '-' or '^' => e,
                _ => throw Error($"unknown escape '\\{e}'"),
            };
        }
    }
}
