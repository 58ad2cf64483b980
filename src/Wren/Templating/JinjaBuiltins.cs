using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Wren.Templating;

/// <summary>
/// The filters, tests, globals and string/dict methods the supported subset provides, each behaving as its Jinja2 3.1
/// (or Python 3 <c>str</c>/<c>dict</c>) namesake; <c>tojson</c> is Hugging Face's override
/// (<c>json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)</c>) and <c>regex_replace</c> is
/// lm-evaluation-harness's (<c>re.sub</c>), <c>raise_exception</c> is Hugging Face's.
/// </summary>
static class JinjaBuiltins
{
    public delegate object? Filter(object? value, Arguments args);

    public delegate bool Test(object? value, Arguments args);

    public static IReadOnlyDictionary<string, Filter> Filters { get; } = new Dictionary<string, Filter>
    {
        ["trim"] = (v, a) => Strip(Py.Str(v), a.Get(0, "chars", null), true, true),
        ["length"] = (v, _) => Py.Length(v),
        ["count"] = (v, _) => Py.Length(v),
        ["join"] = Join,
        ["upper"] = (v, _) => Py.Str(v).ToUpperInvariant(),
        ["lower"] = (v, _) => Py.Str(v).ToLowerInvariant(),
        ["capitalize"] = (v, _) => Capitalize(Py.Str(v)),
        ["title"] = (v, _) => JinjaTitle(Py.Str(v)),
        ["default"] = Default,
        ["d"] = Default,
        ["tojson"] = (v, a) => ToJson(v, a),
        ["string"] = (v, _) => Py.Str(v),
        ["int"] = ToInt,
        ["float"] = ToFloat,
        ["abs"] = (v, _) => v switch
        {
            long l => (object?)Math.Abs(l),
            double d => Math.Abs(d),
            bool b => b ? 1L : 0L,
            _ => throw new JinjaRuntimeException($"bad operand type for abs(): '{Py.TypeName(v)}'"),
        },
        ["first"] = (v, a) => Py.Iterate(v) is { Count: > 0 } items ? items[0] : a.Undefined("No first item, sequence was empty."),
        ["last"] = (v, a) => Py.Iterate(v) is { Count: > 0 } items ? items[^1] : a.Undefined("No last item, sequence was empty."),
        ["list"] = (v, _) => Py.Iterate(v).ToList(),
        ["reverse"] = (v, _) => v is string s ? Py.Slice(s, null, null, -1L) : Py.Iterate(v).Reverse().ToList(),
        ["replace"] = (v, a) => Replace(Py.Str(v), a, "replace"),
        ["items"] = (v, _) => v switch
        {
            IReadOnlyDictionary<string, object?> dict => Items(dict),
            Undefined u => Use(u, new List<object?>()),
            _ => throw new JinjaRuntimeException($"Can only get item pairs from a mapping, not '{Py.TypeName(v)}'"),
        },
        ["selectattr"] = (v, a) => SelectAttribute(v, a, true),
        ["rejectattr"] = (v, a) => SelectAttribute(v, a, false),
        ["select"] = (v, a) => Select(v, a, true),
        ["reject"] = (v, a) => Select(v, a, false),
        ["map"] = Map,
        ["safe"] = (v, _) => v,
        ["regex_replace"] = RegexReplace,
    };

