using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using Wren.Models;
using Wren.Serving;
using Wren.Templating;
using Wren.Tests.Constraints;
using Wren.Tokenization;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using ChatMessage = OpenAI.Chat.ChatMessage;

namespace Wren.Tests.Serving;

/// <summary>
/// Function calling: replies read back into calls for each template family (hand-written replies), the stream splitter
/// against the whole-reply parser at every cut, the ChatML template's tool rendering, and through a real server on a
/// random-weight model (whose free text is noise, so only the grammar can make a call): required and named calls always
/// parse and validate, streamed deltas carry the same calls, the official OpenAI client and Microsoft.Extensions.AI's
/// <c>UseFunctionInvocation</c> complete a round trip, and bad tool requests are 400s.
/// </summary>
public sealed class ToolCallTests : IAsyncLifetime
{
    const string ModelName = NoiseServer.ModelName;
    NoiseServer noise = null!;
    InferenceEngine engine => noise.Engine;
    OpenAiServer server => noise.Server;
    HttpClient http => noise.Http;

    public async Task InitializeAsync() =>
        noise = await NoiseServer.StartAsync(new EngineOptions { MaxBatch = 16, PrefillChunk = 32, MaxContext = 2048 });

    public async Task DisposeAsync() => await noise.DisposeAsync();

    static readonly string[] Names = ["get_weather", "book_table"];

    const string WeatherSchema = """
        {"type":"object","properties":{"city":{"type":"string","minLength":1,"maxLength":12},
         "unit":{"enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":7}},
         "required":["city","unit"],"additionalProperties":false}
        """;

    const string TableSchema = """
        {"type":"object","properties":{"guests":{"$ref":"#/$defs/count"},"time":{"type":"string","pattern":"^[0-2][0-9]:[0-5][0-9]$"}},
         "required":["guests","time"],"additionalProperties":false,"$defs":{"count":{"type":"integer","minimum":1,"maximum":12}}}
        """;

    static object[] Tools =>
    [
        new { type = "function", function = new { name = "get_weather", description = "Weather",
            parameters = JsonNode.Parse(WeatherSchema) } },
        new { type = "function", function = new { name = "book_table", description = "A table",
            parameters = JsonNode.Parse(TableSchema) } },
    ];

    static object[] Messages => [new { role = "user", content = "What is the weather in Paris?" }];

    static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    static void AssertValidArguments(string name, string arguments)
    {
        var schema = JsonSchema.FromText(name == "get_weather" ? WeatherSchema : TableSchema,
                                         baseUri: new Uri($"https://wren.test/tools/{name}/{Guid.NewGuid():N}"));
        var result = schema.Evaluate(JsonDocument.Parse(arguments).RootElement);
        Assert.True(result.IsValid, $"{name}({arguments}) does not validate");
    }

