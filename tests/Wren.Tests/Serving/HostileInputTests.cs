using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Wren.Serving;
using Wren.Tokenization;

namespace Wren.Tests.Serving;

/// <summary>
/// Requests a hostile or careless client sends (issue 19): broken text, oversized prompts, requests that can never fit, and each
/// must get a 4xx OpenAI error naming its cause while the server keeps serving.
/// </summary>
public sealed class HostileInputTests
{
    const string M = LoopbackServer.ModelName;

    /// <summary>The byte tokenizer, counting the texts it is asked to encode.</summary>
    sealed class CountingTokenizer : ITextTokenizer
    {
        readonly ByteTokenizer inner = new(256);
        public int Encodes;
        public string Name => inner.Name;
        public int VocabularySize => inner.VocabularySize;
        public int? EndOfTextId => inner.EndOfTextId;
        public IReadOnlyList<int> Encode(string text)
        {
            Interlocked.Increment(ref Encodes);
            return inner.Encode(text);
        }
        public string Decode(IEnumerable<int> ids) => inner.Decode(ids);
    }

    static ByteArrayContent JsonBytes(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new("application/json");
        return content;
    }

    static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    /// <summary>Posts and returns the status and the OpenAI error object (null for a success).</summary>
    static async Task<(int Status, JsonNode? Error)> Post(LoopbackServer server, string path, HttpContent content)
    {
        using var response = await server.Http.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, response.IsSuccessStatusCode ? null : JsonNode.Parse(text)!["error"]);
    }

    static async Task AssertServes(LoopbackServer server)
    {
        var (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = "ok", max_tokens = 2 }));
        Assert.True(status == 200, error?.ToJsonString());
    }

    static void AssertError(int status, JsonNode? error, int expectedStatus, string? param, string? code = null)
    {
        Assert.True(status == expectedStatus, $"{status}: {error?.ToJsonString()}");
        Assert.Equal(expectedStatus is 429 or 503 ? "server_error" : "invalid_request_error", (string)error!["type"]!);
        Assert.Equal(param, (string?)error["param"]);
        if (code is not null) Assert.Equal(code, (string?)error["code"]);
        Assert.DoesNotContain("Exception", (string)error["message"]!);
    }

    [Fact]
    public async Task Lone_surrogates_and_invalid_UTF8_are_400_naming_the_field()
    {
        await using var server = await LoopbackServer.StartAsync();
        // A JSON escape of half an emoji, in a prompt, a chat message and a stop string.
        var (status, error) = await Post(server, "/v1/completions", JsonBytes(Encoding.ASCII.GetBytes(
            $"{{\"model\": \"{M}\", \"prompt\": \"hi \\ud800 x\", \"max_tokens\": 2}}")));
        AssertError(status, error, 400, "prompt");
        (status, error) = await Post(server, "/v1/chat/completions", JsonBytes(Encoding.ASCII.GetBytes(
            $"{{\"model\": \"{M}\", \"messages\": [{{\"role\": \"user\", \"content\": \"cut \\ude00\"}}]}}")));
        AssertError(status, error, 400, "messages[0].content");
        (status, error) = await Post(server, "/v1/completions", JsonBytes(Encoding.ASCII.GetBytes(
            $"{{\"model\": \"{M}\", \"prompt\": \"a\", \"stop\": [\"\\udfff\"]}}")));
        AssertError(status, error, 400, "stop[0]");
        // The same anywhere else in the body: a message's name, a template kwarg's key, a schema's const.
        (status, error) = await Post(server, "/v1/chat/completions", JsonBytes(Encoding.ASCII.GetBytes(
            $"{{\"model\": \"{M}\", \"messages\": [{{\"role\": \"user\", \"name\": \"\\udc00\", \"content\": \"x\"}}]}}")));
        AssertError(status, error, 400, "messages[0].name");
        (status, error) = await Post(server, "/v1/chat/completions", JsonBytes(Encoding.ASCII.GetBytes(
            $"{{\"model\": \"{M}\", \"messages\": [], \"chat_template_kwargs\": {{\"\\ud800\": 1}}}}")));
        Assert.Equal((400, "chat_template_kwargs"), (status, (string?)error!["param"]));
        (status, error) = await Post(server, "/v1/completions", JsonBytes(Encoding.ASCII.GetBytes(
            $"{{\"model\": \"{M}\", \"prompt\": \"a\", \"response_format\": {{\"type\": \"json_schema\", " +
            "\"json_schema\": {\"name\": \"n\", \"schema\": {\"const\": \"\\ud800\"}}}}")));
        AssertError(status, error, 400, "response_format.json_schema.schema.const");
        // Raw bytes that are not UTF-8 (0xC3 0x28: a lead byte without its continuation; 0xFF never occurs in UTF-8).
        foreach (byte[] bad in new[] { new byte[] { 0xC3, 0x28 }, [0xFF] })
        {
            byte[] body = [.. Encoding.ASCII.GetBytes($"{{\"model\": \"{M}\", \"prompt\": \"hi "), .. bad, .. "\"}"u8];
            (status, error) = await Post(server, "/v1/completions", JsonBytes(body));
            Assert.Equal(400, status);
            Assert.Equal("invalid_request_error", (string)error!["type"]!);
            Assert.DoesNotContain("Exception", (string)error["message"]!);
        }
        await AssertServes(server);
    }

    [Fact]
    public async Task Text_too_long_for_the_context_is_refused_before_the_tokenizer_sees_it()
    {
        var tokenizer = new CountingTokenizer();
        await using var server = await LoopbackServer.StartAsync(tokenizer: tokenizer);   // 256-token context
        // 200 kB of text: at 2 · (3 + 1) bytes per token at most (a lone byte decodes to U+FFFD), over 25,000 tokens.
        string huge = new('x', 200_000);
        int before = tokenizer.Encodes;
        var (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = huge, max_tokens = 1 }));
        AssertError(status, error, 400, "prompt", "context_length_exceeded");
        (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = new[] { "fine", huge }, max_tokens = 1 }));
        AssertError(status, error, 400, "prompt", "context_length_exceeded");
        (status, error) = await Post(server, "/v1/chat/completions",
                                     Json(new { model = M, messages = new[] { new { role = "user", content = huge } } }));
        AssertError(status, error, 400, "messages", "context_length_exceeded");
        Assert.True(tokenizer.Encodes - before <= 1, $"the tokenizer encoded {tokenizer.Encodes - before} texts");   // "fine" at most
        await AssertServes(server);
    }

    [Fact]
    public async Task A_prompt_that_alone_fills_the_context_names_the_prompt_not_max_tokens()
    {
        await using var server = await LoopbackServer.StartAsync();   // 256 tokens, one byte each
        var (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = new string('x', 256), max_tokens = 1 }));
        AssertError(status, error, 400, "prompt", "context_length_exceeded");
        var ids = Enumerable.Repeat(120, 300);
        (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = ids, max_tokens = 1 }));
        AssertError(status, error, 400, "prompt", "context_length_exceeded");
        (status, error) = await Post(server, "/v1/chat/completions",
                                     Json(new { model = M, messages = new[] { new { role = "user", content = new string('x', 250) } } }));
        AssertError(status, error, 400, "messages", "context_length_exceeded");
        (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = new string('x', 200), max_tokens = 100 }));
        AssertError(status, error, 400, "max_tokens", "context_length_exceeded");   // the prompt fits; the completion does not
        await AssertServes(server);
    }

    [Fact]
    public async Task A_body_over_max_request_bytes_is_413_even_without_a_declared_length()
    {
        await using var server = await LoopbackServer.StartAsync(serve: o => o with { MaxRequestBytes = 64 << 10 });
        // Chunked, so Kestrel learns the size only while the body is parsed: the limit ends it there.
        var chunk = Encoding.ASCII.GetBytes($"{{\"model\": \"{M}\", \"prompt\": \"{new string('x', 100_000)}\"}}");
        var head = Encoding.ASCII.GetBytes("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                                           $"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk.Length:x}\r\n");
        var reply = await server.RawAsync([.. head, .. chunk, .. "\r\n0\r\n\r\n"u8]);
        Assert.StartsWith("HTTP/1.1 413", reply);
        Assert.Contains("request_too_large", reply);
        var (status, _) = await Post(server, "/v1/completions", Json(new { model = M, prompt = new string('x', 30_000), max_tokens = 1 }));
        Assert.Equal(400, status);                                                          // under the limit: read, then refused
        await AssertServes(server);
    }

    [Fact]
    public async Task A_request_that_can_never_fit_is_400_naming_the_limit_not_503()
    {
        await using var server = await LoopbackServer.StartAsync(new EngineOptions { MaxBatch = 4, MaxQueue = 16, MaxContext = 64 });
        var prompts = Enumerable.Range(0, 64).Select(i => $"p{i}").ToArray();             // 64 × 5 = 320 rows > 4 + 16
        var (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = prompts, n = 5, max_tokens = 1 }));
        AssertError(status, error, 400, "n", "too_many_sequences");
        Assert.Contains("20", (string)error!["message"]!);
        (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = prompts[..21], max_tokens = 1 }));
        AssertError(status, error, 400, "prompt", "too_many_sequences");
        Assert.Equal(0, server.Engine.Admitted);
        var (fits, _) = await Post(server, "/v1/completions", Json(new { model = M, prompt = prompts[..4], n = 5, max_tokens = 1 }));
        Assert.Equal(200, fits);
    }

    static HttpRequestMessage Get(string path, string? host = null, string? origin = null, string? authorization = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (host is not null) request.Headers.Host = host;
        if (origin is not null) request.Headers.Add("Origin", origin);
        if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);
        return request;
    }

    [Fact]
    public async Task Host_headers_that_are_not_this_servers_are_refused_unless_allowed()
    {
        await using var server = await LoopbackServer.StartAsync(serve: o => o with { AllowedHosts = ["wren.lan"] });
        var hosts = new[] { ("rebind.attacker.example", 400), ($"localhost:{server.Address.Port}", 200), ("127.0.0.1", 200),
                            ("[::1]", 200), ("WREN.lan:80", 200), ("wren.lan.attacker.example", 400) };
        foreach (var (host, expected) in hosts)
        {
            using var response = await server.Http.SendAsync(Get("/v1/models", host));
            Assert.True(expected == (int)response.StatusCode, $"{host}: {(int)response.StatusCode}");
            if (expected == 400)
                Assert.Equal("host_not_allowed", (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!);
        }
        await using var any = await LoopbackServer.StartAsync(serve: o => o with { AllowedHosts = ["*"] });
        using var anyHost = await any.Http.SendAsync(Get("/v1/models", "rebind.attacker.example"));
        Assert.Equal(HttpStatusCode.OK, anyHost.StatusCode);
    }

    [Theory]
    [InlineData("text/plain", 415)]
    [InlineData("application/x-www-form-urlencoded", 415)]
    [InlineData("multipart/form-data; boundary=x", 415)]
    [InlineData(null, 415)]
    [InlineData("application/json; charset=iso-8859-1", 415)]
    [InlineData("application/json; charset=UTF-8", 200)]
    [InlineData("Application/JSON", 200)]
    public async Task Bodies_that_are_not_JSON_are_415(string? contentType, int expected)
    {
        await using var server = await LoopbackServer.StartAsync();
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes($"{{\"model\": \"{M}\", \"prompt\": \"a\", \"max_tokens\": 1}}"));
        if (contentType is not null) content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        var (status, error) = await Post(server, "/v1/completions", content);
        Assert.Equal(expected, status);
        if (expected == 415) Assert.Equal("unsupported_media_type", (string)error!["code"]!);
    }

    [Fact]
    public async Task The_key_is_a_case_insensitive_bearer_token_and_covers_metrics_unless_public()
    {
        await using var server = await LoopbackServer.StartAsync(apiKey: "sesame");
        foreach (var (authorization, expected) in new[] { ((string?)null, 401), ("Bearer open", 401), ("Bearer sesam", 401),
                                                          ("Basic sesame", 401), ("sesame", 401), ("Bearer sesame", 200),
                                                          ("bearer sesame", 200), ("BEARER  sesame ", 200) })
            foreach (var path in new[] { "/v1/models", "/metrics" })
            {
                using var response = await server.Http.SendAsync(Get(path, authorization: authorization));
                Assert.True(expected == (int)response.StatusCode, $"{path} '{authorization}': {(int)response.StatusCode}");
                if (expected == 401)
                    Assert.StartsWith("Bearer realm=\"wren\"", response.Headers.WwwAuthenticate.ToString());
            }
        using (var health = await server.Http.GetAsync("/health")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        await using var open = await LoopbackServer.StartAsync(apiKey: "sesame", serve: o => o with { MetricsPublic = true });
        using (var metrics = await open.Http.GetAsync("/metrics")) Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        using (var models = await open.Http.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
    }

    [Fact]
    public void The_api_key_comes_from_one_source_and_a_file_keeps_it_out_of_ps()
    {
        string file = Path.Combine(TestSupport.TempDir(), "key");
        File.WriteAllText(file, "from-file\nsecond line\n");
        Assert.Equal("from-file", ServeOptions.ApiKeyFrom(null, file, "from-env"));
        Assert.Equal("given", ServeOptions.ApiKeyFrom("given", null, "from-env"));
        Assert.Equal("from-env", ServeOptions.ApiKeyFrom(null, null, "from-env"));
        Assert.Null(ServeOptions.ApiKeyFrom(null, null, ""));
        Assert.Contains("not both", Assert.Throws<WrenException>(() => ServeOptions.ApiKeyFrom("given", file, null)).Message);
        Assert.Contains("does not exist", Assert.Throws<WrenException>(() => ServeOptions.ApiKeyFrom(null, file + "x", null)).Message);
        File.WriteAllText(file, "\n");
        Assert.Contains("holds no key", Assert.Throws<WrenException>(() => ServeOptions.ApiKeyFrom(null, file, null)).Message);
    }

    [Fact]
    public async Task CORS_answers_only_the_configured_origins()
    {
        static HttpRequestMessage Preflight(string origin)
        {
            var request = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
            request.Headers.Add("Origin", origin);
            request.Headers.Add("Access-Control-Request-Method", "POST");
            request.Headers.Add("Access-Control-Request-Headers", "authorization, content-type");
            return request;
        }
        await using (var closed = await LoopbackServer.StartAsync())
        {
            using var response = await closed.Http.SendAsync(Preflight("http://localhost:3000"));
            Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
            Assert.False(response.Headers.Contains("Access-Control-Allow-Origin"));
        }
        await using var server = await LoopbackServer.StartAsync(apiKey: "k",
                                                                 serve: o => o with { CorsOrigins = ["http://localhost:3000"] });
        using (var preflight = await server.Http.SendAsync(Preflight("http://localhost:3000")))
        {
            Assert.Equal(HttpStatusCode.NoContent, preflight.StatusCode);                  // no key needed: browsers send none
            Assert.Equal("http://localhost:3000", preflight.Headers.GetValues("Access-Control-Allow-Origin").Single());
            Assert.Contains("POST", preflight.Headers.GetValues("Access-Control-Allow-Methods").Single());
            Assert.Contains("Authorization", preflight.Headers.GetValues("Access-Control-Allow-Headers").Single());
        }
        using (var other = await server.Http.SendAsync(Preflight("https://evil.example")))
            Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
        using (var models = await server.Http.SendAsync(Get("/v1/models", origin: "http://localhost:3000", authorization: "Bearer k")))
        {
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
            Assert.Equal("http://localhost:3000", models.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }
    }

    public static TheoryData<string, string, string> UnsupportedFields => new()
    {
        { "/v1/completions", "best_of", "3" }, { "/v1/completions", "suffix", "\"tail\"" },
    };

    [Theory]
    [MemberData(nameof(UnsupportedFields))]
    public async Task Fields_the_server_does_not_honour_are_400_naming_them(string path, string field, string value)
    {
        await using var server = await LoopbackServer.StartAsync();
        string input = path == "/v1/completions" ? "\"prompt\": \"a\"" : "\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]";
        var (status, error) = await Post(server, path, JsonBytes(Encoding.UTF8.GetBytes(
            $"{{\"model\": \"{M}\", {input}, \"max_tokens\": 1, \"{field}\": {value}}}")));
        AssertError(status, error, 400, field, "unsupported_parameter");
    }

    [Fact]
    public async Task Neutral_values_of_unsupported_fields_are_accepted_and_the_official_client_sees_the_refusals()
    {
        await using var server = await LoopbackServer.StartAsync();
        var (status, error) = await Post(server, "/v1/completions", Json(new
        {
            model = M, prompt = "a", max_tokens = 1, logit_bias = new { }, presence_penalty = 0, frequency_penalty = 0.0, best_of = 1,
            suffix = "", response_format = new { type = "text" }, tool_choice = "auto", user = "u",
        }));
        Assert.True(status == 200, error?.ToJsonString());
        var chat = server.OpenAi().GetChatClient(M);
        OpenAI.Chat.ChatMessage[] hi = [new OpenAI.Chat.UserChatMessage("hi")];
        var penalized = await chat.CompleteChatAsync(hi, new OpenAI.Chat.ChatCompletionOptions
        {
            PresencePenalty = 0.5f, FrequencyPenalty = -1f, MaxOutputTokenCount = 3, EndUserId = "advisory",
        });
        Assert.Equal(3, penalized.Value.Usage.OutputTokenCount);
        Assert.StartsWith("fp_", penalized.Value.SystemFingerprint);
        var refused = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => chat.CompleteChatAsync(hi,
            new OpenAI.Chat.ChatCompletionOptions { PresencePenalty = 2.5f, MaxOutputTokenCount = 1 }));
        Assert.Equal(400, refused.Status);
        Assert.Contains("presence_penalty", refused.Message);
        refused = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => chat.CompleteChatAsync(hi,
            new OpenAI.Chat.ChatCompletionOptions { FrequencyPenalty = -3f, MaxOutputTokenCount = 1 }));
        Assert.Contains("frequency_penalty", refused.Message);
        var stops = new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 1 };
        foreach (var stop in new[] { "a", "b", "c", "d", "e" }) stops.StopSequences.Add(stop);
        refused = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => chat.CompleteChatAsync(hi, stops));
        Assert.Contains("'stop' takes at most 4", refused.Message);
        var model = await server.OpenAi().GetOpenAIModelClient().GetModelAsync(M);
        Assert.Equal(M, model.Value.Id);
        var missing = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(
            () => server.OpenAi().GetOpenAIModelClient().GetModelAsync("gpt-9"));
        Assert.Equal(404, missing.Status);
    }

    [Fact]
    public async Task A_request_past_the_timeout_is_408_or_ends_its_stream_with_an_error_and_frees_its_slot()
    {
        await using var server = await LoopbackServer.StartAsync(
            new EngineOptions { MaxBatch = 1, MaxQueue = 2, PrefillChunk = 16, MaxContext = 16384, PrefixCacheBytes = 0 },
            serve: o => o with { RequestTimeout = TimeSpan.FromSeconds(0.5) });
        var (status, error) = await Post(server, "/v1/completions", Json(new { model = M, prompt = "long", max_tokens = 16000 }));
        Assert.Equal(408, status);
        Assert.Equal("request_timeout", (string)error!["code"]!);
        using var stream = await server.Http.PostAsync("/v1/completions",
                                                       Json(new { model = M, prompt = "long", max_tokens = 16000, stream = true }));
        var events = (await stream.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("request_timeout", (string)JsonNode.Parse(events[^1]["data: ".Length..])!["error"]!["code"]!);
        Assert.DoesNotContain("data: [DONE]", events);
        for (int i = 0; i < 250 && server.Engine.Admitted > 0; i++) await Task.Delay(20);
        Assert.Equal(0, server.Engine.Admitted);
        await AssertServes(server);
    }

    [Fact]
    public async Task Many_hostile_clients_at_once_leave_the_server_answering_with_empty_queues()
    {
        await using var server = await LoopbackServer.StartAsync(
            new EngineOptions { MaxBatch = 4, MaxQueue = 8, PrefillChunk = 16, MaxContext = 1024, PrefixCacheBytes = 0 },
            serve: o => o with { MaxRequestBytes = 32 << 10 });
        string port = $"{server.Address.Port}";
        byte[] Raw(string head, byte[] body) => [.. Encoding.ASCII.GetBytes(head.Replace("{port}", port)), .. body];
        var random = new Random(19);
        async Task Disconnect(int i)
        {
            // Streams a long completion, reads a few events, then hangs up (or gives up while still queued).
            using var cancel = new CancellationTokenSource();
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Json(new { model = M, prompt = $"client {i}", max_tokens = 900, stream = true }),
            };
            try
            {
                cancel.CancelAfter(TimeSpan.FromMilliseconds(50 + 20 * i));
                using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
                for (int line = 0; line < 1 + i % 5; line++) await reader.ReadLineAsync(cancel.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or HttpRequestException or IOException) { }
        }
        var garbage = new byte[600];
        random.NextBytes(garbage);
        string json = $"{{\"model\": \"{M}\", \"prompt\": \"x\", \"max_tokens\": 2}}";
        var clients = new List<Task>();
        for (int i = 0; i < 16; i++) clients.Add(Disconnect(i));
        for (int i = 0; i < 4; i++)
        {
            clients.Add(server.RawAsync(garbage, seconds: 5));                                            // not HTTP at all
            clients.Add(server.RawAsync(Raw("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                                            "Content-Length: 99999999\r\nConnection: close\r\n\r\n", "{"u8.ToArray()), 5));   // oversized
            clients.Add(server.RawAsync(Raw("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                                            "Content-Length: 5000\r\n\r\n", "{\"model\": "u8.ToArray()), 1));      // body cut off
            clients.Add(server.RawAsync(Raw("POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n" +
                                            "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n", "{}"u8.ToArray()), 5));
            clients.Add(Post(server, "/v1/completions", new StringContent(json, Encoding.UTF8, "text/plain")));   // 415
            clients.Add(Post(server, "/v1/completions", JsonBytes([.. Encoding.ASCII.GetBytes($"{{\"model\": \"{M}\", \"prompt\": \""),
                                                                   0xED, 0xA0, 0x80, .. "\"}"u8])));             // UTF-8 of a surrogate
            clients.Add(Post(server, "/v1/completions", Json(new { model = M, prompt = new string('y', 30_000) })));   // too long
            clients.Add(Post(server, "/v1/completions", Json(new { model = M, prompt = new[] { "a", "b", "c" }, n = 5 })));  // 15 > 12
        }
        await Task.WhenAll(clients);
        for (int i = 0; i < 500 && (server.Engine.Admitted > 0 || server.Engine.Metrics.RunningBatch.Value > 0); i++) await Task.Delay(20);
        Assert.Equal(0, server.Engine.Admitted);
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Contains("\nwren_queue_depth 0\n", metrics);
        Assert.Contains("\nwren_running_batch_size 0\n", metrics);
        Assert.DoesNotContain("status=\"500\"", metrics);
        var reply = await server.OpenAi().GetChatClient(M).CompleteChatAsync([new OpenAI.Chat.UserChatMessage("still there?")],
            new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.Equal(3, reply.Value.Usage.OutputTokenCount);
    }
}
