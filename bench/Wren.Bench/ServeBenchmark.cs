using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Wren.Models;
using Wren.Serving;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Bench;

/// <summary>
/// Load generator for <c>wren serve</c>: the real HTTP server (Kestrel on a loopback port, in this process) over random-weight
/// presets, driven by N concurrent streaming clients that each send <c>--requests</c> completions of <c>--prompt</c> random
/// token ids (after a <c>--shared</c>-token system prompt common to all, in the shared-prompt scenarios) and read
/// <c>--new</c> tokens greedily. Per level: aggregate generated tokens/s (all tokens ÷ wall time), time to first token and
/// inter-token latency p50/p99 as the client sees them, and the slots the engine fits in <c>--max-memory</c>. With
/// <c>--json-schema FILE</c> every request is constrained to that schema (<c>response_format</c>), to measure the mask's cost.
/// </summary>
public static class ServeBenchmark
{
    sealed record Scenario(string Name, int Shared, long PrefixCacheBytes);

    sealed record RequestTiming(double FirstToken, IReadOnlyList<double> Gaps, int Tokens);

    public static int Run(string[] args) => RunAsync(args).GetAwaiter().GetResult();

    static async Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        var models = Arg("--models", "flash-300m,llama-300m").Split(',');
        var levels = Arg("--streams", "1,4,16,64").Split(',').Select(int.Parse).ToArray();
        int prompt = int.Parse(Arg("--prompt", "256")), newTokens = int.Parse(Arg("--new", "128"));
        int shared = int.Parse(Arg("--shared", "1024")), requests = int.Parse(Arg("--requests", "2"));
        int chunk = int.Parse(Arg("--chunk", "128")), batchedTokens = int.Parse(Arg("--max-batched-tokens", "256"));
        var schema = Arg("--json-schema", "") is { Length: > 0 } file
            ? System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(file)) : null;
        long? maxMemory = Arg("--max-memory-gb", "") is { Length: > 0 } m ? (long)(double.Parse(m) * (1L << 30)) : null;
        var scenarios = new List<Scenario> { new("no shared prompt", 0, 512L << 20) };
        if (shared > 0)
            scenarios.AddRange([new($"{shared}-token shared prompt, cache off", shared, 0),
                                new($"{shared}-token shared prompt, cache on", shared, 512L << 20)]);

        Console.WriteLine($"# serve: prompt {prompt} (+shared), {newTokens} new tokens greedy, {requests} requests per stream, " +
                          $"prefill chunk {chunk}, max batched tokens {Math.Max(chunk, batchedTokens)}, " +
                          $"{(schema is null ? "free text" : "constrained by --json-schema")}, " +
                          $"max memory {(maxMemory is { } mm ? $"{mm / 1e9:F1} GB" : "unbounded")}; " +
                          Wren.Runtime.WrenRuntime.Describe());
        Console.WriteLine("| model | scenario | slots | streams | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var name in models)
        {
            var config = HybridConfig.Load(name);
            using var model = new HybridForCausalLM(config);
            Initialization.Apply(model, 0);
            model.eval();
            foreach (var scenario in scenarios)
            {
                var options = new EngineOptions
                {
                    MaxBatch = Math.Min(levels.Max(), EngineOptions.MaxSlots), MaxQueue = 1024, PrefillChunk = chunk,
                    MaxContext = scenario.Shared + prompt + newTokens, PrefixCacheBytes = scenario.PrefixCacheBytes,
                    MaxMemoryBytes = maxMemory, MaxBatchedTokens = Math.Max(chunk, batchedTokens),
                };
                using var engine = new InferenceEngine(model, new ByteTokenizer(config.VocabSize), options);
                var template = ChatTemplate.BuiltIn("chatml");
                await using var server = await OpenAiServer.StartAsync(engine, template, new ServeOptions(name, Port: 0));
                using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromHours(1) };
                var random = new Random(1);
                var system = Enumerable.Range(0, scenario.Shared).Select(_ => random.Next(config.VocabSize)).ToArray();
                int[] Prompt() => [.. system, .. Enumerable.Range(0, prompt).Select(_ => random.Next(config.VocabSize))];
                await Complete(http, name, Prompt(), newTokens, schema);                  // warm-up (and the shared prefix, cached)
                foreach (int streams in levels)
                {
                    var prompts = Enumerable.Range(0, streams)
                        .Select(_ => Enumerable.Range(0, requests).Select(_ => Prompt()).ToArray()).ToArray();
                    var clock = Stopwatch.StartNew();
                    var timings = (await Task.WhenAll(prompts.Select(async mine =>
                    {
                        var list = new List<RequestTiming>();
                        foreach (var p in mine) list.Add(await Complete(http, name, p, newTokens, schema));
                        return list;
                    }))).SelectMany(t => t).ToList();
                    double wall = clock.Elapsed.TotalSeconds;
                    var ttft = timings.Select(t => t.FirstToken).ToList();
                    var itl = timings.SelectMany(t => t.Gaps).ToList();
                    double rate = timings.Sum(t => t.Tokens) / wall;
                    Console.WriteLine($"| {name} | {scenario.Name} | {engine.Slots} | {streams} | {rate:F1} | " +
                                      $"{Percentile(ttft, 0.5) * 1e3:F0} | {Percentile(ttft, 0.99) * 1e3:F0} | " +
                                      $"{Percentile(itl, 0.5) * 1e3:F1} | {Percentile(itl, 0.99) * 1e3:F1} |");
                }
            }
        }
        return 0;
    }

    /// <summary>One streamed completion: seconds to the first token event and between the following ones.</summary>
    /// <param name="schema">When set, the request's <c>response_format</c> is this JSON schema (constrained decoding).</param>
    static async Task<RequestTiming> Complete(HttpClient http, string model, int[] prompt, int tokens,
                                              System.Text.Json.Nodes.JsonNode? schema)
    {
        var fields = new System.Text.Json.Nodes.JsonObject
        {
            ["model"] = model, ["prompt"] = JsonSerializer.SerializeToNode(prompt), ["max_tokens"] = tokens, ["temperature"] = 0,
            ["stream"] = true,
        };
        if (schema is not null)
            fields["response_format"] = new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "json_schema",
                ["json_schema"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "bench", ["schema"] = schema.DeepClone() },
            };
        var body = fields.ToJsonString();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        long start = Stopwatch.GetTimestamp(), last = start;
        double first = 0;
        var gaps = new List<double>();
        int count = 0;
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line && line != "data: [DONE]")
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            long now = Stopwatch.GetTimestamp();
            if (count++ == 0) first = Stopwatch.GetElapsedTime(start, now).TotalSeconds;
            else gaps.Add(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
            last = now;
        }
        return new RequestTiming(first, gaps, count);
    }

    static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];
    }
}
