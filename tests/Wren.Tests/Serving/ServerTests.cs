using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using TorchSharp;
using Wren.Inference;
using Wren.Serving;
using Wren.Tokenization;
using static TorchSharp.torch;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using ChatMessage = OpenAI.Chat.ChatMessage;

namespace Wren.Tests.Serving;

/// <summary>
/// A real Kestrel server on a loopback port, driven by the official OpenAI .NET client and Microsoft.Extensions.AI.OpenAI (chat, models,
/// errors) and by plain HTTP where the official client has no public API (legacy completions).
/// </summary>
public sealed class ServerTests : IAsyncLifetime
{
    const string M = LoopbackServer.ModelName;
    LoopbackServer server = null!;

    public async Task InitializeAsync() => server = await LoopbackServer.StartAsync();
    public async Task DisposeAsync() => await server.DisposeAsync();

    static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    async Task<JsonNode> Completion(object body)
    {
        using var response = await server.Http.PostAsync("/v1/completions", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!;
    }

    /// <summary>The text of the greedy continuation by the existing generator (batch-1 prefill, no serving code): the reference.</summary>
    string Reference(string prompt, int tokens) => server.Tokenizer.Decode(new TextGenerator(server.Model, server.Tokenizer)
        .Generate(prompt, new SamplingOptions { Temperature = 0, MaxNewTokens = tokens }).Select(t => t.TokenId).ToList());

    [Fact]
    public async Task Models_health_and_metrics_answer()
    {
        var models = await server.OpenAi().GetOpenAIModelClient().GetModelsAsync();
        Assert.Equal(LoopbackServer.ModelName, Assert.Single(models.Value).Id);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/health")).StatusCode);
        await Completion(new { model = LoopbackServer.ModelName, prompt = "abc", max_tokens = 3, temperature = 0 });
        var metrics = await server.Http.GetStringAsync("/metrics");
        foreach (var name in new[] { "wren_requests_total{status=\"200\"}", "wren_generated_tokens_total 3", "wren_prompt_tokens_total 3",
                                     "wren_queue_depth", "wren_running_batch_size", "wren_time_to_first_token_seconds_bucket",
                                     "wren_inter_token_latency_seconds_count 2", "wren_prefix_cache_hits_total" })
            Assert.Contains(name, metrics);
    }

    [Fact]
    public async Task Greedy_completion_equals_the_generator_and_usage_counts_tokens()
    {
        var response = await Completion(new { model = LoopbackServer.ModelName, prompt = "The hacker", max_tokens = 12, temperature = 0 });
        var choice = response["choices"]![0]!;
        Assert.Equal(Reference("The hacker", 12), (string)choice["text"]!);
        Assert.Equal("length", (string)choice["finish_reason"]!);
        Assert.Equal("text_completion", (string)response["object"]!);
        Assert.Equal(10, (int)response["usage"]!["prompt_tokens"]!);
        Assert.Equal(12, (int)response["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task Echo_logprobs_equal_the_scoring_logits_on_the_same_tokens()
    {
        int[] ids = [72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100];
        var response = await Completion(new { model = LoopbackServer.ModelName, prompt = ids, max_tokens = 0, echo = true, logprobs = 2 });
        var logprobs = response["choices"]![0]!["logprobs"]!;
        var values = logprobs["token_logprobs"]!.AsArray();
        Assert.Equal(ids.Length, values.Count);
        Assert.Null(values[0]);                                                           // no logprob for the first token, as OpenAI
        Assert.Equal("Hello world", (string)response["choices"]![0]!["text"]!);
        using var scope = NewDisposeScope();
        var expected = Scoring.Logits(server.Model, tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]))[0].log_softmax(-1);
        for (int t = 1; t < ids.Length; t++)
        {
            Assert.Equal(expected[t - 1][ids[t]].item<float>(), (double)values[t]!, 6);
            var top = logprobs["top_logprobs"]![t]!.AsObject();
            Assert.InRange(top.Count, 1, 2);                                              // two ids may decode to the same text
            Assert.Equal(expected[t - 1].max().item<float>(), top.Max(kv => (double)kv.Value!), 6);
        }
    }

    [Fact]
    public async Task Streamed_completion_is_framed_as_server_sent_events_and_equals_the_whole_one()
    {
        var body = new
        {
            model = LoopbackServer.ModelName, prompt = "Once upon", max_tokens = 10, temperature = 0, stream = true,
            stream_options = new { include_usage = true }
        };
        using var response = await server.Http.PostAsync("/v1/completions", Json(body));
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var raw = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("\n\ndata: [DONE]\n\n", raw);
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Equal(12, (int)chunks[^1]["usage"]!["prompt_tokens"]! + (int)chunks[^1]["usage"]!["completion_tokens"]! - 7);
        var text = string.Concat(chunks.SelectMany(c => c["choices"]!.AsArray()).Select(c => (string)c!["text"]!));
        Assert.Equal(Reference("Once upon", 10), text);
    }

    [Fact]
    public async Task Several_prompts_and_n_choices_are_indexed_prompt_major_streaming_or_not()
    {
        var body = new { model = M, prompt = new[] { "one", "two two" }, n = 2, max_tokens = 5, temperature = 0 };
        var whole = (await Completion(body))["choices"]!.AsArray();
        Assert.Equal([0, 1, 2, 3], whole.Select(c => (int)c!["index"]!));
        string[] expected = [Reference("one", 5), Reference("one", 5), Reference("two two", 5), Reference("two two", 5)];
        Assert.Equal(expected, whole.Select(c => (string)c!["text"]!));
        var streamBody = new { model = M, prompt = new[] { "one", "two two" }, n = 2, max_tokens = 5, temperature = 0, stream = true };
        using var response = await server.Http.PostAsync("/v1/completions", Json(streamBody));
        var chunks = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Where(e => e != "data: [DONE]").Select(e => JsonNode.Parse(e["data: ".Length..])!["choices"]![0]!).ToList();
        var streamed = Enumerable.Range(0, 4)
            .Select(i => string.Concat(chunks.Where(c => (int)c["index"]! == i).Select(c => (string)c["text"]!)));
        Assert.Equal(expected, streamed);
    }

    [Fact]
    public async Task A_stop_string_ends_the_text_before_it()
    {
        string full = Reference("abcabc", 24);
        string stop = full.Substring(6, 3);
        int cut = full.IndexOf(stop, StringComparison.Ordinal);
        var response = await Completion(new { model = M, prompt = "abcabc", max_tokens = 24, temperature = 0, stop = new[] { stop } });
        Assert.Equal(full[..cut], (string)response["choices"]![0]!["text"]!);
        Assert.Equal("stop", (string)response["choices"]![0]!["finish_reason"]!);
    }

    /// <summary>Byte tokens with byte 0 as the end-of-text id (the byte tokenizer itself has none).</summary>
    sealed class EndOfTextBytes : ITextTokenizer
    {
        readonly ByteTokenizer inner = new(256);
        public string Name => inner.Name;
        public int VocabularySize => inner.VocabularySize;
        public int? EndOfTextId => 0;
        public IReadOnlyList<int> Encode(string text) => inner.Encode(text);
        public string Decode(IEnumerable<int> ids) => inner.Decode(ids);
    }

    [Fact]
    public async Task Ignore_eos_generates_past_the_end_of_text_token()
    {
        await using var own = await LoopbackServer.StartAsync(tokenizer: new EndOfTextBytes());
        async Task<JsonNode> Complete(bool ignoreEos)
        {
            // logit_bias makes the end-of-text token the greedy choice at every step: it ends the request unless ignore_eos.
            var body = new
            {
                model = M, prompt = "abc", max_tokens = 5, temperature = 0, logit_bias = new Dictionary<string, int> { ["0"] = 100 },
                ignore_eos = ignoreEos
            };
            using var response = await own.Http.PostAsync("/v1/completions", Json(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonNode.Parse(text)!;
        }
        var stopped = await Complete(ignoreEos: false);
        Assert.Equal("stop", (string)stopped["choices"]![0]!["finish_reason"]!);
        Assert.Equal(1, (int)stopped["usage"]!["completion_tokens"]!);
        var ignored = await Complete(ignoreEos: true);
        Assert.Equal("length", (string)ignored["choices"]![0]!["finish_reason"]!);
        Assert.Equal(5, (int)ignored["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task Chat_through_the_OpenAI_client_streams_what_it_returns_whole()
    {
        var chat = server.OpenAi().GetChatClient(LoopbackServer.ModelName);
        ChatMessage[] messages = [new SystemChatMessage("You are terse."), new UserChatMessage("Say something.")];
        var options = new ChatCompletionOptions
        {
            Temperature = 0,
            MaxOutputTokenCount = 9,
            IncludeLogProbabilities = true,
            TopLogProbabilityCount = 2,
        };
        ChatCompletion whole = await chat.CompleteChatAsync(messages, options);
        Assert.Equal(ChatFinishReason.Length, whole.FinishReason);
        Assert.Equal(9, whole.Usage.OutputTokenCount);
        Assert.Equal(9, whole.ContentTokenLogProbabilities.Count);
        Assert.All(whole.ContentTokenLogProbabilities, t => Assert.Equal(t.LogProbability, t.TopLogProbabilities[0].LogProbability));
        var streamed = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync(messages, options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(whole.Content[0].Text, streamed.ToString());
        const string chatml = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nSay something.<|im_end|>\n" +
                              "<|im_start|>assistant\n";
        Assert.Equal(Reference(chatml, 9), whole.Content[0].Text);
    }

    [Fact]
    public async Task Microsoft_Extensions_AI_chat_client_works_against_the_server()
    {
        IChatClient client = server.OpenAi().GetChatClient(LoopbackServer.ModelName).AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        var response = await client.GetResponseAsync("Hello", options);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
        var streamed = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync("Hello", options)) streamed.Append(update.Text);
        Assert.Equal(response.Text, streamed.ToString());
    }

    [Fact]
    public async Task Created_is_the_time_of_the_request_not_of_the_server_start()
    {
        await Task.Delay(1100);   // a later second than the server's start
        long before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var completion = await Completion(new { model = M, prompt = "abc", max_tokens = 1 });
        using var chat = await server.Http.PostAsync("/v1/chat/completions",
            Json(new { model = M, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 1 }));
        long after = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        foreach (var body in new[] { completion, JsonNode.Parse(await chat.Content.ReadAsStringAsync())! })
            Assert.InRange((long)body["created"]!, before, after);
    }

    [Fact]
    public async Task A_body_over_the_default_8_MB_limit_is_413_and_the_server_keeps_serving()
    {
        // Headers only, over a raw socket: Kestrel refuses at the declared length, before a client could finish sending 9 MB.
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(server.Http.BaseAddress!.Host, server.Http.BaseAddress.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n" +
                                                        $"Content-Type: application/json\r\nContent-Length: {9 << 20}\r\n\r\n{{"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));   // Kestrel closes the connection after a 413
        var response = await new StreamReader(stream).ReadToEndAsync(timeout.Token);
        Assert.StartsWith("HTTP/1.1 413", response);
        int body = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);   // the JSON sits in one chunk of the chunked body
        var error = JsonNode.Parse(response[response.IndexOf('{', body)..(response.LastIndexOf('}') + 1)])!["error"]!;
        Assert.Equal("invalid_request_error", (string)error["type"]!);
        Assert.Equal("request_too_large", (string)error["code"]!);
        Assert.Equal(1, (int)(await Completion(new { model = M, prompt = "ok", max_tokens = 1 }))["usage"]!["completion_tokens"]!);
    }

    async Task<(int Status, JsonNode Body)> PostJson(string path, string body)
    {
        using var response = await server.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        return ((int)response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    [Fact]
    public async Task Tokenize_and_detokenize_answer_as_llama_server_does_and_refuse_bad_input()
    {
        // The byte tokenizer's ids are the UTF-8 bytes: "hé" is 68 C3 A9.
        var (status, body) = await PostJson("/tokenize", """{"content": "hé"}""");
        Assert.Equal(200, status);
        Assert.Equal("[104,195,169]", body["tokens"]!.ToJsonString());
        (status, body) = await PostJson("/tokenize", """{"content": "hé", "with_pieces": true, "add_special": true}""");
        Assert.Equal(200, status);
        Assert.Equal("""[{"id":104,"piece":"h"},{"id":195,"piece":[195]},{"id":169,"piece":[169]}]""", body["tokens"]!.ToJsonString());
        (status, body) = await PostJson("/detokenize", """{"tokens": [104, 195, 169]}""");
        Assert.Equal(200, status);
        Assert.Equal("hé", (string)body["content"]!);
        (status, body) = await PostJson("/detokenize", """{"tokens": []}""");
        Assert.Equal("", (string)body["content"]!);
        foreach (var (path, bad, field) in new[]
                 {
                     ("/tokenize", "{}", "content"), ("/tokenize", """{"content": 5}""", "content"),
                     ("/tokenize", """{"content": "a", "parse_special": true}""", "parse_special"),
                     ("/tokenize", """{"content": "a", "with_pieces": "yes"}""", "with_pieces"),
                     ("/detokenize", "{}", "tokens"), ("/detokenize", """{"tokens": "abc"}""", "tokens"),
                     ("/detokenize", """{"tokens": [1, 256]}""", "tokens"), ("/detokenize", """{"tokens": [-1]}""", "tokens"),
                     ("/detokenize", """{"tokens": [1.5]}""", "tokens"), ("/detokenize", "[1]", null),
                 })
        {
            (status, body) = await PostJson(path, bad);
            Assert.Equal(400, status);
            Assert.Equal(field, (string?)body["error"]!["param"]);
            Assert.False(string.IsNullOrEmpty((string?)body["error"]!["message"]), bad);
        }
        using var get = await server.Http.GetAsync("/tokenize");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
        (status, _) = await PostJson("/tokenize", """{"content": "still serving"}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task The_system_fingerprint_is_stable_across_requests_and_chunks()
    {
        var first = await Completion(new { model = M, prompt = "a", max_tokens = 1, seed = 3 });
        var second = await Completion(new { model = M, prompt = "b", max_tokens = 1 });
        string fingerprint = (string)first["system_fingerprint"]!;
        Assert.Matches("^fp_[0-9a-f]{10}$", fingerprint);
        Assert.Equal(fingerprint, (string)second["system_fingerprint"]!);
        var chat = server.OpenAi().GetChatClient(M);
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")],
                           new ChatCompletionOptions { MaxOutputTokenCount = 2 }))
            Assert.Equal(fingerprint, update.SystemFingerprint);
        Assert.NotEqual(fingerprint, OpenAiServer.Fingerprint(M, ScalarType.BFloat16));
    }

    public static TheoryData<string, string, int, string?, string?> BadRequests => new()
    {
        { "malformed JSON", "{\"model\": ", 400, null, null },
        { "not an object", "[1, 2]", 400, null, null },
        { "wrong type", $"{{\"model\": \"{M}\", \"prompt\": \"a\", \"max_tokens\": \"ten\"}}", 400, "max_tokens", null },
        { "wrong prompt type", $"{{\"model\": \"{LoopbackServer.ModelName}\", \"prompt\": {{\"a\": 1}}}}", 400, "prompt", null },
        { "negative max_tokens", $"{{\"model\": \"{M}\", \"prompt\": \"a\", \"max_tokens\": -1}}", 400, "max_tokens", null },
        { "unknown model", "{\"model\": \"gpt-9\", \"prompt\": \"a\"}", 404, "model", "model_not_found" },
        { "too-long prompt", $"{{\"model\": \"{M}\", \"prompt\": \"{new string('x', 300)}\"}}", 400, "prompt",
          "context_length_exceeded" },
        { "token outside the vocabulary", $"{{\"model\": \"{LoopbackServer.ModelName}\", \"prompt\": [1, 999]}}", 400, "prompt", null },
        { "bad temperature", $"{{\"model\": \"{M}\", \"prompt\": \"a\", \"temperature\": 7}}", 400, "temperature", null },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_requests_get_an_OpenAI_error_and_the_server_keeps_serving(string name, string body, int status, string? param,
                                                                                      string? code)
    {
        using var response = await server.Http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.False(string.IsNullOrEmpty((string?)error["message"]), name);
        Assert.Equal(status == 404 ? "invalid_request_error" : "invalid_request_error", (string)error["type"]!);
        Assert.Equal(param, (string?)error["param"]);
        Assert.Equal(code, (string?)error["code"]);
        Assert.DoesNotContain(" at Wren.", (string)error["message"]!);                     // no stack trace
        var ok = await Completion(new { model = LoopbackServer.ModelName, prompt = "ok", max_tokens = 2 });
        Assert.Equal(2, (int)ok["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task Unknown_routes_and_methods_are_JSON_errors_and_the_official_client_sees_the_status()
    {
        using var route = await server.Http.GetAsync("/v1/engines");
        Assert.Equal(HttpStatusCode.NotFound, route.StatusCode);
        Assert.Equal("not_found", (string)JsonNode.Parse(await route.Content.ReadAsStringAsync())!["error"]!["code"]!);
        using var method = await server.Http.GetAsync("/v1/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, method.StatusCode);
        var chat = server.OpenAi().GetChatClient("no-such-model");
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, refused.Status);
    }
}
