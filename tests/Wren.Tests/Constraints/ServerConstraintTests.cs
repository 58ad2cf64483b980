using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Wren.Models;
using Wren.Serving;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Tests.Constraints;

/// <summary><c>response_format</c> and <c>grammar</c> through the HTTP server: streamed chat completions validate, bad
/// constraints are 400s that name the problem, and the server keeps serving.</summary>
public sealed class ServerConstraintTests : IAsyncLifetime
{
    const string ModelName = NoiseServer.ModelName;
    NoiseServer noise = null!;
    ITextTokenizer tokenizer => noise.Tokenizer;
    HttpClient http => noise.Http;

    public async Task InitializeAsync() =>
        noise = await NoiseServer.StartAsync(new EngineOptions { MaxBatch = 32, PrefillChunk = 16, MaxContext = 512 });

    public async Task DisposeAsync() => await noise.DisposeAsync();

    static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    static object[] Messages => [new { role = "user", content = "Answer in JSON." }];

    /// <summary>The streamed choices' texts and finish reasons, by index.</summary>
    async Task<(string[] Texts, string?[] Reasons)> Stream(object body, int n)
    {
        using var response = await http.PostAsync("/v1/chat/completions", Json(body));
        var raw = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, raw);
        Assert.EndsWith("data: [DONE]\n\n", raw);
        var texts = Enumerable.Repeat("", n).ToArray();
        var reasons = new string?[n];
        foreach (var e in raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]"))
            foreach (var choice in JsonNode.Parse(e["data: ".Length..])!["choices"]!.AsArray())
            {
                int index = (int)choice!["index"]!;
                texts[index] += (string?)choice["delta"]?["content"] ?? "";
                reasons[index] ??= (string?)choice["finish_reason"];
            }
        return (texts, reasons);
    }

    [Fact]
    public async Task Streamed_chat_completions_under_each_schema_parse_and_validate()
    {
        for (int i = 0; i < ConstrainedGenerationTests.Schemas.Length; i++)
        {
            var schema = JsonNode.Parse(ConstrainedGenerationTests.Schemas[i]);
            var body = new
            {
                model = ModelName, messages = Messages, n = 8, temperature = 1.0, seed = i, stream = true, max_tokens = 400,
                response_format = new { type = "json_schema", json_schema = new { name = $"s{i}", schema, strict = true } },
            };
            var (texts, reasons) = await Stream(body, 8);
            var validator = ConstrainedGenerationTests.Validator(i);
            for (int c = 0; c < texts.Length; c++)
            {
                Assert.Equal("stop", reasons[c]);
                ConstrainedGenerationTests.AssertValid(validator, i, texts[c]);
            }
        }
    }

    [Fact]
    public async Task Json_object_always_parses_and_a_short_budget_says_length()
    {
        // The biases make quotes and closing braces likely, so that a noise model's objects close within the budget.
        var bias = new Dictionary<string, double> { [Id("\"")] = 6, [Id("}")] = 6 };
        var body = new
        {
            model = ModelName, messages = Messages, n = 16, temperature = 1.0, seed = 4, stream = true, max_tokens = 300,
            logit_bias = bias, response_format = new { type = "json_object" },
        };
        var (texts, reasons) = await Stream(body, 16);
        for (int c = 0; c < texts.Length; c++)
        {
            Assert.Equal("stop", reasons[c]);
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(texts[c]).RootElement.ValueKind);
        }
        var (_, shortReasons) = await Stream(new
        {
            model = ModelName, messages = Messages, temperature = 1.0, seed = 4, stream = true, max_tokens = 2,
            response_format = new
            {
                type = "json_schema", json_schema = new { name = "x", schema = JsonNode.Parse(ConstrainedGenerationTests.Schemas[7]) },
            },
        }, 1);
        Assert.Equal("length", shortReasons[0]);
    }

    string Id(string text) => tokenizer.Encode(text).Single().ToString();

    [Fact]
    public async Task A_gbnf_grammar_field_constrains_a_completion()
    {
        var body = new
        {
            model = ModelName, prompt = "Answer:", n = 12, temperature = 1.0, seed = 1, max_tokens = 50,
            grammar = "root ::= (\"yes\" | \"no\") \", \" [0-9]{2} \" é\"",
        };
        using var response = await http.PostAsync("/v1/completions", Json(body));
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        foreach (var choice in json["choices"]!.AsArray())
        {
            Assert.Matches("^(yes|no), [0-9]{2} é$", (string)choice!["text"]!);
            Assert.Equal("stop", (string)choice["finish_reason"]!);
        }
    }

    public static TheoryData<string, string> BadConstraints => new()
    {
        { """{"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":5}}}}""", "'type' must be" },
        {
            """{"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"integer","multipleOf":2}}}}""",
            "'multipleOf'"
        },
        { """{"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}""", "name' is required" },
        { """{"response_format":{"type":"yaml"}}""", "unknown 'response_format' type 'yaml'" },
        { """{"grammar":""}""", "the grammar is empty" },
        { """{"grammar":"root ::= a\na ::= \"x\" a"}""", "accepts no string" },
        { """{"grammar":"root ::= x\nx ::= x \"a\" | \"b\""}""", "left-recursive" },
        { """{"grammar":"root ::= \"a\"","response_format":{"type":"json_object"}}""", "not both" },
        { """{"logit_bias":{"abc":1}}""", "'logit_bias' key 'abc'" },
    };

    [Theory]
    [MemberData(nameof(BadConstraints))]
    public async Task Bad_constraints_are_400s_naming_the_problem_and_the_server_keeps_serving(string fields, string expected)
    {
        var body = JsonNode.Parse(fields)!.AsObject();
        body["model"] = ModelName;
        body["messages"] = JsonNode.Parse("""[{"role":"user","content":"hi"}]""");
        await AssertRefused(body, expected);
        await AssertServes();
    }

    [Fact]
    public async Task A_one_megabyte_schema_is_refused_and_the_server_keeps_serving()
    {
        var properties = new JsonObject();
        for (int i = 0; i < 11_000; i++)
            properties[$"property_{i:D6}"] = new JsonObject { ["type"] = "string", ["description"] = new string('x', 40) };
        var schema = new JsonObject { ["type"] = "object", ["properties"] = properties };
        Assert.InRange(schema.ToJsonString().Length, 1_000_000, 1_100_000);
        var body = new JsonObject
        {
            ["model"] = ModelName, ["messages"] = JsonNode.Parse("""[{"role":"user","content":"hi"}]"""),
            ["response_format"] = new JsonObject
            {
                ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "big", ["schema"] = schema },
            },
        };
        await AssertRefused(body, "at most 100,000 are accepted");
        await AssertServes();
    }

    async Task AssertRefused(JsonObject body, string expected)
    {
        using var response = await http.PostAsync("/v1/chat/completions",
                                                  new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, text);
        var message = (string)JsonNode.Parse(text)!["error"]!["message"]!;
        Assert.Contains(expected, message);
    }

    async Task AssertServes()
    {
        var body = new { model = ModelName, messages = Messages, max_tokens = 3, temperature = 0 };
        using var response = await http.PostAsync("/v1/chat/completions", Json(body));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