    [Theory]
    [InlineData("hermes", "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                "Let me look.", "get_weather:{\"city\": \"Paris\"}")]
    [InlineData("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments" +
                "\": {}}\n</tool_call>\n<tool_call>{\"name\": \"book_table\", " +
                "\"arguments\": \"{\\\"guests\\\": 2}\"}</tool_call>", null, "get_weather:{}|book_table:{\"guests\": 2}")]
    [InlineData("hermes", "<tool_call>\n{\"name\": \"launch\", \"arguments\": {}}\n</tool_call>", "<tool_call>\n{\"name\": \"launch\", " +
                "\"arguments\": {}}\n</tool_call>", "")]
    [InlineData("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\"\n</tool_call>", "<tool_call>\n{\"name\": " +
                "\"get_weather\", \"arguments\": {\"city\"\n</tool_call>", "")]
    [InlineData("llama3-json", "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo" +
                "\"}}; {\"name\": \"book_table\", " +
                "\"parameters\": {\"guests\": 4}}", null, "get_weather:{\"city\": \"Oslo\"}|book_table:{\"guests\": 4}")]
    [InlineData("llama3-json", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
                null, "get_weather:{\"city\": \"Oslo\"}")]
    [InlineData("llama3-json", "It is sunny in Oslo.", "It is sunny in Oslo.", "")]
    [InlineData("mistral", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"book_table\", " +
                "\"arguments\": {}}]", null, "get_weather:{\"city\": \"Rome\"}|book_table:{}")]
    [InlineData("mistral", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city" +
                "\": ", "[TOOL_CALLS][{\"name\": \"get_weather\", " +
                "\"arguments\": {\"city\": ", "")]
    public void A_reply_is_read_into_calls_of_known_functions_and_the_rest_stays_text(string family, string reply, string? content,
                                                                                       string calls)
    {
        var syntax = new[] { ToolCallSyntax.Hermes, ToolCallSyntax.Llama3, ToolCallSyntax.Mistral }.Single(s => s.Family == family);
        var (text, parsed) = syntax.Parse(reply, Names);
        Assert.Equal(content, text);
        Assert.Equal(calls, string.Join("|", parsed.Select(c => $"{c.Name}:{c.Arguments}")));
        Assert.All(parsed, c => Assert.Matches("^call_[A-Za-z0-9]{24}$", c.Id));

        // The stream splitter gives the same calls and text, however the reply is cut.
        var random = new Random(reply.Length);
        for (int trial = 0; trial < 20; trial++)
        {
            var splitter = new ToolCallStream(syntax, Names);
            var streamed = new StringBuilder();
            var streamedCalls = new List<ToolCall>();
            for (int at = 0; at < reply.Length;)
            {
                int take = Math.Min(reply.Length - at, trial == 0 ? 1 : random.Next(1, 8));
                var (t, c) = splitter.Push(reply.Substring(at, take));
                streamed.Append(t);
                streamedCalls.AddRange(c);
                at += take;
            }
            var (restText, restCalls) = splitter.Finish();
            streamed.Append(restText);
            streamedCalls.AddRange(restCalls);
            Assert.Equal(calls, string.Join("|", streamedCalls.Select(c => $"{c.Name}:{c.Arguments}")));
            Assert.Equal((content ?? "").Trim(), streamed.ToString().Trim());
        }
    }

    [Fact]
    public void The_family_is_read_from_the_template()
    {
        Assert.Equal(ToolCallSyntax.Hermes, ToolCallSyntax.Of("{{ '<tool_call>\\n' }}"));
        Assert.Equal(ToolCallSyntax.Mistral, ToolCallSyntax.Of("{{ '[TOOL_CALLS]' }}"));
        Assert.Equal(ToolCallSyntax.Llama3, ToolCallSyntax.Of("{{- '<|python_tag|>' }}"));
        Assert.Equal(ToolCallSyntax.Hermes, ToolCallSyntax.Of("{{ 'User: ' }}"));   // no syntax of its own
    }

    [Theory]
    [InlineData("qwen3", "Qwen3-1.7B", "hermes")]
    [InlineData("qwen3", "Qwen2.5-3B-Instruct", "hermes")]
    [InlineData("llama-3.1", "Llama-3.1-8B-Instruct", "llama3-json")]
    [InlineData("llama-3.1", "Llama-3.2-3B-Instruct", "llama3-json")]
    public void Released_templates_get_their_family_and_render_a_call_and_its_result(string folder, string name, string family)
    {
        var sources = JsonSerializer.Deserialize<Dictionary<string, string>>(
            File.ReadAllText(Path.Combine(TestSupport.Fixtures, "chat-prompts", folder, "templates.json")))!;
        var dir = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), sources[name]);
        File.Copy(Path.Combine(TestSupport.Fixtures, "chat-prompts", folder, "tokenizer_config.json"),
                  Path.Combine(dir, "tokenizer_config.json"));
        var template = ServeHost.ResolveTemplate(null, dir);
        var syntax = ToolCallSyntax.Of(template.Source);
        Assert.Equal(family, syntax.Family);
        Assert.True(template.RendersTools);
        using var tools = JsonDocument.Parse("[" + JsonSerializer.Serialize(Tools[0]) + "]");
        using var calls = JsonDocument.Parse(
            """[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":{"city":"Oslo"}}}]""");
        var text = template.Render(
            [
                new ChatTurn("user", "Weather?"),
                new ChatTurn("assistant", null, new Dictionary<string, object?> { ["tool_calls"] = calls.RootElement }),
                new ChatTurn("tool", "22 degrees", new Dictionary<string, object?> { ["tool_call_id"] = "call_1" }),
            ],
            new ChatTemplateOptions(true, tools.RootElement.EnumerateArray().Select(e => (object?)e).ToList()),
            new Dictionary<string, int>()).Text;
        Assert.Contains("get_weather", text);
        Assert.Contains("Oslo", text);
        Assert.Contains("22 degrees", text);
    }

    [Fact]
    public void ChatML_renders_tools_calls_and_results_in_the_Hermes_format()
    {
        using var tools = JsonDocument.Parse("""[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]""");
        using var calls = JsonDocument.Parse("""[{"id":"call_1","type":"function","function":{"name":"f","arguments":{"x":1}}}]""");
        var turns = new List<ChatTurn>
        {
            new("system", "Be brief."), new("user", "Go."),
            new("assistant", null, new Dictionary<string, object?> { ["tool_calls"] = calls.RootElement }),
            new("tool", "42", new Dictionary<string, object?> { ["tool_call_id"] = "call_1" }),
        };
        var text = ChatTemplate.BuiltIn("chatml").Render(turns,
            new ChatTemplateOptions(true, tools.RootElement.EnumerateArray().Select(e => (object?)e).ToList()),
            new Dictionary<string, int>()).Text;
        string expected =
            "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
            "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}\n</tools>\n\n" +
            "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
            "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\nGo.<|im_end|>\n" +
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
        Assert.Equal(expected, text);
        // Without tools, ChatML is transformers' default, unchanged.
        Assert.Equal("<|im_start|>user\nGo.<|im_end|>\n<|im_start|>assistant\n",
                     ChatTemplate.BuiltIn("chatml").Apply([new ChatTurn("user", "Go.")]));
    }

    async Task<JsonNode> Chat(object body)
    {
        using var response = await http.PostAsync("/v1/chat/completions", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task Required_and_named_calls_always_parse_and_their_arguments_validate()
    {
        var required = await Chat(new
        {
            model = ModelName, messages = Messages, tools = Tools, tool_choice = "required", n = 16, temperature = 1.0, seed = 3,
            max_tokens = 600,
        });
        var seen = new HashSet<string>();
        foreach (var choice in required["choices"]!.AsArray())
        {
            Assert.Equal("tool_calls", (string)choice!["finish_reason"]!);
            Assert.True(choice["message"]!.AsObject().ContainsKey("content"));   // "content": null, as OpenAI sends
            Assert.Null(choice["message"]!["content"]);
            var calls = choice["message"]!["tool_calls"]!.AsArray();
            Assert.NotEmpty(calls);
            foreach (var call in calls)
            {
                Assert.Equal("function", (string)call!["type"]!);
                string name = (string)call["function"]!["name"]!;
                seen.Add(name);
                AssertValidArguments(name, (string)call["function"]!["arguments"]!);
            }
        }
        Assert.Equal(Names.Order(), seen.Order());   // both tools are reachable

        var named = await Chat(new
        {
            model = ModelName, messages = Messages, tools = Tools, n = 8, temperature = 1.0, seed = 4, max_tokens = 600,
            tool_choice = new { type = "function", function = new { name = "book_table" } }, parallel_tool_calls = false,
        });
        foreach (var choice in named["choices"]!.AsArray())
        {
            var call = Assert.Single(choice!["message"]!["tool_calls"]!.AsArray())!;
            Assert.Equal("book_table", (string)call["function"]!["name"]!);
            AssertValidArguments("book_table", (string)call["function"]!["arguments"]!);
        }
    }

    [Fact]
    public async Task Streamed_calls_arrive_as_tool_call_deltas_equal_to_the_whole_reply()
    {
        var body = new
        {
            model = ModelName, messages = Messages, tools = Tools, tool_choice = "required", n = 4, temperature = 1.0, seed = 9,
            max_tokens = 600, stream = true,
        };
        using var response = await http.PostAsync("/v1/chat/completions", Json(body));
        var raw = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var calls = new Dictionary<(int, int), (string Name, StringBuilder Arguments)>();
        var reasons = new string?[4];
        foreach (var e in raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]"))
            foreach (var choice in JsonNode.Parse(e["data: ".Length..])!["choices"]!.AsArray())
            {
                int index = (int)choice!["index"]!;
                reasons[index] ??= (string?)choice["finish_reason"];
                Assert.True(string.IsNullOrEmpty((string?)choice["delta"]?["content"]), "a forced call streams no text");
                foreach (var delta in choice["delta"]?["tool_calls"]?.AsArray() ?? [])
                {
                    var key = (index, (int)delta!["index"]!);
                    if (!calls.ContainsKey(key)) calls[key] = ((string)delta["function"]!["name"]!, new StringBuilder());
                    Assert.StartsWith("call_", (string)delta["id"]!);
                    calls[key].Arguments.Append((string?)delta["function"]!["arguments"]);
                }
            }
        Assert.All(reasons, r => Assert.Equal("tool_calls", r));
        Assert.Equal(4, calls.Keys.Select(k => k.Item1).Distinct().Count());
        foreach (var (name, arguments) in calls.Values) AssertValidArguments(name, arguments.ToString());
    }

    OpenAIClient OpenAi() => new(new ApiKeyCredential("unused"),
        new OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1"), RetryPolicy = new ClientRetryPolicy(0) });

    [Fact]
    public async Task The_official_client_makes_a_required_call_sends_the_result_back_and_streams_the_answer()
    {
        var client = OpenAi().GetChatClient(ModelName);
        var weather = ChatTool.CreateFunctionTool("get_weather", "Weather in a city", BinaryData.FromString(WeatherSchema));
        var options = new ChatCompletionOptions
        {
            Tools = { weather }, ToolChoice = ChatToolChoice.CreateRequiredChoice(),
            AllowParallelToolCalls = false
        };
        List<ChatMessage> messages = [new UserChatMessage("What is the weather in Paris?")];
        var first = (await client.CompleteChatAsync(messages, options)).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        AssertValidArguments("get_weather", call.FunctionArguments.ToString());

        messages.Add(new AssistantChatMessage(first.ToolCalls));
        messages.Add(new ToolChatMessage(call.Id, "22 °C and sunny"));
        var answer = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync(messages,
                           new ChatCompletionOptions { Tools = { weather }, MaxOutputTokenCount = 12 }))
        {
            foreach (var part in update.ContentUpdate) answer.Append(part.Text);
            if (update.FinishReason is { } reason) finish = reason;
        }
        Assert.NotNull(finish);
        Assert.True(answer.Length > 0 || finish == ChatFinishReason.ToolCalls);
    }

    [Fact]
    public async Task Function_invocation_of_Microsoft_Extensions_AI_calls_a_CSharp_function_through_the_server()
    {
        var invoked = new List<string>();
        var function = AIFunctionFactory.Create((string city, string unit) =>
        {
            invoked.Add($"{city}/{unit}");
            return "22 degrees";
        }, "get_weather", "Weather in a city; unit is celsius or fahrenheit");
        IChatClient chat = OpenAi().GetChatClient(ModelName).AsIChatClient().AsBuilder().UseFunctionInvocation().Build();
        var response = await chat.GetResponseAsync("What is the weather in Paris?",
            new ChatOptions { Tools = [function], ToolMode = ChatToolMode.RequireAny, MaxOutputTokens = 200, Seed = 5 });
        Assert.NotEmpty(invoked);
        Assert.Contains(response.Messages, m => m.Contents.OfType<FunctionCallContent>().Any(c => c.Name == "get_weather"));
        Assert.Contains(response.Messages, m => m.Contents.OfType<FunctionResultContent>().Any());
    }

    [Fact]
    public async Task The_in_process_chat_client_invokes_functions_streaming_or_not_and_answers_in_a_schema()
    {
        var invoked = new List<string>();
        // Arguments a noise model can finish (an unbounded string would run to the token limit).
        var function = AIFunctionFactory.Create((bool metric, Booking? last) =>
        {
            invoked.Add($"{metric}/{last}");
            return "22 degrees";
        }, "get_weather", "Weather in Paris");
        using var wren = new WrenChatClient(engine, ChatTemplate.BuiltIn("chatml"), ModelName);
        IChatClient chat = wren.AsBuilder().UseFunctionInvocation().Build();
        var options = new ChatOptions
        {
            Tools = [function], ToolMode = ChatToolMode.RequireSpecific("get_weather"), AllowMultipleToolCalls = false,
            MaxOutputTokens = 600, Seed = 2,
        };
        var response = await chat.GetResponseAsync("Weather?", options);
        Assert.Single(invoked);
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("get_weather", call.Name);
        Assert.True(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Single().CallId == call.CallId);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in chat.GetStreamingResponseAsync("Weather?", options)) updates.Add(update);
        Assert.Equal(2, invoked.Count);
        Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());

        var booking = await wren.GetResponseAsync<Booking>("Book a table.", new ChatOptions { Seed = 4, Temperature = 1 });
        Assert.True(booking.TryGetResult(out var result), booking.Text);
        Assert.InRange(result!.Guests, 1, 12);
    }

    /// <summary>A C# type whose JSON schema constrains the reply (<c>GetResponseAsync&lt;T&gt;</c>).</summary>
    public sealed record Booking([property: System.ComponentModel.DataAnnotations.Range(1, 12)] int Guests, bool Terrace);

    public static TheoryData<string, string> BadToolRequests => new()
    {
        { """{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""",
          "names the function 'g', which is not in 'tools'" },
        { """{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","patternProperties":{}}}}]}""",
          "'patternProperties'" },
        { """{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"frog"}}}]}""", "tools[0].function.parameters" },
        { """{"tools":[{"type":"retrieval"}]}""", "\"type\": \"function\"" },
        { """{"tools":[{"type":"function","function":{"name":"a b"}}]}""", "letters, digits" },
        { """{"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}""",
          "two tools are named 'f'" },
        { """{"tools":{"name":"f"}}""", "'tools' must be a list" },
        { """{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"array"}}}]}""", "a call's arguments are an object" },
        { """{"tools":[{"type":"function","function":{"name":"f","parameters":5}}]}""", "must be a JSON Schema of an object" },
        { """{"tools":[{"type":"function","function":{"name":"f","strict":"yes"}}]}""", "strict' must be a boolean" },
        { """{"tools":[],"tool_choice":"required"}""", "'tool_choice' needs 'tools'" },
        { """{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"tool","function":{"name":"f"}}}""",
          "'tool_choice' must be" },
        { """{"functions":[{"name":"f"}]}""", "'functions' is not supported" },
        { """{"tool_choice":"required"}""", "'tool_choice' needs 'tools'" },
        { """{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}""", "'tool_choice' must be" },
        { """{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","response_format":{"type":"json_object"}}""",
          "give no 'response_format'" },
    };

    public static TheoryData<string, string> BadToolMessages => new()
    {
        { """[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{x:"}}]}]""",
          "arguments must be a string of a JSON object" },
        { """[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]""",
          "arguments must be a string of a JSON object" },
        { """[{"role":"assistant","tool_calls":[{"id":1,"type":"function","function":{"name":"f","arguments":"{}"}}]}]""",
          "must hold objects" },
        { """[{"role":"assistant","tool_calls":[{"id":"c","type":"xx","function":{"name":"f","arguments":"{}"}}]}]""",
          "must hold objects" },
        { """[{"role":"user","content":"hi","tool_calls":[]}]""", "only for assistant messages" },
        { """[{"role":"tool","content":"r"}]""", "tool_call_id' (a string) is required" },
    };

    [Theory]
    [MemberData(nameof(BadToolMessages))]
    public async Task Bad_tool_messages_are_400s_naming_the_message(string messages, string expected) =>
        await AssertBad(new JsonObject { ["model"] = ModelName, ["messages"] = JsonNode.Parse(messages), ["max_tokens"] = 2 }, expected);

    [Theory]
    [MemberData(nameof(BadToolRequests))]
    public async Task Bad_tool_requests_are_400s_naming_the_problem_and_the_server_keeps_serving(string fields, string expected)
    {
        var body = JsonNode.Parse(fields)!.AsObject();
        body["model"] = ModelName;
        body["messages"] = JsonNode.Parse("""[{"role":"user","content":"hi"}]""");
        body["max_tokens"] = 2;
        await AssertBad(body, expected);
    }

    [Fact]
    public async Task A_thousand_tools_and_a_megabyte_schema_are_refused()
    {
        var many = new JsonArray(Enumerable.Range(0, 1000).Select(i =>
            (JsonNode?)new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = $"f{i}" } }).ToArray());
        await AssertBad(new JsonObject
        {
            ["model"] = ModelName, ["messages"] = JsonNode.Parse("""[{"role":"user","content":"hi"}]"""),
            ["tools"] = many
        }, "at most 128");
        var properties = new JsonObject();
        for (int i = 0; i < 30_000; i++) properties[$"property_{i:D6}"] = new JsonObject { ["type"] = "string" };
        var huge = new JsonObject { ["type"] = "object", ["properties"] = properties };
        await AssertBad(new JsonObject
        {
            ["model"] = ModelName, ["messages"] = JsonNode.Parse("""[{"role":"user","content":"hi"}]"""),
            ["tools"] = new JsonArray(new JsonObject
            {
                ["type"] = "function", ["function"] = new JsonObject { ["name"] = "f", ["parameters"] = huge },
            }),
        }, "longer than");
    }

    async Task AssertBad(JsonObject body, string expected)
    {
        using (var response = await http.PostAsync("/v1/chat/completions",
                                                    new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json")))
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains(expected, (string)JsonNode.Parse(text)!["error"]!["message"]!);
        }
        var ok = await Chat(new { model = ModelName, messages = Messages, max_tokens = 2 });
        Assert.Equal("assistant", (string)ok["choices"]![0]!["message"]!["role"]!);
    }
}
