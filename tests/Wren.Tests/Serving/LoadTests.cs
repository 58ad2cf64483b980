using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Wren.Serving;
using static Wren.Tests.Serving.ConcurrencyTests;

namespace Wren.Tests.Serving;

/// <summary>Runs alone: the load test reads the process's resident memory, which tests beside it would move.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LoadCollection
{
    public const string Name = "load";
}

/// <summary>
/// Issue 22 part 4: 64 streaming clients with random disconnects against a real Kestrel server on loopback, for a bounded
/// time (20 s; <c>WREN_LOAD_SECONDS=60</c> runs the 60 s). Nothing leaks — every admitted request is released, every
/// slot is free, the engine thread's live tensors are back at their level and resident memory stays within 10 % of its
/// level after a warm-up run of the same load — and every stream that completed equals its request's output alone.
/// </summary>
[Collection(LoadCollection.Name)]
public sealed class LoadTests
{
    const int Clients = 64, Prompts = 16;

    static object Request(int i, bool stream) => new
    {
        model = LoopbackServer.ModelName, prompt = $"Load {i}: " + new string((char)('a' + i), 3 + 5 * i), max_tokens = 4 + i % 13,
        temperature = 0, stream,
    };

    sealed class Tally
    {
        public int Completed, Disconnected, Refused;
    }

    /// <summary>Clients send random prompts until <paramref name="seconds"/> pass; about a third leave after a few events.</summary>
    static async Task Load(LoopbackServer server, string[] alone, double seconds, int seed, Tally tally)
    {
        var end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(async client =>
        {
            var random = new Random(seed * 1000 + client);
            while (Stopwatch.GetTimestamp() < end)
            {
                int i = random.Next(Prompts);
                bool leave = random.NextDouble() < 0.3;
                using var cancel = new CancellationTokenSource();
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Body(Request(i, stream: true)) };
                using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
                if (response.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    Assert.Equal("1", response.Headers.GetValues("Retry-After").Single());
                    Interlocked.Increment(ref tally.Refused);
                    await Task.Delay(50);
                    continue;
                }
                if (leave)
                {
                    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
                    for (int lines = random.Next(4); lines > 0 && await reader.ReadLineAsync(cancel.Token) is not null; lines--) { }
                    cancel.Cancel();                                                     // the connection closes mid-stream
                    Interlocked.Increment(ref tally.Disconnected);
                    continue;
                }
                Assert.Equal(alone[i], await ReadStream(response));
                Interlocked.Increment(ref tally.Completed);
            }
        }));
    }

    static async Task<long> Idle(LoopbackServer server)
    {
        var engine = server.Engine;
        await WaitUntil(() => engine.Admitted == 0 && engine.Metrics.QueueDepth.Value == 0 && engine.Metrics.RunningBatch.Value == 0
                              && engine.Metrics.PrefillingPrompts.Value == 0, "every request is released and every slot free");
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    [Fact]
    public async Task Sixty_four_clients_with_random_disconnects_leak_nothing_and_get_their_solo_outputs()
    {
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("WREN_LOAD_SECONDS"), out var s) && s > 0 ? s : 20;
        await using var server = await LoopbackServer.StartAsync(new EngineOptions
        {
            MaxBatch = 16, MaxQueue = 64, PrefillChunk = 16, MaxBatchedTokens = 64, MaxContext = 256, PrefixCacheBytes = 8L << 20,
        });
        var alone = new string[Prompts];
        for (int i = 0; i < Prompts; i++)
        {
            using var response = await server.Http.PostAsync("/v1/completions", Body(Request(i, stream: false)));
            alone[i] = (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
        }
        var warm = new Tally();
        await Load(server, alone, Math.Max(3, seconds / 5), seed: 1, warm);
        long residentWarm = await Idle(server), liveWarm = await LiveTensors(server.Engine);
        var tally = new Tally();
        await Load(server, alone, seconds, seed: 2, tally);
        long resident = await Idle(server);
        Assert.Equal(liveWarm, await LiveTensors(server.Engine));
        Assert.True(resident <= residentWarm * 1.1, $"resident memory {residentWarm / 1e6:F0} MB after warm-up → {resident / 1e6:F0} MB");
        Assert.True(tally.Completed > Clients && tally.Disconnected > 0,
                    $"{tally.Completed} completed, {tally.Disconnected} disconnected, {tally.Refused} refused");
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Contains("wren_preemptions_total 0", metrics);
        Assert.Contains("wren_batched_tokens_per_step_count", metrics);
        Assert.Contains("wren_queue_depth 0", metrics);
        Assert.Contains("wren_running_batch_size 0", metrics);
    }
}
