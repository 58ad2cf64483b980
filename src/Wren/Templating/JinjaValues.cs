using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Wren.Templating;

/// <summary>A runtime error without a position: the statement that hit it adds the line and column.</summary>
sealed class JinjaRuntimeException(string message) : Exception(message);

/// <summary>Jinja's <c>Undefined</c> (or <c>StrictUndefined</c>): renders as nothing and is falsy, unless strict.</summary>
sealed class Undefined(string message, bool strict)
{
    /// <summary>Throws for strict undefined values (every use but <c>is defined</c> and <c>default</c>).</summary>
    public void Use()
    {
        if (strict) throw new JinjaRuntimeException(message);
    }

    public JinjaRuntimeException Fail() => new(message);
}

/// <summary>A Python tuple (a tuple literal, a dict item pair): a list that prints as <c>(a, b)</c>.</summary>
sealed class PyTuple(IEnumerable<object?> items) : List<object?>(items);

/// <summary>The object <c>namespace(...)</c> makes: the one value a template may assign attributes on.</summary>
sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = [];
}

/// <summary>A callable value: a global function, a bound method of a string or dict, or a macro.</summary>
sealed class JinjaFunction(string name, Func<Arguments, object?> invoke)
{
    public string Name => name;
    public object? Invoke(Arguments args) => invoke(args);
}

/// <summary>The arguments of a call, filter or test (Python's positional-or-keyword binding).</summary>
sealed class Arguments(List<object?> positional, Dictionary<string, object?> named, bool strict)
{
    public List<object?> Positional => positional;
    public Dictionary<string, object?> Named => named;
    public bool Strict => strict;

    public object? Get(int index, string name, object? fallback) =>
        index < positional.Count ? positional[index] : named.TryGetValue(name, out var value) ? value : fallback;

    public object? Required(int index, string name, string function) =>
        index < positional.Count ? positional[index]
        : named.TryGetValue(name, out var value) ? value
        : throw new JinjaRuntimeException($"{function}() missing required argument '{name}'");

    public Undefined Undefined(string message) => new(message, strict);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
sealed class LoopInfo(IReadOnlyList<object?> items, bool strict)
{
    public int Index0 { get; set; }

    public object? Get(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)Index0 + 1,
        "revindex0" => (long)(items.Count - Index0 - 1),
        "revindex" => (long)(items.Count - Index0),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("there is no previous item", strict),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("there is no next item", strict),
        "cycle" => new JinjaFunction("cycle", args => args.Positional.Count == 0
            ? throw new JinjaRuntimeException("no items for cycling given")
            : args.Positional[Index0 % args.Positional.Count]),
        _ => new Undefined($"'LoopContext' object has no attribute '{name}'", strict),
    };
}

/// <summary>Python 3 value semantics as Jinja2 inherits them: truth, str/repr, equality, ordering, arithmetic, indexing.</summary>
static class Py
{
    public static bool IsNumber(object? v) => v is long or double or bool;

    public static bool IsIntegral(object? v) => v is long or bool;

    public static long AsLong(object? v) => v switch { bool b => b ? 1 : 0, long l => l, _ => throw new InvalidCastException() };

