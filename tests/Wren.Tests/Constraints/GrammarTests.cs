using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Wren.Constraints;

namespace Wren.Tests.Constraints;

/// <summary>
/// The byte-level recognizer against independent oracles: explicit finite languages, integer arithmetic for numeric
/// bounds, .NET's ECMAScript regex engine for patterns, and DateTime/Guid parsers for formats.
/// </summary>
public class GrammarTests
{
    /// <summary>Whether the recognizer accepts <paramref name="text"/> whole (null: some byte is refused, so no extension
    /// of it is accepted either), and whether every prefix stays alive.</summary>
    internal static bool? Accepts(ByteGrammar grammar, byte[] bytes)
    {
        var states = new ParseStates(grammar);
        int state = states.Start;
        foreach (byte b in bytes)
            if ((state = states.Advance(state, b)) == ParseStates.Dead) return null;
        return states.Accepts(state);
    }

    static bool? Accepts(ByteGrammar grammar, string text) => Accepts(grammar, Encoding.UTF8.GetBytes(text));

    static ByteGrammar Schema(string json) => JsonSchemaGrammar.FromSchema(JsonDocument.Parse(json).RootElement.Clone());

    static readonly JsonSerializerOptions Relaxed =
        new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The JSON text of <paramref name="value"/> with only the escapes JSON requires.</summary>
    static string Quoted(string value) => JsonSerializer.Serialize(value, Relaxed);

    [Fact]
    public void A_finite_gbnf_language_is_recognized_exactly_with_its_prefixes()
    {
        var grammar = GbnfGrammar.Parse("""
            # a comment
            root ::= "{" item ("," item)? "}" | "é€" [a-b]{1,2}
            item ::= ("x" | "yz")
               | "\u00e9"
            """);
        var language = new List<string> { "é€a", "é€b", "é€aa", "é€ab", "é€ba", "é€bb" };
        foreach (var a in new[] { "x", "yz", "é" })
        {
            language.Add("{" + a + "}");
            foreach (var b in new[] { "x", "yz", "é" }) language.Add("{" + a + "," + b + "}");
        }
        var strings = language.Select(Encoding.UTF8.GetBytes).ToList();
        var random = new Random(1);
        byte[] alphabet = "{}x,yzab"u8.ToArray().Concat(Encoding.UTF8.GetBytes("é€")).ToArray();
        for (int trial = 0; trial < 3000; trial++)
        {
            // Half the trials: a prefix of a string of the language with a random tail; the rest: random bytes.
            var start = trial % 2 == 0 ? strings[random.Next(strings.Count)] : [];
            var text = start.Take(random.Next(start.Length + 1)).Concat(Enumerable.Range(0, random.Next(4))
                .Select(_ => alphabet[random.Next(alphabet.Length)])).ToArray();
            bool prefix = strings.Any(s => s.AsSpan().StartsWith(text));
            bool member = strings.Any(s => s.AsSpan().SequenceEqual(text));
            Assert.Equal(prefix ? member : null, Accepts(grammar, text));
        }
    }

    [Theory]
    [InlineData(-37, 1234)]
    [InlineData(0, 9)]
    [InlineData(10, 99)]
    [InlineData(-5, -5)]
    [InlineData(-200, -7)]
    [InlineData(7, null)]
    [InlineData(null, -3)]
    public void Integer_bounds_admit_exactly_the_integers_in_range(int? minimum, int? maximum)
    {
        var bounds = string.Join(",", new[] { minimum is { } a ? $"\"minimum\":{a}" : null, maximum is { } b ? $"\"maximum\":{b}" : null }
            .OfType<string>());
        var grammar = Schema($"{{\"type\":\"integer\"{(bounds.Length > 0 ? "," + bounds : "")}}}");
        for (int n = -2500; n <= 2500; n++)
            Assert.True((n >= (minimum ?? int.MinValue) && n <= (maximum ?? int.MaxValue)) == (Accepts(grammar, n.ToString()) == true),
                        $"{n}");
        foreach (var bad in new[] { "-0", "007", "+1", "1.0", "" }) Assert.NotEqual(true, Accepts(grammar, bad));
        Assert.Equal(maximum is null, Accepts(grammar, "123456789012") == true);
    }

    [Theory]
    [InlineData("{\"type\":\"integer\",\"exclusiveMinimum\":2.5,\"exclusiveMaximum\":6}", 3, 5)]
    [InlineData("{\"type\":\"integer\",\"minimum\":-1.5,\"maximum\":2.7}", -1, 2)]
    public void Exclusive_and_fractional_integer_bounds_round_inwards(string schema, int low, int high)
    {
        var grammar = Schema(schema);
        for (int n = -20; n <= 20; n++) Assert.Equal(n >= low && n <= high, Accepts(grammar, n.ToString()) == true);
    }

