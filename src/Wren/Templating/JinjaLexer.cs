using System.Globalization;
using System.Text;

namespace Wren.Templating;

enum TokenKind { Data, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End }

readonly record struct Token(TokenKind Kind, string Text, int Offset)
{
    public bool Is(TokenKind kind, string text) => Kind == kind && Text == text;
    public bool IsName(string name) => Is(TokenKind.Name, name);
    public bool IsOperator(string op) => Is(TokenKind.Operator, op);
}

/// <summary>
/// Splits a template into text and tag tokens the way <c>jinja2.lexer.Lexer.tokeniter</c> does: newlines normalized to
/// <c>\n</c>, the trailing newline dropped unless kept, <c>-</c>/<c>+</c> whitespace control, trim_blocks and
/// lstrip_blocks, and tag ends found only outside brackets.
/// </summary>
sealed class JinjaLexer
{
    static readonly string[] Operators =
        ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", ".", ",", ":", "|", "(", ")",
         "[", "]", "{", "}"];

    readonly string source;
    readonly JinjaSettings settings;
    readonly List<Token> tokens = [];
    int pos;

    JinjaLexer(string source, JinjaSettings settings)
    {
        this.source = source;
        this.settings = settings;
    }

    /// <summary>The template source as Jinja sees it: \r\n and \r become \n; one trailing newline is dropped unless kept.</summary>
    public static string Normalize(string source, JinjaSettings settings)
    {
        string text = source.Replace("\r\n", "\n").Replace('\r', '\n');
        return !settings.KeepTrailingNewline && text.EndsWith('\n') ? text[..^1] : text;
    }

    public static List<Token> Tokenize(string normalized, JinjaSettings settings)
    {
        var lexer = new JinjaLexer(normalized, settings);
        lexer.Run();
        return lexer.tokens;
    }

    public static (int Line, int Column) Position(string normalized, int offset)
    {
        int line = 1, lineStart = 0;
        for (int i = 0; i < offset && i < normalized.Length; i++)
            if (normalized[i] == '\n') { line++; lineStart = i + 1; }
        return (line, offset - lineStart + 1);
    }

    JinjaSyntaxException Error(int offset, string message) => new(offset, message);

    void Run()
    {
        bool lineStarting = true;
        while (pos < source.Length)
        {
            int open = FindOpen(pos);
            if (open < 0)
            {
                tokens.Add(new Token(TokenKind.Data, source[pos..], pos));
                break;
            }
            char kind = source[open + 1];
            int inner = open + 2;
            char sign = inner < source.Length && source[inner] is '-' or '+' ? source[inner] : '\0';
            if (sign != '\0') inner++;
            string text = source[pos..open];
            if (sign == '-') text = text.TrimEnd();
            else if (sign != '+' && settings.LstripBlocks && kind != '{')
            {
                int lineBegin = text.LastIndexOf('\n') + 1;
                if ((lineBegin > 0 || lineStarting) && lineBegin < text.Length && text[lineBegin..].All(char.IsWhiteSpace))
                    text = text[..lineBegin];
            }
            if (text.Length > 0) tokens.Add(new Token(TokenKind.Data, text, pos));
            pos = inner;
            if (kind == '#') LexCommentEnd(open);
            else LexTag(open, kind == '%');
            lineStarting = source[pos - 1] == '\n';
        }
        tokens.Add(new Token(TokenKind.End, "", source.Length));
    }

    int FindOpen(int from)
    {
        for (int i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
            if (source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    void LexCommentEnd(int open)
    {
        int close = source.IndexOf("#}", pos, StringComparison.Ordinal);
        if (close < 0) throw Error(open, "missing end of comment tag '#}'");
        char sign = close > pos ? source[close - 1] : '\0';
        pos = close + 2;
        AfterBlockEnd(sign);
    }

    // What follows a block or comment end: "-" eats all whitespace, "+" nothing, otherwise trim_blocks eats one newline.
    void AfterBlockEnd(char sign)
    {
        if (sign == '-') SkipWhitespace();
        else if (sign != '+' && settings.TrimBlocks && pos < source.Length && source[pos] == '\n') pos++;
    }

    void SkipWhitespace()
    {
        while (pos < source.Length && char.IsWhiteSpace(source[pos])) pos++;
    }

    void LexTag(int open, bool block)
    {
        tokens.Add(new Token(block ? TokenKind.BlockBegin : TokenKind.VariableBegin, "", open));
        var brackets = new Stack<char>();
        while (true)
        {
            SkipWhitespace();
            if (pos >= source.Length) throw Error(open, block ? "missing end of block tag '%}'" : "missing end of output tag '}}'");
            if (brackets.Count == 0 && TryTagEnd(block)) return;
            int start = pos;
            char c = source[pos];
            if (c is '"' or '\'') tokens.Add(new Token(TokenKind.String, ReadString(), start));
            else if (char.IsAsciiDigit(c)) tokens.Add(ReadNumber());
            else if (char.IsAsciiLetter(c) || c == '_')
            {
                while (pos < source.Length && (char.IsAsciiLetterOrDigit(source[pos]) || source[pos] == '_')) pos++;
                tokens.Add(new Token(TokenKind.Name, source[start..pos], start));
            }
            else
            {
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(source, pos, o, 0, o.Length) == 0);
                if (op is null) throw Error(pos, $"unexpected character '{c}'");
                if (op is "(" or "[" or "{") brackets.Push(op is "(" ? ')' : op is "[" ? ']' : '}');
                else if (op is ")" or "]" or "}")
                {
                    if (brackets.Count == 0 || brackets.Pop() != op[0]) throw Error(pos, $"unexpected '{op}'");
                }
                pos += op.Length;
                tokens.Add(new Token(TokenKind.Operator, op, start));
            }
        }
    }

    bool TryTagEnd(bool block)
    {
        string end = block ? "%}" : "}}";
        int start = pos;
        char sign = source[pos] is '-' or '+' ? source[pos] : '\0';
        if (sign == '+' && !block) return false;
        int at = sign == '\0' ? pos : pos + 1;
        if (string.CompareOrdinal(source, at, end, 0, 2) != 0) return false;
        pos = at + 2;
        tokens.Add(new Token(block ? TokenKind.BlockEnd : TokenKind.VariableEnd, "", start));
        if (block) AfterBlockEnd(sign);
        else if (sign == '-') SkipWhitespace();
        return true;
    }

    Token ReadNumber()
    {
        int start = pos;
        while (pos < source.Length && (char.IsAsciiDigit(source[pos]) || source[pos] == '_')) pos++;
        bool isFloat = false;
        if (pos + 1 < source.Length && source[pos] == '.' && char.IsAsciiDigit(source[pos + 1]))
        {
            isFloat = true;
            pos++;
            while (pos < source.Length && (char.IsAsciiDigit(source[pos]) || source[pos] == '_')) pos++;
        }
        if (pos < source.Length && source[pos] is 'e' or 'E')
        {
            int mark = pos++;
            if (pos < source.Length && source[pos] is '+' or '-') pos++;
            if (pos < source.Length && char.IsAsciiDigit(source[pos]))
            {
                isFloat = true;
                while (pos < source.Length && char.IsAsciiDigit(source[pos])) pos++;
            }
            else pos = mark;
        }
        string text = source[start..pos].Replace("_", "");
        return new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, start);
    }

    // Python's unicode-escape decoding of a Jinja string literal; unknown escapes stay as written.
    string ReadString()
    {
        char quote = source[pos];
        int start = pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (pos >= source.Length) throw Error(start, "unterminated string literal");
            char c = source[pos++];
            if (c == quote) return sb.ToString();
            if (c != '\\' || pos >= source.Length)
            {
                sb.Append(c);
                continue;
            }
            char e = source[pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': break;
                case 'x': sb.Append(HexEscape(2, start)); break;
                case 'u': sb.Append(HexEscape(4, start)); break;
                case 'U': sb.Append(HexEscape(8, start)); break;
                case >= '0' and <= '7':
                    int value = e - '0';
                    for (int i = 0; i < 2 && pos < source.Length && source[pos] is >= '0' and <= '7'; i++)
                        value = value * 8 + (source[pos++] - '0');
                    sb.Append((char)value);
                    break;
                default: sb.Append('\\').Append(e); break;
            }
        }
    }

    string HexEscape(int digits, int literalStart)
    {
        if (pos + digits > source.Length
            || !int.TryParse(source.AsSpan(pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code)
            || code > 0x10FFFF)
            throw Error(literalStart, $"truncated \\{(digits == 2 ? 'x' : digits == 4 ? 'u' : 'U')} escape in string literal");
        pos += digits;
        return code is >= 0xD800 and <= 0xDFFF ? ((char)code).ToString() : char.ConvertFromUtf32(code);
    }
}

/// <summary>A syntax error at an offset of the normalized source (becomes a <see cref="WrenException"/> with line and column).</summary>
sealed class JinjaSyntaxException(int offset, string message) : Exception(message)
{
    public int Offset { get; } = offset;
}