    public static double AsDouble(object? v) => v switch { double d => d, _ => AsLong(v) };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        PyTuple => "tuple",
        IReadOnlyList<object?> => "list",
        IReadOnlyDictionary<string, object?> => "dict",
        Namespace => "Namespace",
        LoopInfo => "LoopContext",
        JinjaFunction => "function",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v)
    {
        switch (v)
        {
            case null: return false;
            case Undefined u: u.Use(); return false;
            case bool b: return b;
            case long l: return l != 0;
            case double d: return d != 0;
            case string s: return s.Length > 0;
            case IReadOnlyList<object?> list: return list.Count > 0;
            case IReadOnlyDictionary<string, object?> dict: return dict.Count > 0;
            default: return true;
        }
    }

    /// <summary>Python's <c>str(v)</c>; an undefined value is empty (an error when strict).</summary>
    public static string Str(object? v)
    {
        switch (v)
        {
            case string s: return s;
            case Undefined u: u.Use(); return "";
            case Namespace ns: return "<Namespace " + Repr(ns.Attributes) + ">";
            case LoopInfo: return "<LoopContext>";
            case JinjaFunction f: return $"<function {f.Name}>";
            default: return Repr(v);
        }
    }

    public static string Repr(object? v)
    {
        switch (v)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            case double d: return FloatRepr(d);
            case string s: return StringRepr(s);
            case PyTuple { Count: 1 } single: return "(" + Repr(single[0]) + ",)";
            case PyTuple tuple: return "(" + string.Join(", ", tuple.Select(Repr)) + ")";
            case IReadOnlyList<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case IReadOnlyDictionary<string, object?> dict:
                return "{" + string.Join(", ", dict.Select(kv => StringRepr(kv.Key) + ": " + Repr(kv.Value))) + "}";
            default: return Str(v);
        }
    }

    /// <summary>Python's <c>repr(float)</c>: the shortest round-trip digits, scientific below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        string shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        // Digits and decimal exponent of the shortest form.
        int exponentAt = shortest.IndexOfAny(['E', 'e']);
        string mantissa = exponentAt >= 0 ? shortest[..exponentAt] : shortest;
        int exponent = exponentAt >= 0 ? int.Parse(shortest[(exponentAt + 1)..], CultureInfo.InvariantCulture) : 0;
        int dot = mantissa.IndexOf('.');
        string digits = dot >= 0 ? mantissa.Remove(dot, 1) : mantissa;
        int pointAt = (dot >= 0 ? dot : mantissa.Length) + exponent;
        int lead = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        pointAt -= lead;
        int sciExponent = pointAt - 1;
        string sign = d < 0 ? "-" : "";
        if (sciExponent < -4 || sciExponent >= 16)
        {
            string frac = digits.Length > 1 ? "." + digits[1..] : "";
            return $"{sign}{digits[0]}{frac}e{(sciExponent < 0 ? "-" : "+")}{Math.Abs(sciExponent):00}";
        }
        if (pointAt <= 0) return sign + "0." + new string('0', -pointAt) + digits;
        if (pointAt >= digits.Length) return sign + digits + new string('0', pointAt - digits.Length) + ".0";
        return sign + digits[..pointAt] + "." + digits[pointAt..];
    }

    static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append($"\\x{(int)c:x2}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(quote).ToString();
    }

    public static bool Equal(object? a, object? b)
    {
        if (a is Undefined ua) { ua.Use(); return b is Undefined; }
        if (b is Undefined ub) { ub.Use(); return false; }
        if (IsNumber(a) && IsNumber(b))
            return IsIntegral(a) && IsIntegral(b) ? AsLong(a) == AsLong(b) : AsDouble(a) == AsDouble(b);
        return (a, b) switch
        {
            (null, null) => true,
            (string x, string y) => x == y,
            (IReadOnlyList<object?> x, IReadOnlyList<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equal(p.First, p.Second)),
            (IReadOnlyDictionary<string, object?> x, IReadOnlyDictionary<string, object?> y) =>
                x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var other) && Equal(kv.Value, other)),
            _ => ReferenceEquals(a, b),
        };
    }

    /// <summary>Python ordering (<c>&lt;</c> and friends) of numbers, strings and lists.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
            return IsIntegral(a) && IsIntegral(b) ? AsLong(a).CompareTo(AsLong(b)) : AsDouble(a).CompareTo(AsDouble(b));
        if (a is string x && b is string y) return Math.Sign(string.CompareOrdinal(x, y));
        if (a is IReadOnlyList<object?> xs && b is IReadOnlyList<object?> ys)
        {
            for (int i = 0; i < Math.Min(xs.Count, ys.Count); i++)
                if (!Equal(xs[i], ys[i])) return Compare(xs[i], ys[i], op);
            return xs.Count.CompareTo(ys.Count);
        }
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        throw new JinjaRuntimeException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>The items a for loop visits: a list's items, a dict's keys, a string's characters.</summary>
    public static IReadOnlyList<object?> Iterate(object? v) => v switch
    {
        IReadOnlyList<object?> list => list,
        IReadOnlyDictionary<string, object?> dict => dict.Keys.Cast<object?>().ToList(),
        string s => Characters(s),
        Undefined u => Use(u, (IReadOnlyList<object?>)[]),
        _ => throw new JinjaRuntimeException($"'{TypeName(v)}' object is not iterable"),
    };

    static T Use<T>(Undefined u, T value)
    {
        u.Use();
        return value;
    }

    /// <summary>A string's characters as Python sees them (code points: a surrogate pair is one).</summary>
    public static List<object?> Characters(string s)
    {
        var result = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i += char.IsSurrogatePair(s, i) ? 2 : 1)
            result.Add(char.IsSurrogatePair(s, i) ? s.Substring(i, 2) : s[i].ToString());
        return result;
    }

    public static long Length(object? v) => v switch
    {
        string s => Characters(s).Count,
        IReadOnlyList<object?> list => list.Count,
        IReadOnlyDictionary<string, object?> dict => dict.Count,
        Namespace ns => ns.Attributes.Count,
        Undefined u => Use(u, 0L),
        _ => throw new JinjaRuntimeException($"object of type '{TypeName(v)}' has no len()"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw new JinjaRuntimeException($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        IReadOnlyList<object?> list => list.Any(x => Equal(x, item)),
        IReadOnlyDictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        Undefined u => Use(u, false),
        _ => throw new JinjaRuntimeException($"argument of type '{TypeName(container)}' is not iterable"),
    };

    public static object? Arithmetic(string op, object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        if (IsNumber(a) && IsNumber(b))
        {
            bool integral = IsIntegral(a) && IsIntegral(b);
            if (op == "/" || !integral) return FloatArithmetic(op, AsDouble(a), AsDouble(b));
            long x = AsLong(a), y = AsLong(b);
            switch (op)
            {
                case "+": return checked(x + y);
                case "-": return checked(x - y);
                case "*": return checked(x * y);
                case "//": return y == 0 ? throw ZeroDivision() : FloorDiv(x, y);
                case "%": return y == 0 ? throw ZeroDivision() : x - y * FloorDiv(x, y);
                case "**": return y >= 0 ? (object?)IntPower(x, y) : Math.Pow(x, y);
            }
        }
        switch (op, a, b)
        {
            case ("+", string x, string y): return x + y;
            case ("+", IReadOnlyList<object?> x, IReadOnlyList<object?> y): return x.Concat(y).ToList();
            case ("*", string s, _) when IsIntegral(b): return Repeat(s, AsLong(b));
            case ("*", _, string s) when IsIntegral(a): return Repeat(s, AsLong(a));
            case ("*", IReadOnlyList<object?> list, _) when IsIntegral(b):
                return Enumerable.Repeat(list, (int)Math.Max(0, AsLong(b))).SelectMany(x => x).ToList();
        }
        if (op == "+" && a is string or IReadOnlyList<object?>)
            throw new JinjaRuntimeException($"can only concatenate {TypeName(a)} (not \"{TypeName(b)}\") to {TypeName(a)}");
        throw new JinjaRuntimeException($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    static JinjaRuntimeException ZeroDivision() => new("division by zero");

    static long FloorDiv(long x, long y) => x / y - ((x % y != 0 && (x < 0) != (y < 0)) ? 1 : 0);

    static long IntPower(long x, long y)
    {
        long result = 1;
        for (long i = 0; i < y; i++) result = checked(result * x);
        return result;
    }

    static string Repeat(string s, long n) => n <= 0 ? "" : new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();

    static double FloatArithmetic(string op, double x, double y) => op switch
    {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => y == 0 ? throw ZeroDivision() : x / y,
        "//" => y == 0 ? throw ZeroDivision() : Math.Floor(x / y),
        "%" => y == 0 ? throw ZeroDivision() : x - y * Math.Floor(x / y),
        "**" => Math.Pow(x, y),
        _ => throw new JinjaRuntimeException($"unknown operator {op}"),
    };

    /// <summary><c>obj.name</c>: Jinja tries the attribute (a method) first, then the item.</summary>
    public static object? GetAttribute(object? obj, string name, bool strict)
    {
        if (obj is Undefined u) throw u.Fail();
        if (JinjaBuiltins.Method(obj, name) is { } method) return method;
        return obj switch
        {
            IReadOnlyDictionary<string, object?> dict when dict.TryGetValue(name, out var value) => value,
            Namespace ns when ns.Attributes.TryGetValue(name, out var value) => value,
            LoopInfo loop => loop.Get(name),
            _ => new Undefined($"'{TypeName(obj)} object' has no attribute '{name}'", strict),
        };
    }

    /// <summary><c>obj[key]</c>: Jinja tries the item first, then the attribute.</summary>
    public static object? GetItem(object? obj, object? key, bool strict)
    {
        if (obj is Undefined u) throw u.Fail();
        switch (obj)
        {
            case IReadOnlyDictionary<string, object?> dict when key is string k && dict.TryGetValue(k, out var value):
                return value;
            case IReadOnlyList<object?> list when IsIntegral(key):
                long i = AsLong(key);
                if (i < 0) i += list.Count;
                return i >= 0 && i < list.Count ? list[(int)i] : new Undefined($"list object has no element {AsLong(key)}", strict);
            case string s when IsIntegral(key):
                var chars = Characters(s);
                long j = AsLong(key);
                if (j < 0) j += chars.Count;
                return j >= 0 && j < chars.Count ? chars[(int)j] : new Undefined($"str object has no element {AsLong(key)}", strict);
        }
        if (key is string name) return GetAttribute(obj, name, strict);
        return new Undefined($"'{TypeName(obj)} object' has no element {Repr(key)}", strict);
    }

    /// <summary>Python slicing <c>obj[start:stop:step]</c> of a list or string (null bounds are open).</summary>
    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        if (obj is Undefined u) throw u.Fail();
        IReadOnlyList<object?> items = obj switch
        {
            string s => Characters(s),
            IReadOnlyList<object?> list => list,
            _ => throw new JinjaRuntimeException($"'{TypeName(obj)}' object is not subscriptable"),
        };
        long n = items.Count;
        long stepValue = step is null ? 1 : SliceIndex(step);
        if (stepValue == 0) throw new JinjaRuntimeException("slice step cannot be zero");
        long Clamp(object? bound, long openValue)
        {
            if (bound is null) return openValue;
            long b = SliceIndex(bound);
            if (b < 0) b += n;
            return stepValue > 0 ? Math.Clamp(b, 0, n) : Math.Clamp(b, -1, n - 1);
        }
        long from = Clamp(start, stepValue > 0 ? 0 : n - 1), to = Clamp(stop, stepValue > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = from; stepValue > 0 ? i < to : i > to; i += stepValue) result.Add(items[(int)i]);
        return obj is string ? string.Concat(result.Cast<string>()) : result;
    }

    static long SliceIndex(object? v) => IsIntegral(v) ? AsLong(v)
        : throw new JinjaRuntimeException("slice indices must be integers or None");

    /// <summary>A context value as the template sees it: JSON elements, numbers, dictionaries and lists converted.</summary>
    public static object? FromDotNet(object? v) => v switch
    {
        null or string or bool or long or double => v,
        int or short or sbyte or byte or uint or ushort => Convert.ToInt64(v, CultureInfo.InvariantCulture),
        ulong or float or decimal => Convert.ToDouble(v, CultureInfo.InvariantCulture),
        JsonElement e => FromJson(e),
        IReadOnlyDictionary<string, object?> dict => dict.ToDictionary(kv => kv.Key, kv => FromDotNet(kv.Value)),
        IDictionary dict => dict.Keys.Cast<object>().ToDictionary(
            k => k as string ?? throw new JinjaRuntimeException($"dictionary key {k} is not a string"),
            k => FromDotNet(dict[k])),
        IEnumerable items => items.Cast<object?>().Select(FromDotNet).ToList(),
        _ => throw new JinjaRuntimeException($"a template cannot use a value of type {v.GetType().Name}"),
    };

    static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.Number => e.TryGetInt64(out long l) ? (object?)l : e.GetDouble(),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        _ => e.EnumerateObject().GroupBy(p => p.Name).ToDictionary(g => g.Key, g => FromJson(g.Last().Value)),
    };
}