    [Theory]
    [InlineData(-3, 2)]
    [InlineData(0, 100)]
    [InlineData(-10, -1)]
    [InlineData(5, 5)]
    public void Number_bounds_admit_only_values_in_range(int minimum, int maximum)
    {
        var grammar = Schema($"{{\"type\":\"number\",\"minimum\":{minimum},\"maximum\":{maximum}}}");
        var random = new Random(minimum * 31 + maximum);
        int accepted = 0;
        for (int trial = 0; trial < 4000; trial++)
        {
            var text = (random.Next(2) == 0 ? "-" : "") + random.Next(0, 120) + (random.Next(2) == 0 ? "" : "." + random.Next(0, 1000));
            bool? result = Accepts(grammar, text);
            if (result != true) continue;
            accepted++;
            var value = decimal.Parse(text, CultureInfo.InvariantCulture);
            Assert.True(value >= minimum && value <= maximum, $"{text} is outside [{minimum}, {maximum}]");
        }
        Assert.True(accepted > (maximum > minimum ? 20 : 0), $"only {accepted} accepted");
        Assert.Equal(true, Accepts(grammar, maximum.ToString()));
        Assert.Equal(true, Accepts(grammar, minimum.ToString()));
        if (maximum > minimum) Assert.Equal(true, Accepts(grammar, (maximum - 1) + ".5"));
        Assert.NotEqual(true, Accepts(grammar, (maximum + 1).ToString()));
    }

    [Theory]
    [InlineData("^[a-c]{2,4}(x|yz)?$")]
    [InlineData("^\\d{2}-?[a-c]$")]
    [InlineData("b+c")]
    [InlineData("^(?:ab|c)*[^ab]?$")]
    [InlineData("^\\w\\s?\\.$")]
    public void Patterns_match_what_dotnet_ecmascript_regex_matches(string pattern)
    {
        var grammar = Schema($"{{\"type\":\"string\",\"pattern\":{JsonSerializer.Serialize(pattern)}}}");
        var regex = new Regex(pattern, RegexOptions.ECMAScript);
        var random = new Random(pattern.Length);
        const string alphabet = "abcxyz019- ._\"";
        int matched = 0;
        for (int trial = 0; trial < 4000; trial++)
        {
            var text = new string(Enumerable.Range(0, random.Next(7)).Select(_ => alphabet[random.Next(alphabet.Length)]).ToArray());
            bool expected = regex.IsMatch(text);
            matched += expected ? 1 : 0;
            Assert.True(expected == (Accepts(grammar, Quoted(text)) == true), $"'{text}': regex says {expected}");
        }
        Assert.True(matched > 3, $"only {matched} of the random strings match; the test needs more");
    }

