using System.Globalization;
using System.Text;

namespace Wren.Evaluation;

/// <summary>
/// Reads the Python literals that lm-evaluation-harness passes through <c>ast.literal_eval</c> after rendering a template
/// (<c>doc_to_choice: "{{[sol1, sol2]}}"</c> renders <c>['…', '…']</c>): strings in either quote style with Python's
/// escapes, integers, floats, <c>True</c>/<c>False</c>/<c>None</c>, lists, tuples and dicts. JSON is a subset of this and
/// reads too. Written here because no .NET package parses Python literals.
/// </summary>
public static class PythonLiteral
{
    /// <summary>The value of <paramref name="text"/> (lists as <c>List&lt;object?&gt;</c>, integers as long).
    /// Errors: <see cref="FormatException"/> naming the position.</summary>
    public static object? Parse(string text)
    {
        int i = 0;
        var value = Value(text, ref i);
        Skip(text, ref i);
        if (i != text.Length) throw new FormatException($"unexpected '{text[i]}' at {i} after the literal");
        return value;
    }

    static void Skip(string s, ref int i)
    {
        while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
    }

    static object? Value(string s, ref int i)
    {
        Skip(s, ref i);
        if (i >= s.Length) throw new FormatException("unexpected end of the literal");
        char c = s[i];
        if (c is '\'' or '"')
        {
            var text = new StringBuilder();
            while (i < s.Length && s[i] is '\'' or '"')   // adjacent literals concatenate, as in Python
            {
                text.Append(QuotedString(s, ref i));
                Skip(s, ref i);
            }
            return text.ToString();
        }
        if (c is '[' or '(') return Sequence(s, ref i, c == '[' ? ']' : ')');
        if (c == '{') return Dictionary(s, ref i);
        int start = i;
        while (i < s.Length && (char.IsLetterOrDigit(s[i]) || s[i] is '-' or '+' or '.' or '_')) i++;
        string word = s[start..i];
        if (word == "True" || word == "true") return true;
        if (word == "False" || word == "false") return false;
        if (word == "None" || word == "null") return null;
        string digits = word.Replace("_", "");
        if (long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long integer)) return integer;
        if (double.TryParse(digits, NumberStyles.Float, CultureInfo.InvariantCulture, out double real)) return real;
        throw new FormatException($"unexpected '{(word.Length > 0 ? word : c.ToString())}' at {start}");
    }

    static List<object?> Sequence(string s, ref int i, char close)
    {
        var items = new List<object?>();
        i++;
        while (true)
        {
            Skip(s, ref i);
            if (i < s.Length && s[i] == close) { i++; return items; }
            items.Add(Value(s, ref i));
            Skip(s, ref i);
            if (i < s.Length && s[i] == ',') { i++; continue; }
            if (i < s.Length && s[i] == close) { i++; return items; }
            throw new FormatException($"expected ',' or '{close}' at {i}");
        }
    }

    static Dictionary<string, object?> Dictionary(string s, ref int i)
    {
        var items = new Dictionary<string, object?>();
        i++;
        while (true)
        {
            Skip(s, ref i);
            if (i < s.Length && s[i] == '}') { i++; return items; }
            var key = Value(s, ref i);
            Skip(s, ref i);
            if (i >= s.Length || s[i] != ':') throw new FormatException($"expected ':' at {i}");
            i++;
            items[Convert.ToString(key, CultureInfo.InvariantCulture) ?? "None"] = Value(s, ref i);
            Skip(s, ref i);
            if (i < s.Length && s[i] == ',') { i++; continue; }
            if (i < s.Length && s[i] == '}') { i++; return items; }
            throw new FormatException($"expected ',' or '}}' at {i}");
        }
    }

    static string QuotedString(string s, ref int i)
    {
        char quote = s[i++];
        var text = new StringBuilder();
        while (true)
        {
            if (i >= s.Length) throw new FormatException("unterminated string");
            char c = s[i++];
            if (c == quote) return text.ToString();
            if (c != '\\') { text.Append(c); continue; }
            if (i >= s.Length) throw new FormatException("unterminated string");
            char e = s[i++];
            switch (e)
            {
                case 'n': text.Append('\n'); break;
                case 't': text.Append('\t'); break;
                case 'r': text.Append('\r'); break;
                case '0': text.Append('\0'); break;
                case 'a': text.Append('\a'); break;
                case 'b': text.Append('\b'); break;
                case 'f': text.Append('\f'); break;
                case 'v': text.Append('\v'); break;
                case '/': text.Append('/'); break;   // JSON
                case 'x': text.Append(CodePoint(s, ref i, 2)); break;
                case 'u': text.Append(CodePoint(s, ref i, 4)); break;
                case 'U': text.Append(CodePoint(s, ref i, 8)); break;
                case '\n': break;                    // line continuation
                default: text.Append(e is '\\' or '\'' or '"' ? e.ToString() : "\\" + e); break;
            }
        }
    }

    static string CodePoint(string s, ref int i, int digits)
    {
        if (i + digits > s.Length || !int.TryParse(s.AsSpan(i, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int code))
            throw new FormatException($"bad escape at {i}");
        i += digits;
        return code is >= 0xD800 and <= 0xDFFF ? ((char)code).ToString() : char.ConvertFromUtf32(code);   // JSON surrogate halves
    }
}