    public static IReadOnlyDictionary<string, Test> Tests { get; } = new Dictionary<string, Test>
    {
        ["defined"] = (v, _) => v is not Undefined,
        ["undefined"] = (v, _) => v is Undefined,
        ["none"] = (v, _) => v is null,
        ["string"] = (v, _) => v is string,
        ["number"] = (v, _) => Py.IsNumber(v),
        ["integer"] = (v, _) => v is long,
        ["float"] = (v, _) => v is double,
        ["boolean"] = (v, _) => v is bool,
        ["true"] = (v, _) => v is true,
        ["false"] = (v, _) => v is false,
        ["mapping"] = (v, _) => v is IReadOnlyDictionary<string, object?>,
        ["iterable"] = (v, _) => v is string or IReadOnlyList<object?> or IReadOnlyDictionary<string, object?> or Undefined,
        ["sequence"] = (v, _) => v is string or IReadOnlyList<object?> or IReadOnlyDictionary<string, object?>,
        ["callable"] = (v, _) => v is JinjaFunction,
        ["odd"] = (v, _) => Py.AsLong(v) % 2 != 0,
        ["even"] = (v, _) => Py.AsLong(v) % 2 == 0,
        ["divisibleby"] = (v, a) => Py.AsLong(v) % Py.AsLong(a.Required(0, "num", "divisibleby")) == 0,
        ["equalto"] = (v, a) => Py.Equal(v, a.Required(0, "other", "equalto")),
        ["eq"] = (v, a) => Py.Equal(v, a.Required(0, "other", "eq")),
        ["=="] = (v, a) => Py.Equal(v, a.Required(0, "other", "==")),
        ["ne"] = (v, a) => !Py.Equal(v, a.Required(0, "other", "ne")),
        ["!="] = (v, a) => !Py.Equal(v, a.Required(0, "other", "!=")),
        ["lt"] = (v, a) => Py.Compare(v, a.Required(0, "other", "lt"), "<") < 0,
        ["<"] = (v, a) => Py.Compare(v, a.Required(0, "other", "<"), "<") < 0,
        ["le"] = (v, a) => Py.Compare(v, a.Required(0, "other", "le"), "<=") <= 0,
        ["<="] = (v, a) => Py.Compare(v, a.Required(0, "other", "<="), "<=") <= 0,
        ["gt"] = (v, a) => Py.Compare(v, a.Required(0, "other", "gt"), ">") > 0,
        [">"] = (v, a) => Py.Compare(v, a.Required(0, "other", ">"), ">") > 0,
        ["ge"] = (v, a) => Py.Compare(v, a.Required(0, "other", "ge"), ">=") >= 0,
        [">="] = (v, a) => Py.Compare(v, a.Required(0, "other", ">="), ">=") >= 0,
        ["in"] = (v, a) => Py.Contains(a.Required(0, "seq", "in"), v),
        ["sameas"] = (v, a) => SameAs(v, a.Required(0, "other", "sameas")),
        ["lower"] = (v, _) => v is string s && s == s.ToLowerInvariant(),
        ["upper"] = (v, _) => v is string s && s == s.ToUpperInvariant(),
    };

    /// <summary>The globals every template sees (Jinja's <c>range</c>, <c>namespace</c>, <c>dict</c>;
    /// Hugging Face's <c>raise_exception</c> and <c>strftime_now</c>).</summary>
    public static Dictionary<string, object?> Globals(TimeProvider clock) => new()
    {
        ["strftime_now"] = new JinjaFunction("strftime_now", args =>
            Strftime(clock.GetLocalNow().DateTime, StringArgument(args.Required(0, "format", "strftime_now"), "strftime_now"))),
        ["range"] = new JinjaFunction("range", Range),
        ["namespace"] = new JinjaFunction("namespace", args =>
        {
            var ns = new Namespace();
            foreach (var item in args.Positional)
                foreach (var (key, value) in item as IReadOnlyDictionary<string, object?>
                         ?? throw new JinjaRuntimeException("namespace() takes a dict or keyword arguments"))
                    ns.Attributes[key] = value;
            foreach (var (key, value) in args.Named) ns.Attributes[key] = value;
            return ns;
        }),
        ["dict"] = new JinjaFunction("dict", args => new Dictionary<string, object?>(args.Named)),
        ["raise_exception"] = new JinjaFunction("raise_exception", args =>
            throw new WrenException(Py.Str(args.Required(0, "message", "raise_exception")))),
    };

