using System.Globalization;
using System.Numerics;
using System.Text.Encodings.Web;
using System.Text.Json;
using static Wren.Constraints.ByteGrammar;

namespace Wren.Constraints;

/// <summary>
/// JSON Schema (the subset of OpenAI's strict structured outputs, plus bounds and patterns) as a <see cref="ByteGrammar"/>
/// whose strings are JSON texts that validate against the schema. The grammar accepts a subset of the valid texts, chosen so
/// that every string it accepts is valid (exact by construction) and a generation cannot wander:
/// <list type="bullet">
/// <item>Objects list the declared <c>properties</c> in declared order, each required one always and each other one
/// optionally; no other property is generated (whatever <c>additionalProperties</c> allows). An object without
/// <c>properties</c> is a map whose values follow <c>additionalProperties</c> (any JSON when absent or true).</item>
/// <item>Numbers are written without exponent. <c>minimum</c>/<c>maximum</c> (and, for integers, the exclusive forms) are exact:
/// the integer part is constrained digit by digit and a fraction is allowed only where every fraction stays in bounds. For
/// type <c>number</c> the bounds must be integers.</item>
/// <item>Strings escape only what JSON requires (<c>\" \\</c> and control characters); <c>minLength</c>/<c>maxLength</c>
/// count code points. Formats: <c>date</c> (years 0001–9999; February has 28 days, so no generated date is invalid),
/// <c>time</c>, <c>date-time</c> (RFC 3339, seconds 00–59), <c>uuid</c>.</item>
/// <item>Whitespace: none at the top level's ends; between tokens at most a space, or a newline and up to 20 spaces or tabs.</item>
/// </list>
/// Keywords outside the list below are refused by name, never ignored: the error is a <see cref="WrenException"/>.
/// </summary>
public static class JsonSchemaGrammar
{
    static readonly HashSet<string> Annotations =
        ["title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly"];

    static readonly HashSet<string> Supported =
    [
        "type", "properties", "required", "additionalProperties", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
        "items", "minItems", "maxItems", "pattern", "format", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum",
    ];

    /// <summary>Any JSON object (<c>response_format: {"type": "json_object"}</c>).</summary>
    public static ByteGrammar JsonObject()
    {
        var compiler = new Compiler(default);
        compiler.Root(compiler.AnyObject());
        return compiler.Builder.Build();
    }

    /// <summary>The JSON texts that validate against <paramref name="schema"/> (see the type's summary for the subset).</summary>
    /// <exception cref="WrenException">An unsupported keyword or format (named), a malformed schema, an unresolvable
    /// <c>$ref</c>, or a schema that no value satisfies.</exception>
    public static ByteGrammar FromSchema(JsonElement schema)
    {
        var compiler = new Compiler(schema);
        compiler.Root(compiler.Value(schema, "#"));
        return compiler.Builder.Build();
    }

    /// <summary>
    /// Values of <paramref name="schema"/> written in a call syntax: <paramref name="prefix"/>, then one value between
    /// <paramref name="open"/> and <paramref name="close"/>, then (when <paramref name="many"/>) more such values each after
    /// <paramref name="separator"/>, then <paramref name="suffix"/>. Tool calls use it: Hermes' <c>&lt;tool_call&gt;…</c> blocks,
    /// Llama 3's <c>;</c>-separated objects, Mistral's <c>[TOOL_CALLS][…]</c> array. Errors as <see cref="FromSchema"/>.
    /// </summary>
    public static ByteGrammar Calls(JsonElement schema, string prefix, string open, string close, string separator, string suffix,
                                    bool many)
    {
        var compiler = new Compiler(schema);
        var item = (Symbol[])[.. Builder.Literal(open), .. compiler.Value(schema, "#"), .. Builder.Literal(close)];
        var more = many ? compiler.Builder.Repeat("calls", [.. Builder.Literal(separator), .. item], 0, null) : [];
        compiler.Root([.. Builder.Literal(prefix), .. item, .. more, .. Builder.Literal(suffix)]);
        return compiler.Builder.Build();
    }