    [Fact]
    public void Formats_accept_only_what_the_dotnet_parsers_accept()
    {
        var random = new Random(5);
        var date = Schema("{\"type\":\"string\",\"format\":\"date\"}");
        var uuid = Schema("{\"type\":\"string\",\"format\":\"uuid\"}");
        var dateTime = Schema("{\"type\":\"string\",\"format\":\"date-time\"}");
        int dates = 0;
        for (int trial = 0; trial < 3000; trial++)
        {
            var text = $"{random.Next(1990, 2030)}-{random.Next(0, 14):D2}-{random.Next(0, 33):D2}";
            if (Accepts(date, Quoted(text)) != true) continue;
            dates++;
            Assert.True(DateTime.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out _), text);
        }
        Assert.True(dates > 1000);
        Assert.Equal(true, Accepts(date, Quoted("2024-12-31")));
        Assert.NotEqual(true, Accepts(date, Quoted("2023-02-29")));
        Assert.Equal(true, Accepts(uuid, Quoted(Guid.NewGuid().ToString())));
        Assert.NotEqual(true, Accepts(uuid, Quoted(Guid.NewGuid().ToString()[..35])));
        Assert.Equal(true, Accepts(dateTime, Quoted("2024-06-01T23:59:07.25+05:30")));
        Assert.Equal(true, Accepts(dateTime, Quoted("2024-06-01T00:00:00Z")));
        Assert.NotEqual(true, Accepts(dateTime, Quoted("2024-06-01T24:00:00Z")));
    }

    [Fact]
    public void Objects_take_required_properties_always_and_optional_ones_in_order()
    {
        var grammar = Schema("""
            {"type":"object","properties":{"a":{"type":"boolean"},"b":{"const":1},"c":{"type":"null"}},
             "required":["b"],"additionalProperties":false}
            """);
        foreach (var text in new[] { "{\"b\":1}", "{\"a\":true,\"b\":1}", "{\"b\":1,\"c\":null}", "{ \"a\": false, \"b\": 1, \"c\": null }",
                                     "{\n  \"b\":1\n}" })
            Assert.True(Accepts(grammar, text) == true, text);
        foreach (var text in new[] { "{}", "{\"a\":true}", "{\"b\":1,\"a\":true}", "{\"b\":1,}", "{,\"b\":1}", " {\"b\":1}", "{\"b\":1} " })
            Assert.True(Accepts(grammar, text) != true, text);
    }

    [Fact]
    public void References_resolve_and_may_recurse()
    {
        var grammar = Schema("""
            {"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":9},
                                                             "kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},
                              "required":["v"],"additionalProperties":false}},
             "$ref":"#/$defs/node"}
            """);
        Assert.Equal(true, Accepts(grammar, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}"));
        Assert.NotEqual(true, Accepts(grammar, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3},{\"v\":4}]}"));
        Assert.NotEqual(true, Accepts(grammar, "{\"v\":10}"));
    }

    [Fact]
    public void Arrays_keep_their_bounds_and_anyOf_takes_each_branch()
    {
        var grammar = Schema("""
            {"type":"array","minItems":1,"maxItems":3,"items":{"anyOf":[{"type":"string","enum":["x","y"]},{"type":"integer"}]}}
            """);
        foreach (var text in new[] { "[\"x\"]", "[1,\"y\",-2]", "[ 5 ]" }) Assert.True(Accepts(grammar, text) == true, text);
        foreach (var text in new[] { "[]", "[1,2,3,4]", "[\"z\"]", "[1.5]" }) Assert.True(Accepts(grammar, text) != true, text);
    }

    [Fact]
    public void String_lengths_count_code_points_and_escapes_decode_to_the_character()
    {
        var grammar = Schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}");
        // (System.Text.Json escapes characters beyond U+FFFF, so that one is written by hand.)
        foreach (var text in new[] { Quoted("ab"), "\"é€😀\"", Quoted("a\"b"), Quoted("\\\\\n") })
            Assert.True(Accepts(grammar, text) == true, text);
        foreach (var text in new[] { "\"a\"", "\"abcd\"", "\"a\nb\"", "\"a\\qb\"" }) Assert.True(Accepts(grammar, text) != true, text);
    }

    [Theory]
    [InlineData("{\"type\":\"string\",\"oneOf\":[]}", "'oneOf'")]
    [InlineData("{\"type\":\"integer\",\"multipleOf\":3}", "'multipleOf'")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"contentEncoding\":\"base64\"}}}", "'contentEncoding'")]
    [InlineData("{\"type\":\"string\",\"format\":\"email\"}", "'email'")]
    [InlineData("{\"type\":\"strin\"}", "unknown type 'strin'")]
    [InlineData("{\"$ref\":\"#/$defs/missing\"}", "points at nothing")]
    [InlineData("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer lies between")]
    [InlineData("{\"type\":\"string\",\"pattern\":\"^(a)\\\\1$\"}", "'\\1' is not supported")]
    [InlineData("{\"type\":\"string\",\"pattern\":\"^(?=a)$\"}", "look-around")]
    [InlineData("false", "accepts no string")]
    [InlineData("{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{}}", "'a' is not in 'properties'")]
    public void Unsupported_or_impossible_schemas_are_refused_by_name(string schema, string expected)
    {
        var error = Assert.Throws<WrenException>(() => Schema(schema));
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("root ::= item\nitem ::= item \"a\" | \"b\"", "left-recursive")]
    [InlineData("root ::= missing", "undefined rule 'missing'")]
    [InlineData("root ::= a\na ::= \"x\" a", "accepts no string")]
    [InlineData("root ::= \"unterminated", "line 1: unterminated")]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", "defined twice")]
    public void Bad_grammars_are_refused_with_a_reason(string gbnf, string expected)
    {
        var error = Assert.Throws<WrenException>(() => GbnfGrammar.Parse(gbnf));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Json_object_accepts_objects_only()
    {
        var grammar = JsonSchemaGrammar.JsonObject();
        foreach (var text in new[] { "{}", "{\"a\":[1,2.5,{\"b\":null}],\"c\":\"é\"}", "{ \"x\" : true }" })
            Assert.True(Accepts(grammar, text) == true, text);
        foreach (var text in new[] { "[]", "1", "{\"a\":}", "{\"a\":1,}", "{'a':1}" }) Assert.True(Accepts(grammar, text) != true, text);
    }

    /// <summary>A count such as minLength 10⁹ is refused by the symbol bound before it is expanded (it used to be materialized
    /// first: minutes and gigabytes per request).</summary>
    [Theory]
    [InlineData("{\"type\": \"string\", \"minLength\": 1000000000}")]
    [InlineData("{\"type\": \"array\", \"minItems\": 1000000000}")]
    [InlineData("{\"type\": \"string\", \"pattern\": \"^a{1000000000,}$\"}")]
    public void Huge_repetition_counts_are_refused_before_they_are_expanded(string schema)
    {
        Assert.Contains("too large", Assert.Throws<WrenException>(() => Schema(schema)).Message);
        Assert.Contains("too large", Assert.Throws<WrenException>(() => GbnfGrammar.Parse("root ::= \"a\"{1000000000}")).Message);
    }
}