    /// <summary>A bound method of a string or dict (Python's own), or null when <paramref name="obj"/> has none by that name.</summary>
    public static JinjaFunction? Method(object? obj, string name)
    {
        Func<Arguments, object?>? body = (obj, name) switch
        {
            (string s, "strip") => a => Strip(s, a.Get(0, "chars", null), true, true),
            (string s, "lstrip") => a => Strip(s, a.Get(0, "chars", null), true, false),
            (string s, "rstrip") => a => Strip(s, a.Get(0, "chars", null), false, true),
            (string s, "split") => a => Split(s, a.Get(0, "sep", null), a.Get(1, "maxsplit", -1L)),
            (string s, "startswith") => a =>
                Affixes(a.Required(0, "prefix", "startswith")).Any(p => s.StartsWith(p, StringComparison.Ordinal)),
            (string s, "endswith") => a =>
                Affixes(a.Required(0, "suffix", "endswith")).Any(p => s.EndsWith(p, StringComparison.Ordinal)),
            (string s, "upper") => _ => s.ToUpperInvariant(),
            (string s, "lower") => _ => s.ToLowerInvariant(),
            (string s, "title") => _ => PythonTitle(s),
            (string s, "capitalize") => _ => Capitalize(s),
            (string s, "replace") => a => Replace(s, a, "replace"),
            (string s, "find") => a => (long)s.IndexOf(StringArgument(a.Required(0, "sub", "find"), "find"), StringComparison.Ordinal),
            (string s, "count") => a => CountOccurrences(s, StringArgument(a.Required(0, "sub", "count"), "count")),
            (string s, "join") => a => string.Join(s, Py.Iterate(a.Required(0, "iterable", "join")).Select(x =>
                x as string ?? throw new JinjaRuntimeException($"sequence item: expected str instance, {Py.TypeName(x)} found"))),
            (string s, "splitlines") => _ => s.Split('\n').Select(line => (object?)line.TrimEnd('\r'))
                .Take(s.EndsWith('\n') ? s.Split('\n').Length - 1 : int.MaxValue).ToList(),
            (IReadOnlyList<object?> list, "index") => a => IndexOf(list, a.Required(0, "value", "index")),
            (IReadOnlyList<object?> list, "count") => a => (long)list.Count(x => Py.Equal(x, a.Required(0, "value", "count"))),
            (IReadOnlyDictionary<string, object?> d, "items") => _ => Items(d),
            (IReadOnlyDictionary<string, object?> d, "keys") => _ => d.Keys.Cast<object?>().ToList(),
            (IReadOnlyDictionary<string, object?> d, "values") => _ => d.Values.ToList(),
            (IReadOnlyDictionary<string, object?> d, "get") => a =>
                a.Required(0, "key", "get") is string key && d.TryGetValue(key, out var value) ? value : a.Get(1, "default", null),
            _ => null,
        };
        return body is null ? null : new JinjaFunction(name, body);
    }

