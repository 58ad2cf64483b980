using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Wren.Models;
using Wren.Serving;
using Wren.Serving.Benchmarking;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Bench;

/// <summary>
/// <c>vllm bench serve</c>'s measurement against an OpenAI-compatible server: streamed <c>/v1/chat/completions</c> requests
/// over loopback HTTP from a dataset generated with a fixed seed (<see cref="ServeDatasets"/>), sent at Poisson arrival times
/// (<c>--request-rate</c>, <c>inf</c>: all at once) under at most <c>--max-concurrency</c> in flight; metrics as vLLM computes
/// them (<see cref="ServeMetrics"/>). Without <c>--target</c> the server is Wren's own (<see cref="OpenAiServer"/> on a loopback
/// port in this process, over a random-weight preset, byte tokenizer, chatml template): the client reaches it only through
/// HTTP. With <c>--target URL</c> the same load goes to any OpenAI-compatible server (llama.cpp's <c>llama-server</c>).
/// Every run (each rate × concurrency) starts after one warm-up request and gets the same dataset.
/// </summary>
public static class ServeBenchmark
{
    public static int Run(string[] args)
    {
        try { return RunAsync(args).GetAwaiter().GetResult(); }
        catch (Exception e) when (e is WrenException or FormatException or OverflowException or IOException)
        {
            Console.Error.WriteLine($"serve: {e.Message}");
            return 2;
        }
    }

    /// <summary>The options that take a value (<c>--ignore-eos</c> is the one switch).</summary>
    public static readonly string[] Valued =
    [
        "--dataset", "--num-prompts", "--seed", "--request-rate", "--max-concurrency", "--slo", "--out", "--json-schema",
        "--random-input-len", "--random-output-len", "--random-range-ratio", "--prefix-repetition-prefix-len",
        "--prefix-repetition-suffix-len", "--prefix-repetition-num-prefixes", "--prefix-repetition-output-len", "--multi-turn-turns",
        "--multi-turn-input-len", "--multi-turn-output-len", "--model", "--max-batch", "--max-memory-gb", "--chunk",
        "--max-batched-tokens", "--prefix-cache-mb", "--prefix-block", "--target", "--target-model",
    ];

