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
        Assert.Equal(expectedStatus == 503 ? "server_error" : "invalid_request_error", (string)error!["type"]!);
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
        AssertError(status, error, 400, "stop");
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
}