    static readonly string[] DayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    static readonly string[] MonthNames =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    /// <summary>Python's <c>datetime.strftime</c> in the C locale (glibc's <c>%-d</c> drops the padding).</summary>
    public static string Strftime(DateTime time, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                sb.Append(format[i]);
                continue;
            }
            bool unpadded = format[i + 1] == '-' && i + 2 < format.Length;
            char code = format[unpadded ? i + 2 : i + 1];
            i += unpadded ? 2 : 1;
            string Number(int value, int width) => unpadded ? value.ToString(CultureInfo.InvariantCulture)
                : value.ToString(new string('0', width), CultureInfo.InvariantCulture);
            sb.Append(code switch
            {
                'a' => DayNames[(int)time.DayOfWeek][..3],
                'A' => DayNames[(int)time.DayOfWeek],
                'b' or 'h' => MonthNames[time.Month - 1][..3],
                'B' => MonthNames[time.Month - 1],
                'd' => Number(time.Day, 2),
                'e' => time.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'm' => Number(time.Month, 2),
                'Y' => time.Year.ToString(CultureInfo.InvariantCulture),
                'y' => Number(time.Year % 100, 2),
                'H' => Number(time.Hour, 2),
                'I' => Number(time.Hour % 12 == 0 ? 12 : time.Hour % 12, 2),
                'M' => Number(time.Minute, 2),
                'S' => Number(time.Second, 2),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'j' => Number(time.DayOfYear, 3),
                '%' => "%",
                _ => throw new JinjaRuntimeException($"strftime_now: unsupported format code '%{code}'"),
            });
        }
        return sb.ToString();
    }

    static T Use<T>(Undefined u, T value)
    {
        u.Use();
        return value;
    }

    static List<object?> Items(IReadOnlyDictionary<string, object?> dict) =>
        dict.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList();

    static object? IndexOf(IReadOnlyList<object?> list, object? value)
    {
        for (int i = 0; i < list.Count; i++)
            if (Py.Equal(list[i], value)) return (long)i;
        throw new JinjaRuntimeException($"{Py.Repr(value)} is not in list");
    }

    static string StringArgument(object? v, string function) =>
        v as string ?? throw new JinjaRuntimeException($"{function}() argument must be str, not {Py.TypeName(v)}");

    static IEnumerable<string> Affixes(object? v) => v is string s ? [s] : Py.Iterate(v).Select(x => StringArgument(x, "startswith"));

    static string Strip(string s, object? chars, bool left, bool right)
    {
        Func<char, bool> strip = chars switch
        {
            null => char.IsWhiteSpace,
            string set => set.Contains,
            _ => throw new JinjaRuntimeException($"strip arg must be None or str, not {Py.TypeName(chars)}"),
        };
        int start = 0, end = s.Length;
        if (left) while (start < end && strip(s[start])) start++;
        if (right) while (end > start && strip(s[end - 1])) end--;
        return s[start..end];
    }

    static List<object?> Split(string s, object? sep, object? maxsplit)
    {
        long max = Py.IsIntegral(maxsplit) ? Py.AsLong(maxsplit) : throw new JinjaRuntimeException("maxsplit must be an integer");
        if (sep is string separator)
        {
            if (separator.Length == 0) throw new JinjaRuntimeException("empty separator");
            string[] parts = max < 0 ? s.Split(separator) : s.Split(separator, (int)Math.Min(max + 1, int.MaxValue));
            return parts.Cast<object?>().ToList();
        }
        if (sep is not null) throw new JinjaRuntimeException($"must be str or None, not {Py.TypeName(sep)}");
        // Python's split on runs of whitespace: no empty strings, leading whitespace of the remainder dropped.
        var result = new List<object?>();
        int i = 0;
        while (true)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) break;
            if (max >= 0 && result.Count == max)
            {
                result.Add(s[i..]);
                break;
            }
            int start = i;
            while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
            result.Add(s[start..i]);
        }
        return result;
    }

    static string Replace(string s, Arguments a, string function)
    {
        string old = StringArgument(a.Required(0, "old", function), function);
        string replacement = StringArgument(a.Required(1, "new", function), function);
        object? count = a.Get(2, "count", null);
        long limit = count is null ? -1 : Py.AsLong(count);
        if (old.Length == 0) return InsertBetween(s, replacement, limit < 0 ? long.MaxValue : limit);
        if (limit < 0) return s.Replace(old, replacement, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int at = 0;
        for (long n = 0; n < limit; n++)
        {
            int next = s.IndexOf(old, at, StringComparison.Ordinal);
            if (next < 0) break;
            sb.Append(s, at, next - at).Append(replacement);
            at = next + old.Length;
        }
        return sb.Append(s, at, s.Length - at).ToString();
    }

    // Python's "abc".replace("", "-") puts the replacement before every character and at the end.
    static string InsertBetween(string s, string insert, long limit)
    {
        var sb = new StringBuilder();
        long n = 0;
        foreach (string c in Py.Characters(s).Cast<string>())
        {
            if (n++ < limit) sb.Append(insert);
            sb.Append(c);
        }
        if (n < limit) sb.Append(insert);
        return sb.ToString();
    }

    static long CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0) return Py.Characters(s).Count + 1;
        long n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    // Python's str.title(): a cased character after an uncased one starts a word.
    static string PythonTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsUpper(c) || char.IsLower(c);
        }
        return sb.ToString();
    }

    // Jinja's title filter: words begin after spaces, dashes and opening brackets.
    static string JinjaTitle(string s) => string.Concat(Regex.Split(s, @"([-\s({\[<]+)")
        .Where(part => part.Length > 0)
        .Select(part => char.ToUpperInvariant(part[0]) + part[1..].ToLowerInvariant()));

    static object? Default(object? v, Arguments a)
    {
        bool boolean = Py.Truthy(a.Get(1, "boolean", false));
        return v is Undefined || (boolean && !Py.Truthy(v)) ? a.Get(0, "default_value", "") : v;
    }

    static object? Join(object? v, Arguments a)
    {
        string separator = Py.Str(a.Get(0, "d", ""));
        object? attribute = a.Get(1, "attribute", null);
        var items = Py.Iterate(v).Select(x => attribute is null ? x : Attribute(x, attribute, a.Strict));
        return string.Join(separator, items.Select(Py.Str));
    }

    static object? ToInt(object? v, Arguments a)
    {
        object? fallback = a.Get(0, "default", 0L);
        long numberBase = Py.AsLong(a.Get(1, "base", 10L));
        switch (v)
        {
            case bool or long: return Py.AsLong(v);
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
                string text = s.Trim().Replace("_", "");
                try
                {
                    if (numberBase == 10) return long.Parse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
                    return Convert.ToInt64(text, (int)numberBase);
                }
                catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
                {
                    return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d)
                        ? (long)Math.Truncate(d)
                        : fallback;
                }
            default: return fallback;
        }
    }

    static object? ToFloat(object? v, Arguments a) => v switch
    {
        bool or long => Py.AsDouble(v),
        double d => d,
        string s when double.TryParse(s.Trim().Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
        _ => a.Get(0, "default", 0.0),
    };

    static bool SameAs(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        _ => ReferenceEquals(a, b),
    };

    static object? Range(Arguments args)
    {
        var bounds = args.Positional.Select(x => Py.IsIntegral(x) ? Py.AsLong(x)
            : throw new JinjaRuntimeException($"'{Py.TypeName(x)}' object cannot be interpreted as an integer")).ToList();
        (long start, long stop, long step) = bounds.Count switch
        {
            1 => (0L, bounds[0], 1L),
            2 => (bounds[0], bounds[1], 1L),
            3 => (bounds[0], bounds[1], bounds[2]),
            _ => throw new JinjaRuntimeException($"range expected 1 to 3 arguments, got {bounds.Count}"),
        };
        if (step == 0) throw new JinjaRuntimeException("range() arg 3 must not be zero");
        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            // The sandbox Hugging Face renders with refuses ranges longer than this (jinja2.sandbox.MAX_RANGE).
            if (result.Count == 100_000)
                throw new JinjaRuntimeException("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
            result.Add(i);
        }
        return result;
    }

    // An attribute path like "a.b" or "items.0", looked up item-first as Jinja's make_attrgetter does.
    static object? Attribute(object? item, object? path, bool strict)
    {
        if (path is long index) return Py.GetItem(item, index, strict);
        foreach (string part in Py.Str(path).Split('.'))
            item = Py.GetItem(item, long.TryParse(part, out long i) ? i : part, strict);
        return item;
    }

    static bool RunTest(object? value, Arguments a, int testAt)
    {
        if (a.Positional.Count <= testAt) return Py.Truthy(value);
        string name = Py.Str(a.Positional[testAt]);
        if (!Tests.TryGetValue(name, out var test)) throw new JinjaRuntimeException($"No test named '{name}'.");
        return test(value, new Arguments(a.Positional.Skip(testAt + 1).ToList(), [], a.Strict));
    }

    static object? SelectAttribute(object? v, Arguments a, bool keep)
    {
        object? path = a.Required(0, "attribute", keep ? "selectattr" : "rejectattr");
        return Py.Iterate(v).Where(item => RunTest(Attribute(item, path, a.Strict), a, 1) == keep).ToList();
    }

    static object? Select(object? v, Arguments a, bool keep) => Py.Iterate(v).Where(item => RunTest(item, a, 0) == keep).ToList();

    static object? Map(object? v, Arguments a)
    {
        if (a.Named.TryGetValue("attribute", out var path))
        {
            bool hasDefault = a.Named.TryGetValue("default", out var fallback);
            return Py.Iterate(v)
                .Select(item => Attribute(item, path, a.Strict) is var value && value is Undefined && hasDefault ? fallback : value)
                .ToList();
        }
        string name = Py.Str(a.Required(0, "filter", "map"));
        if (!Filters.TryGetValue(name, out var filter)) throw new JinjaRuntimeException($"No filter named '{name}'.");
        var rest = new Arguments(a.Positional.Skip(1).ToList(), a.Named, a.Strict);
        return Py.Iterate(v).Select(item => filter(item, rest)).ToList();
    }

    // lm-evaluation-harness's filter: re.sub(pattern, repl, string, count); Python's \1 and \g<name> become .NET's ${1} and ${name}.
    static object? RegexReplace(object? v, Arguments a)
    {
        string pattern = StringArgument(a.Required(0, "pattern", "regex_replace"), "regex_replace");
        string replacement = StringArgument(a.Required(1, "repl", "regex_replace"), "regex_replace");
        long count = Py.AsLong(a.Get(2, "count", 0L));
        string dotnet = Regex.Replace(replacement.Replace("$", "$$"), @"\\g<(\w+)>|\\(\d+)",
            m => "${" + (m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value) + "}");
        dotnet = Regex.Replace(dotnet, @"\\([nt\\])", m => m.Groups[1].Value switch { "n" => "\n", "t" => "\t", _ => "\\" });
        return new Regex(pattern).Replace(Py.Str(v), dotnet, count == 0 ? -1 : (int)count);
    }

    static string ToJson(object? v, Arguments a)
    {
        bool ensureAscii = Py.Truthy(a.Get(0, "ensure_ascii", false));
        object? indent = a.Get(1, "indent", null);
        string? indentText = indent switch
        {
            null => null,
            string s => s,
            _ when Py.IsIntegral(indent) => new string(' ', (int)Math.Max(0, Py.AsLong(indent))),
            _ => throw new JinjaRuntimeException($"tojson indent must be an integer or string, not {Py.TypeName(indent)}"),
        };
        object? separators = a.Get(2, "separators", null);
        var (itemSeparator, keySeparator) = separators is IReadOnlyList<object?> { Count: 2 } pair
            ? (Py.Str(pair[0]), Py.Str(pair[1]))
            : (indentText is null ? ", " : ",", ": ");
        bool sortKeys = Py.Truthy(a.Get(3, "sort_keys", false));
        var sb = new StringBuilder();
        new JsonWriter(sb, indentText, itemSeparator, keySeparator, sortKeys, ensureAscii).Write(v, 0);
        return sb.ToString();
    }

    /// <summary>Python's <c>json.dumps</c> layout (item and key separators, optional indent, key order kept or sorted).</summary>
    sealed class JsonWriter(StringBuilder sb, string? indent, string itemSeparator, string keySeparator, bool sortKeys, bool ensureAscii)
    {
        public void Write(object? v, int level)
        {
            switch (v)
            {
                case null: sb.Append("null"); break;
                case bool b: sb.Append(b ? "true" : "false"); break;
                case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d:
                    sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : Py.FloatRepr(d));
                    break;
                case string s: WriteString(s); break;
                case IReadOnlyList<object?> list:
                    WriteContainer('[', ']', list.Count, level, (i, inner) => Write(list[i], inner));
                    break;
                case IReadOnlyDictionary<string, object?> dict:
                    var pairs = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList() : dict.ToList();
                    WriteContainer('{', '}', pairs.Count, level, (i, inner) =>
                    {
                        WriteString(pairs[i].Key);
                        sb.Append(keySeparator);
                        Write(pairs[i].Value, inner);
                    });
                    break;
                default: throw new JinjaRuntimeException($"Object of type {Py.TypeName(v)} is not JSON serializable");
            }
        }

        void WriteContainer(char open, char close, int count, int level, Action<int, int> writeItem)
        {
            sb.Append(open);
            if (count == 0)
            {
                sb.Append(close);
                return;
            }
            for (int i = 0; i < count; i++)
            {
                if (i > 0) sb.Append(itemSeparator);
                if (indent is not null) sb.Append('\n').Insert(sb.Length, indent, level + 1);
                writeItem(i, level + 1);
            }
            if (indent is not null) sb.Append('\n').Insert(sb.Length, indent, level);
            sb.Append(close);
        }

        void WriteString(string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20 || (ensureAscii && c > 0x7e)) sb.Append($"\\u{(int)c:x4}");
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }
}