    static async Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback) => BenchArgs.Get(args, name, fallback);
        int Int(string name, int fallback) => BenchArgs.Int(args, name, fallback);
        var kind = ServeDatasetOptions.ParseKind(Arg("--dataset", "random"));
        var dataset = new ServeDatasetOptions(kind, Int("--num-prompts", 32), Int("--seed", 0),
            InputLength: Int(kind == ServeDatasetKind.MultiTurn ? "--multi-turn-input-len" : "--random-input-len", 256),
            OutputLength: kind switch
            {
                ServeDatasetKind.Random => Int("--random-output-len", 128),
                ServeDatasetKind.PrefixRepetition => Int("--prefix-repetition-output-len", 128),
                _ => Int("--multi-turn-output-len", 64),
            },
            RangeRatio: BenchArgs.Number(args, "--random-range-ratio", 0),
            PrefixLength: Int("--prefix-repetition-prefix-len", 1024), SuffixLength: Int("--prefix-repetition-suffix-len", 256),
            NumPrefixes: Int("--prefix-repetition-num-prefixes", 4), Turns: Int("--multi-turn-turns", 4));
        var conversations = ServeDatasets.Generate(dataset);
        var rates = Arg("--request-rate", "inf").Split(',').Select(r => r == "inf" ? double.PositiveInfinity
            : double.TryParse(r, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v
            : throw new ArgumentException($"--request-rate expects numbers or inf, got '{r}'")).ToArray();
        var levels = Arg("--max-concurrency", "").Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(c => int.TryParse(c, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? (int?)n
                : throw new ArgumentException($"--max-concurrency expects integers, got '{c}'")).DefaultIfEmpty(null).ToArray();
        if (levels.Any(c => c < 1)) throw new WrenException("--max-concurrency must be >= 1");
        var slo = Arg("--slo", "") is { Length: > 0 } s ? ServeSlo.Parse(s) : null;
        var schema = Arg("--json-schema", "") is { Length: > 0 } file ? JsonNode.Parse(File.ReadAllText(file)) : null;
        // Fields every request carries beside the messages: a schema's response_format; ignore_eos (vLLM's --ignore-eos,
        // honoured by wren serve and llama-server) so that random-weight models on both sides generate every token asked for.
        var extra = new JsonObject();
        if (schema is not null)
            extra["response_format"] = new JsonObject
            {
                ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "bench", ["schema"] = schema },
            };
        if (args.Contains("--ignore-eos")) extra["ignore_eos"] = true;
        string datasetName = Arg("--dataset", "random");
        string? output = Arg("--out", "") is { Length: > 0 } o ? o : null;

        await using var local = Arg("--target", "") is { Length: > 0 } ? null : await LocalServer.StartAsync(args, conversations);
        var target = local?.Address.ToString() ?? Arg("--target", "");
        string model = local?.Model ?? Arg("--target-model", "default");
        var endpoint = ChatEndpoint(target);
        using var http = new HttpClient { Timeout = TimeSpan.FromHours(2) };

        var warm = await Send(http, endpoint, model, conversations[0].Turns[0], extra);   // warm-up, not measured
        if (!warm.Success) throw new WrenException($"the warm-up request to {endpoint} failed: {warm.Error}");
        int requests = conversations.Sum(c => c.Turns.Count);
        string grouped = kind == ServeDatasetKind.MultiTurn ? $" in {conversations.Count} conversations" : "";
        Console.WriteLine($"# serve: {datasetName} ({requests} requests{grouped}, seed {dataset.Seed}), streamed chat completions " +
                          $"over loopback HTTP to {target} " +
                          $"(model {model}){local?.Describe ?? ""}; greedy, stream_options.include_usage; " +
                          $"{(schema is null ? "free text" : "constrained by --json-schema")}" +
                          $"{(extra.ContainsKey("ignore_eos") ? ", ignore_eos" : "")}; " +
                          Wren.Runtime.WrenRuntime.Describe());
        Console.WriteLine(ServeReportPrinter.MarkdownHeader());
        var results = new JsonArray();
        foreach (double rate in rates)
            foreach (int? concurrency in levels)
            {
                var (outcomes, seconds, peak) = await Load(http, endpoint, model, conversations, rate, concurrency, dataset.Seed, extra);
                int fromUsage = outcomes.Count(x => x.Success && x.UsageReported), succeeded = outcomes.Count(x => x.Success);
                string countedBy = succeeded == 0 ? "none completed"
                    : fromUsage == succeeded ? "usage" : fromUsage == 0 ? "counted deltas" : "mixed";
                var info = new ServeRunInfo(target, model, datasetName, requests, rate, concurrency, dataset.Seed, countedBy, slo,
                                            extra.ContainsKey("ignore_eos"));
                var report = ServeMetrics.Compute(outcomes, seconds, slo, peak);
                Console.WriteLine(ServeReportPrinter.MarkdownRow(info, report));
                foreach (var error in outcomes.Where(x => !x.Success).Select(x => x.Error).Distinct().Take(3))
                    Console.WriteLine($"# failed: {error}");
                results.Add(ServeReportPrinter.Json(info, report));
            }
        if (output is not null)
        {
            File.WriteAllText(output, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"# results: {output}");
        }
        return 0;
    }

    /// <summary><c>URL/v1/chat/completions</c> (a URL already ending in <c>/v1</c> gets <c>/chat/completions</c>).</summary>
    static Uri ChatEndpoint(string target)
    {
        if (!Uri.TryCreate(target, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new WrenException($"--target must be an http(s) URL such as http://127.0.0.1:8080, got '{target}'");
        var root = uri.ToString().TrimEnd('/');
        return new Uri(root.EndsWith("/v1", StringComparison.Ordinal) ? root + "/chat/completions" : root + "/v1/chat/completions");
    }

    /// <summary>
    /// Sends every conversation at its arrival time (turns of one conversation one after another), at most
    /// <paramref name="concurrency"/> requests in flight: the outcomes, the wall seconds and the most in flight at once.
    /// </summary>
    static async Task<(List<RequestOutcome> Outcomes, double Seconds, int Peak)> Load(HttpClient http, Uri endpoint, string model,
        IReadOnlyList<BenchConversation> conversations, double rate, int? concurrency, int seed, JsonObject extra)
    {
        var random = new Random(seed);
        var arrivals = ServeMetrics.ArrivalTimes(conversations.Count, rate, random.NextDouble);
        using var gate = concurrency is { } c ? new SemaphoreSlim(c) : null;
        int inFlight = 0, peak = 0;
        var clock = Stopwatch.StartNew();
        var outcomes = await Task.WhenAll(conversations.Select(async (conversation, i) =>
        {
            var wait = TimeSpan.FromSeconds(arrivals[i]) - clock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait);
            var mine = new List<RequestOutcome>();
            foreach (var turn in conversation.Turns)
            {
                if (gate is not null) await gate.WaitAsync();
                int now = Interlocked.Increment(ref inFlight);
                for (int seen = Volatile.Read(ref peak); now > seen; seen = Volatile.Read(ref peak))
                    Interlocked.CompareExchange(ref peak, now, seen);
                try { mine.Add(await Send(http, endpoint, model, turn, extra)); }
                finally
                {
                    Interlocked.Decrement(ref inFlight);
                    gate?.Release();
                }
            }
            return mine;
        }));
        return ([.. outcomes.SelectMany(o => o)], clock.Elapsed.TotalSeconds, peak);
    }

    /// <summary>One streamed chat completion, timed by <see cref="ChatStreamTimer"/> (prompt estimate: its characters).</summary>
    static async Task<RequestOutcome> Send(HttpClient http, Uri endpoint, string model, BenchTurn turn, JsonObject extra)
    {
        var body = new JsonObject
        {
            ["model"] = model,
            ["messages"] = new JsonArray([.. turn.Messages.Select(m =>
                (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]),
            ["max_tokens"] = turn.MaxTokens, ["temperature"] = 0, ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
        };
        foreach (var (field, value) in extra) body[field] = value?.DeepClone();
        using var request = new HttpRequestMessage(HttpMethod.Post, endpoint)
        { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        // A connection per request: servers that close kept-alive connections after a few requests or seconds (llama-server's
        // HTTP library does) would otherwise fail a POST sent on a connection they are closing. Loopback connects cost µs.
        request.Headers.ConnectionClose = true;
        var timer = new ChatStreamTimer(turn.PromptCharacters);
        long start = Stopwatch.GetTimestamp();
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            if (!response.IsSuccessStatusCode)
            {
                var text = await response.Content.ReadAsStringAsync();
                return RequestOutcome.Failed($"HTTP {(int)response.StatusCode}: {text[..Math.Min(text.Length, 200)]}");
            }
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            while (await reader.ReadLineAsync() is { } line && timer.Add(line, Stopwatch.GetElapsedTime(start).TotalSeconds)) { }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException or TaskCanceledException)
        {
            return RequestOutcome.Failed($"{e.GetType().Name}: {e.Message}");
        }
        return timer.Finish();
    }

    /// <summary>
    /// Wren's server in this process over a random-weight preset (<c>--model</c>), sized by <c>--max-batch</c>,
    /// <c>--max-memory-gb</c>, <c>--chunk</c>, <c>--max-batched-tokens</c> and <c>--prefix-cache-mb</c>, its context the
    /// dataset's longest request.
    /// </summary>
    sealed class LocalServer : IAsyncDisposable
    {
        HybridForCausalLM model = null!;
        InferenceEngine engine = null!;
        OpenAiServer server = null!;

        public Uri Address => server.Address;
        public string Model { get; private init; } = "";
        public string Describe { get; private set; } = "";

        public static async Task<LocalServer> StartAsync(string[] args, IReadOnlyList<BenchConversation> conversations)
        {
            string Arg(string name, string fallback) => BenchArgs.Get(args, name, fallback);
            int Int(string name, int fallback) => BenchArgs.Int(args, name, fallback);
            var defaults = new EngineOptions();
            var name = Arg("--model", "flash-300m");
            var config = HybridConfig.Load(name);
            // Byte tokens: one per character of ASCII text, plus the template's markers (a few dozen per message at most).
            int context = conversations.SelectMany(c => c.Turns).Max(t => t.PromptCharacters + 32 * (t.Messages.Count + 1) + t.MaxTokens);
            var options = new EngineOptions
            {
                MaxBatch = Int("--max-batch", 64), MaxQueue = 4096,
                PrefillChunk = Int("--chunk", defaults.PrefillChunk), MaxContext = context,
                PrefixBlock = Int("--prefix-block", defaults.PrefixBlock),
                MaxBatchedTokens = Int("--max-batched-tokens", defaults.MaxBatchedTokens),
                PrefixCacheBytes = (long)Int("--prefix-cache-mb", 512) << 20,
                MaxMemoryBytes = Arg("--max-memory-gb", "") is { Length: > 0 }
                    ? (long)(BenchArgs.Number(args, "--max-memory-gb", 0) * (1L << 30)) : null,
            };
            options.Validate();
            var local = new LocalServer { Model = name };
            local.model = new HybridForCausalLM(config);
            Initialization.Apply(local.model, 0);
            local.model.eval();
            local.engine = new InferenceEngine(local.model, new ByteTokenizer(config.VocabSize), options);
            local.server = await OpenAiServer.StartAsync(local.engine, ChatTemplate.BuiltIn("chatml"), new ServeOptions(name, Port: 0));
            local.Describe = $"; in-process wren server: {name} random weights fp32, {local.engine.Slots} slots of {context} tokens, " +
                             $"prefill chunk {options.PrefillChunk}, max batched tokens {options.MaxBatchedTokens}, " +
                             $"prefix cache {options.PrefixCacheBytes >> 20} MiB in blocks of {options.CacheBlock}";
            return local;
        }

        public async ValueTask DisposeAsync()
        {
            await server.DisposeAsync();
            engine.Dispose();
            model.Dispose();
        }
    }
}
