using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI.Chat;
using TorchSharp;
using Wren.Serving;

namespace Wren.Tests.Serving;

/// <summary>Many clients at once against a real server: batching, disconnects, a full queue, the API key.</summary>
public sealed class ConcurrencyTests
{
    internal static StringContent Body(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    /// <summary>A request that runs for seconds on the tiny model (4000 tokens), unless stopped.</summary>
    static readonly object Long =
        new { model = LoopbackServer.ModelName, prompt = "long", max_tokens = 4000, temperature = 0, stream = true };

    static object Request(int i, bool stream) => new
    {
        model = LoopbackServer.ModelName, prompt = $"Request {i}: " + new string((char)('a' + i % 26), i % 7), max_tokens = 8 + i % 9,
        temperature = 0, stream,
    };

    /// <summary>Reads a server-sent event stream to [DONE] and returns the concatenated text.</summary>
    internal static async Task<string> ReadStream(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = new StringBuilder();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            if (line == "data: [DONE]") return text.ToString();
            foreach (var choice in JsonNode.Parse(line[6..])!["choices"]!.AsArray()) text.Append((string)choice!["text"]!);
        }
        throw new InvalidOperationException("the stream ended without data: [DONE]");
    }

    internal static async Task<long> LiveTensors(InferenceEngine engine)
    {
        long live = 0;
        await engine.InvokeAsync(() => live = DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        return live;
    }

    internal static async Task WaitUntil(Func<bool> condition, string what)
    {
        for (int i = 0; i < 500 && !condition(); i++) await Task.Delay(20);
        Assert.True(condition(), what);
    }

    [Fact]
    public async Task Thirty_two_streaming_clients_each_get_what_they_get_alone_and_nothing_leaks()
    {
        await using var server = await LoopbackServer.StartAsync(
            new EngineOptions { MaxBatch = 12, MaxQueue = 32, PrefillChunk = 16, MaxContext = 128, PrefixCacheBytes = 0 });
        var alone = new string[32];
        for (int i = 0; i < 32; i++)
        {
            using var response = await server.Http.PostAsync("/v1/completions", Body(Request(i, stream: false)));
            alone[i] = (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
        }
        long before = await LiveTensors(server.Engine);
        var together = await Task.WhenAll(Enumerable.Range(0, 32).Select(async i =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Body(Request(i, stream: true)) };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            return await ReadStream(response);
        }));
        Assert.Equal(alone, together);
        await WaitUntil(() => server.Engine.Metrics.RunningBatch.Value == 0, "the batch empties");
        Assert.Equal(before, await LiveTensors(server.Engine));
        Assert.True(server.Engine.Metrics.InterTokenLatency.Count > 32);
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_frees_its_slot()
    {
        await using var server = await LoopbackServer.StartAsync(
            new EngineOptions { MaxBatch = 1, MaxQueue = 4, PrefillChunk = 16, MaxContext = 4096, PrefixCacheBytes = 0 });
        using (var warm = await server.Http.PostAsync("/v1/completions", Body(Request(1, stream: false))))
            Assert.True(warm.IsSuccessStatusCode);
        long before = await LiveTensors(server.Engine);
        double generatedBefore = server.Engine.Metrics.GeneratedTokens.Value;
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Body(Long) })
        using (var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
        }                                                                                  // closes the connection mid-stream
        await WaitUntil(() => server.Engine.Metrics.RunningBatch.Value == 0, "the slot is freed");
        Assert.True(server.Engine.Metrics.GeneratedTokens.Value - generatedBefore < 4000, "generation stopped early");
        using (var next = await server.Http.PostAsync("/v1/completions", Body(Request(2, stream: false))))
            Assert.True(next.IsSuccessStatusCode);
        Assert.Equal(before, await LiveTensors(server.Engine));
    }

    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after_and_the_server_keeps_serving()
    {
        await using var server = await LoopbackServer.StartAsync(new EngineOptions { MaxBatch = 1, MaxQueue = 1, MaxContext = 4096 });
        using var cancel = new CancellationTokenSource();
        var running = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Body(Long) };
        using var runningResponse = await server.Http.SendAsync(running, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        var waiting = server.Http.PostAsync("/v1/completions", Body(Request(3, stream: false)));
        await WaitUntil(() => server.Engine.Metrics.QueueDepth.Value == 1, "one request waits");
        using (var refused = await server.Http.PostAsync("/v1/completions", Body(Request(4, stream: false))))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("1", refused.Headers.GetValues("Retry-After").Single());
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("queue_full", (string)error["code"]!);
            Assert.Equal("server_error", (string)error["type"]!);
        }
        cancel.Cancel();
        runningResponse.Dispose();
        using (var served = await waiting) Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        using (var after = await server.Http.PostAsync("/v1/completions", Body(Request(5, stream: false))))
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        Assert.Contains("wren_requests_total{status=\"429\"} 1", await server.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task The_API_key_is_required_when_set()
    {
        await using var server = await LoopbackServer.StartAsync(apiKey: "sesame");
        var wrong = server.OpenAi("open").GetChatClient(LoopbackServer.ModelName);
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => wrong.CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, refused.Status);
        var right = server.OpenAi("sesame").GetChatClient(LoopbackServer.ModelName);
        ChatCompletion reply = await right.CompleteChatAsync([new UserChatMessage("hi")],
                                                             new ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.Equal(3, reply.Usage.OutputTokenCount);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/health")).StatusCode);   // health stays open for probes
    }
}