    static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    sealed class Compiler(JsonElement document)
    {
        public Builder Builder { get; } = WithRoot();
        readonly Dictionary<string, int> references = [];
        Symbol[]? ws, anyValue, anyString;

        static Builder WithRoot()
        {
            var builder = new Builder();
            builder.NewRule("root");   // rule 0, the start
            return builder;
        }

        public void Root(Symbol[] value) => Builder.Add(0, value);

        Symbol[] Ws => ws ??= [Builder.Rule("ws", [], Builder.Literal(" "),
            [.. Builder.Literal("\n"), .. Builder.Repeat("indent", [Builder.Chars(CodePoints.Of((' ', ' '), ('\t', '\t')))], 0, 20)])];

        static Symbol[] L(string text) => Builder.Literal(text);

        public Symbol[] AnyValue()
        {
            if (anyValue is not null) return anyValue;
            int rule = Builder.NewRule("value");
            anyValue = [Symbol.Ref(rule)];
            Builder.Define(rule);
            foreach (var alternative in new[] { AnyObject(), AnyArray(), String(0, null), Number(null, null, false), L("true"),
                                                L("false"), L("null") })
                Builder.Add(rule, alternative);
            return anyValue;
        }

        public Symbol[] AnyObject() => Map(AnyValue());

        Symbol[] AnyArray() => Array(AnyValue(), 0, null);

        Symbol[] Map(Symbol[] value)
        {
            var member = (Symbol[])[.. anyString ??= String(0, null), .. Ws, .. L(":"), .. Ws, .. value];
            var more = Builder.Repeat("members", [.. Ws, .. L(","), .. Ws, .. member], 0, null);
            return [.. L("{"), .. Ws, Builder.Rule("object", [.. member, .. more, .. Ws], []), .. L("}")];
        }

        Symbol[] Array(Symbol[] item, int min, int? max)
        {
            var separated = (Symbol[])[.. Ws, .. L(","), .. Ws, .. item];
            Symbol[] body = max == 0 ? []
                : min == 0 ? [Builder.Rule("items", [.. item, .. Builder.Repeat("items", separated, 0, max - 1), .. Ws], [])]
                : [.. item, .. Builder.Repeat("items", separated, min - 1, max - 1), .. Ws];
            return [.. L("["), .. Ws, .. body, .. L("]")];
        }

        /// <summary>A JSON string of <paramref name="min"/> to <paramref name="max"/> characters.</summary>
        Symbol[] String(int min, int? max) =>
            [.. L("\""), .. Builder.Repeat("chars", [Character(CodePoints.All)], min, max), .. L("\"")];

        /// <summary>One character of <paramref name="set"/> inside a JSON string: raw UTF-8, or the escape JSON requires.</summary>
        Symbol Character(CodePoints set)
        {
            var special = CodePoints.Of((0, 0x1F), ('"', '"'), ('\\', '\\'));
            var raw = set.Minus(special);
            var alternatives = new List<Symbol[]>();
            if (!raw.IsEmpty) alternatives.Add([Builder.Chars(raw)]);
            foreach (var (low, high) in set.Ranges)
                for (int c = low; c <= Math.Min(high, 0x5C); c++)
                    if (special.Contains(c)) alternatives.Add(L(JsonSerializer.Serialize(((char)c).ToString(), Compact)[1..^1]));
            if (alternatives.Count == 0) throw new WrenException("a character class matches no character");
            return alternatives is [[var single]] ? single : Builder.Rule("char", alternatives.ToArray());
        }

        static WrenException Error(string path, string message) => new($"JSON Schema at {path}: {message}");

        public Symbol[] Value(JsonElement schema, string path)
        {
            if (schema.ValueKind == JsonValueKind.True) return AnyValue();
            if (schema.ValueKind == JsonValueKind.False) return [Builder.Rule("false")];
            if (schema.ValueKind != JsonValueKind.Object) throw Error(path, "a schema must be an object or a boolean");
            foreach (var property in schema.EnumerateObject())
                if (!Supported.Contains(property.Name) && !Annotations.Contains(property.Name))
                    throw new WrenException($"JSON Schema at {path}: the keyword '{property.Name}' is not supported by constrained " +
                                            "decoding (supported: " + string.Join(", ", Supported) + ")");
            if (schema.TryGetProperty("$ref", out var reference))
            {
                if (schema.EnumerateObject().Any(p => p.Name is not ("$ref" or "$defs" or "definitions") && !Annotations.Contains(p.Name)))
                    throw Error(path, "'$ref' beside other keywords is not supported");
                return [Reference(reference, path)];
            }
            if (schema.TryGetProperty("const", out var constant)) return Filtered([constant], schema, path + "/const");
            if (schema.TryGetProperty("enum", out var values))
            {
                if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0)
                    throw Error(path, "'enum' must be a non-empty array");
                return Filtered(values.EnumerateArray().ToList(), schema, path + "/enum");
            }
            if (schema.TryGetProperty("anyOf", out var anyOf))
            {
                if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0)
                    throw Error(path, "'anyOf' must be a non-empty array");
                if (schema.EnumerateObject().Any(p => Supported.Contains(p.Name) && p.Name is not ("anyOf" or "$defs" or "definitions")))
                    throw Error(path, "'anyOf' beside other validation keywords is not supported (move them into each branch)");
                return [Builder.Rule("anyOf", anyOf.EnumerateArray().Select((s, i) => Value(s, $"{path}/anyOf/{i}")).ToArray())];
            }
            var types = Types(schema, path);
            var alternatives = types.Select(t => Typed(t, schema, path)).ToArray();
            return alternatives.Length == 1 ? alternatives[0] : [Builder.Rule("types", alternatives)];
        }

        /// <summary>The literal values of <c>enum</c>/<c>const</c> (compact JSON), keeping those of the schema's <c>type</c>.</summary>
        Symbol[] Filtered(List<JsonElement> values, JsonElement schema, string path)
        {
            var types = schema.TryGetProperty("type", out _) ? Types(schema, path) : null;
            var kept = values.Where(v => types is null || types.Contains(TypeOf(v)) || types.Contains("number") && TypeOf(v) == "integer")
                .Select(v => L(JsonSerializer.Serialize(v, Compact))).ToArray();
            if (kept.Length == 0) throw Error(path, "no value is of the schema's type");
            return [Builder.Rule("enum", kept)];
        }

        static string TypeOf(JsonElement v) => v.ValueKind switch
        {
            JsonValueKind.Object => "object",
            JsonValueKind.Array => "array",
            JsonValueKind.String => "string",
            JsonValueKind.Number => v.TryGetDecimal(out var d) && d == decimal.Truncate(d) ? "integer" : "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "null",
        };

        static List<string> Types(JsonElement schema, string path)
        {
            if (!schema.TryGetProperty("type", out var type))
                return schema.TryGetProperty("properties", out _) ? ["object"] : schema.TryGetProperty("items", out _) ? ["array"]
                    : ["object", "array", "string", "number", "boolean", "null"];
            var names = type.ValueKind == JsonValueKind.String ? [type.GetString()!]
                : type.ValueKind == JsonValueKind.Array && type.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String)
                    ? type.EnumerateArray().Select(t => t.GetString()!).ToList()
                    : throw Error(path, "'type' must be a string or an array of strings");
            foreach (var name in names)
                if (name is not ("object" or "array" or "string" or "number" or "integer" or "boolean" or "null"))
                    throw Error(path, $"unknown type '{name}'");
            if (names.Count == 0) throw Error(path, "'type' is an empty array");
            return names.Distinct().ToList();
        }

        Symbol[] Typed(string type, JsonElement schema, string path) => type switch
        {
            "null" => L("null"),
            "boolean" => [Builder.Rule("boolean", L("true"), L("false"))],
            "string" => StringOf(schema, path),
            "integer" => Integer(schema, path),
            "number" => NumberOf(schema, path),
            "array" => ArrayOf(schema, path),
            _ => ObjectOf(schema, path),
        };

        Symbol Reference(JsonElement reference, string path)
        {
            var target = reference.ValueKind == JsonValueKind.String ? reference.GetString()!
                : throw Error(path, "'$ref' must be a string");
            if (references.TryGetValue(target, out int known)) return Symbol.Ref(known);
            if (!target.StartsWith('#')) throw Error(path, $"'$ref' '{target}' is not local to the schema (only '#…' references)");
            var node = document;
            foreach (var raw in target[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                var segment = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
                if (node.ValueKind == JsonValueKind.Object && node.TryGetProperty(segment, out var child)) node = child;
                else if (node.ValueKind == JsonValueKind.Array && int.TryParse(segment, out int i) && i >= 0 && i < node.GetArrayLength())
                    node = node[i];
                else throw Error(path, $"'$ref' '{target}' points at nothing");
            }
            int rule = Builder.NewRule(target);
            references[target] = rule;
            Builder.Add(rule, Value(node, target));
            return Symbol.Ref(rule);
        }

        static int? Count(JsonElement schema, string keyword, string path)
        {
            if (!schema.TryGetProperty(keyword, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n < 0)
                throw Error(path, $"'{keyword}' must be a non-negative integer");
            return n;
        }

        Symbol[] StringOf(JsonElement schema, string path)
        {
            int min = Count(schema, "minLength", path) ?? 0;
            int? max = Count(schema, "maxLength", path);
            if (max < min) throw Error(path, $"'maxLength' {max} is below 'minLength' {min}");
            bool lengths = schema.TryGetProperty("minLength", out _) || max is not null;
            if (schema.TryGetProperty("pattern", out var pattern))
            {
                if (pattern.ValueKind != JsonValueKind.String) throw Error(path, "'pattern' must be a string");
                if (lengths || schema.TryGetProperty("format", out _))
                    throw Error(path, "'pattern' together with 'minLength', 'maxLength' or 'format' is not supported");
                return [.. L("\""), .. RegexGrammar.Compile(pattern.GetString()!, Builder, Character, $"JSON Schema at {path}/pattern"),
                        .. L("\"")];
            }
            if (schema.TryGetProperty("format", out var format))
            {
                if (lengths) throw Error(path, "'format' together with 'minLength' or 'maxLength' is not supported");
                var regex = format.GetString() switch
                {
                    "date" => Date,
                    "time" => Time,
                    "date-time" => Date + "T" + Time,
                    "uuid" => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                    var other => throw Error(path, $"the format '{other}' is not supported (date, time, date-time, uuid)"),
                };
                return [.. L("\""), .. RegexGrammar.Compile("^" + regex + "$", Builder, Character, $"format at {path}"), .. L("\"")];
            }
            return String(min, max);
        }

        // RFC 3339 full-date and full-time; years from 0001 (as .NET's DateTime), days 29–31 only in the months that always
        // have them.
        const string Date = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-" +
                            "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)";
        const string Time = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";

        /// <summary>The inclusive integer bounds from minimum/maximum and their exclusive forms, rounded inwards.</summary>
        static (BigInteger? Low, BigInteger? High, bool Integral) Bounds(JsonElement schema, string path)
        {
            BigInteger? low = null, high = null;
            bool integral = true;
            foreach (var (keyword, lower, exclusive) in new[]
                     {
                         ("minimum", true, false), ("exclusiveMinimum", true, true), ("maximum", false, false),
                         ("exclusiveMaximum", false, true),
                     })
            {
                if (!schema.TryGetProperty(keyword, out var v)) continue;
                if (v.ValueKind != JsonValueKind.Number
                    || !decimal.TryParse(v.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d))
                    throw Error(path, $"'{keyword}' must be a number within ±7.9e28");
                integral &= d == decimal.Truncate(d) && !exclusive;
                var bound = lower
                    ? new BigInteger(exclusive ? decimal.Floor(d) + 1 : decimal.Ceiling(d))
                    : new BigInteger(exclusive ? decimal.Ceiling(d) - 1 : decimal.Floor(d));
                if (lower) low = low is { } l ? BigInteger.Max(l, bound) : bound;
                else high = high is { } h ? BigInteger.Min(h, bound) : bound;
            }
            if (low > high) throw Error(path, $"no integer lies between the bounds {low} and {high}");
            return (low, high, integral);
        }

        Symbol[] Integer(JsonElement schema, string path)
        {
            var (low, high, _) = Bounds(schema, path);
            return IntegerRange(low, high);
        }

        Symbol[] NumberOf(JsonElement schema, string path)
        {
            var (low, high, integral) = Bounds(schema, path);
            if (!integral)
                throw Error(path, "bounds on type 'number' must be inclusive integers (minimum/maximum), or use type 'integer'");
            return Number(low, high, true);
        }

        /// <summary>
        /// Numbers x with low ≤ x ≤ high (integer bounds, null: unbounded): every integer in range, and a fraction after the
        /// integer part i only where the whole interval it reaches stays inside: i ≥ 0 gives [i, i+1), so low ≤ i ≤ high − 1;
        /// −k (k ≥ 1) gives (−k−1, −k], so −high ≤ k ≤ −low − 1; −0 gives (−1, 0], so low ≤ −1 and high ≥ 0.
        /// </summary>
        Symbol[] Number(BigInteger? low, BigInteger? high, bool bounded)
        {
            var fraction = (Symbol[])[.. L("."), .. Builder.Repeat("fraction", [Builder.Chars(CodePoints.Of(('0', '9')))], 1, null)];
            if (!bounded) return [.. IntegerRange(null, null), Builder.Rule("fraction?", fraction, [])];
            var alternatives = new List<Symbol[]> { IntegerRange(low, high) };
            BigInteger from = BigInteger.Max(low ?? 0, 0);
            if (high is null || from <= high - 1)
                alternatives.Add([.. NonNegative(from, high - 1), .. fraction]);
            BigInteger k0 = BigInteger.Max(1, high is { } h ? -h : 1);
            if (low is null || k0 <= -low - 1)
                alternatives.Add([.. L("-"), .. NonNegative(k0, -low - 1), .. fraction]);
            if ((low is null || low <= -1) && (high is null || high >= 0)) alternatives.Add([.. L("-0"), .. fraction]);
            return [Builder.Rule("number", alternatives.ToArray())];
        }

        /// <summary>Integers in [low, high] (null: unbounded) in canonical form (no leading zeros, no "-0").</summary>
        Symbol[] IntegerRange(BigInteger? low, BigInteger? high)
        {
            var alternatives = new List<Symbol[]>();
            if (high is null || high >= 0) alternatives.Add(NonNegative(BigInteger.Max(low ?? 0, 0), high));
            if (low is null || low < 0) alternatives.Add([.. L("-"), .. NonNegative(BigInteger.Max(1, high is { } h ? -h : 1), -low)]);
            return alternatives.Count == 1 ? alternatives[0] : [Builder.Rule("integer", alternatives.ToArray())];
        }

        /// <summary>Decimal numerals of the integers in [low, high] (0 ≤ low; null high: unbounded), one length at a time.</summary>
        Symbol[] NonNegative(BigInteger low, BigInteger? high)
        {
            var digit = Builder.Chars(CodePoints.Of(('0', '9')));
            var alternatives = new List<Symbol[]>();
            int lowLength = low.ToString().Length, highLength = high?.ToString().Length ?? lowLength;
            for (int length = lowLength; length <= highLength; length++)
            {
                var first = length == 1 ? BigInteger.Zero : BigInteger.Pow(10, length - 1);
                var last = BigInteger.Pow(10, length) - 1;
                var a = BigInteger.Max(low, first);
                var b = high is { } h ? BigInteger.Min(h, last) : last;
                if (a <= b) alternatives.Add(SameLength(a.ToString(), b.ToString()));
            }
            if (high is null)   // every longer numeral
                alternatives.Add([Builder.Chars(CodePoints.Of(('1', '9'))), .. Builder.Repeat("digits", [digit], lowLength, null)]);
            return alternatives.Count == 1 ? alternatives[0] : [Builder.Rule("digits", alternatives.ToArray())];
        }

        /// <summary>Numerals from <paramref name="a"/> to <paramref name="b"/>, both of the same length, digit by digit.</summary>
        Symbol[] SameLength(string a, string b)
        {
            if (a == b) return L(a);
            int rest = a.Length - 1;
            Symbol Digits(char from, char to) => Builder.Chars(CodePoints.Of((from, to)));
            if (a.AsSpan(1).IndexOfAnyExcept('0') < 0 && b.AsSpan(1).IndexOfAnyExcept('9') < 0)
                return [Digits(a[0], b[0]), .. Enumerable.Repeat(Digits('0', '9'), rest)];
            if (a[0] == b[0]) return [.. L(a[..1]), .. SameLength(a[1..], b[1..])];
            var alternatives = new List<Symbol[]>();
            alternatives.Add([.. L(a[..1]), .. SameLength(a[1..], new string('9', rest))]);
            if (a[0] + 1 <= b[0] - 1)
                alternatives.Add([Digits((char)(a[0] + 1), (char)(b[0] - 1)), .. Enumerable.Repeat(Digits('0', '9'), rest)]);
            alternatives.Add([.. L(b[..1]), .. SameLength(new string('0', rest), b[1..])]);
            return [Builder.Rule("range", alternatives.ToArray())];
        }

        Symbol[] ArrayOf(JsonElement schema, string path)
        {
            int min = Count(schema, "minItems", path) ?? 0;
            int? max = Count(schema, "maxItems", path);
            if (max < min) throw Error(path, $"'maxItems' {max} is below 'minItems' {min}");
            var item = schema.TryGetProperty("items", out var items) ? Value(items, path + "/items") : AnyValue();
            return Array(item, min, max);
        }

        Symbol[] ObjectOf(JsonElement schema, string path)
        {
            var required = new HashSet<string>();
            if (schema.TryGetProperty("required", out var list))
            {
                if (list.ValueKind != JsonValueKind.Array || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
                    throw Error(path, "'required' must be an array of strings");
                required = list.EnumerateArray().Select(e => e.GetString()!).ToHashSet();
            }
            bool closed = schema.TryGetProperty("additionalProperties", out var additional) && additional.ValueKind == JsonValueKind.False;
            if (!schema.TryGetProperty("properties", out var properties))
            {
                if (required.Count > 0) throw Error(path, "'required' names properties but 'properties' declares none");
                if (closed) return L("{}");
                return Map(additional.ValueKind is JsonValueKind.Object ? Value(additional, path + "/additionalProperties") : AnyValue());
            }
            if (additional.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object))
                throw Error(path, "'additionalProperties' must be a boolean or a schema");
            if (properties.ValueKind != JsonValueKind.Object) throw Error(path, "'properties' must be an object");
            var members = properties.EnumerateObject().Select(p => (Required: required.Contains(p.Name),
                Symbols: (Symbol[])[.. L(JsonSerializer.Serialize(p.Name, Compact)), .. Ws, .. L(":"), .. Ws,
                                     .. Value(p.Value, $"{path}/properties/{p.Name}")])).ToList();
            foreach (var name in required)
                if (!properties.TryGetProperty(name, out _)) throw Error(path, $"the required property '{name}' is not in 'properties'");
            // After(i): members i.. once one has been written (each preceded by a comma); First(i): none written yet.
            var comma = (Symbol[])[.. Ws, .. L(","), .. Ws];
            Symbol[] after = [];
            Symbol[] first = [];
            for (int i = members.Count - 1; i >= 0; i--)
            {
                var (isRequired, member) = members[i];
                var withComma = (Symbol[])[.. comma, .. member, .. after];
                first = [isRequired ? Builder.Rule("first", [.. member, .. after]) : Builder.Rule("first", [.. member, .. after], first)];
                after = [isRequired ? Builder.Rule("after", withComma) : Builder.Rule("after", withComma, after)];
            }
            return [.. L("{"), .. Ws, .. first, .. Ws, .. L("}")];
        }
    }
}
