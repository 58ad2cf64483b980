using System.CommandLine;
using Microsoft.Extensions.Logging;
using Wren.Serving;

namespace Wren.Cli.Commands;

/// <summary><c>wren serve</c>: an OpenAI-compatible HTTP API over a model folder (continuous batching, prefix-state cache).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var command = new Command("serve", "Serve a model folder over an OpenAI-compatible HTTP API (completions, chat completions)");
        var model = new Option<string>("--model") { Description = "model folder", Required = true };
        var host = new Option<string>("--host") { Description = "address to bind", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port (0 = any free port)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key")
        {
            Description = "require 'Authorization: Bearer KEY' on /v1/ and /metrics (visible in ps: prefer --api-key-file or WREN_API_KEY)",
        };
        var apiKeyFile = new Option<string?>("--api-key-file") { Description = "read the API key from this file's first line" };
        var metricsPublic = new Option<bool>("--metrics-public") { Description = "leave /metrics open when an API key is set" };
        var allowedHosts = new Option<string[]>("--allowed-hosts")
        {
            Description = "Host header names accepted besides IP literals, localhost and --host (* = any; DNS-rebinding guard)",
            AllowMultipleArgumentsPerToken = true,
        };
        var cors = new Option<string[]>("--cors-origin")
        {
            Description = "browser origins allowed to call the API, e.g. http://localhost:3000 (* = any; default none)",
            AllowMultipleArgumentsPerToken = true,
        };
        var maxRequest = new Option<string>("--max-request-bytes")
        {
            Description = "largest request body (413 above it)",
            DefaultValueFactory = _ => "8MB",
        };
        var timeout = new Option<double?>("--request-timeout")
        {
            Description = "seconds a request may run before it is ended and its slot freed (408; default: no limit)",
        };
        var name = new Option<string?>("--model-name") { Description = "model id clients send (default: the folder's name)" };
        var maxBatch = new Option<int>("--max-batch") { Description = "requests decoding at once", DefaultValueFactory = _ => 32 };
        var maxQueue = new Option<int>("--max-queue")
        {
            Description = "requests waiting for a slot before 429",
            DefaultValueFactory = _ => 256,
        };
        var maxContext = new Option<int>("--max-context")
        {
            Description = "prompt + generated tokens per request",
            DefaultValueFactory = _ => 4096,
        };
        var maxMemory = new Option<string?>("--max-memory") { Description = "weights + caches budget, e.g. 8GB (cuts the slots to fit)" };
        var prefixCache = new Option<string>("--prefix-cache")
        {
            Description = "prefix-state cache size (0 = off)",
            DefaultValueFactory = _ => "512MB",
        };
        var defaults = new EngineOptions();
        var chunk = new Option<int>("--prefill-chunk")
        {
            Description = "prompt tokens per prefill chunk (each stalls the decoding requests for its length)",
            DefaultValueFactory = _ => defaults.PrefillChunk,
        };
        var batchedTokens = new Option<int>("--max-batched-tokens")
        {
            Description = "tokens per engine step: one per decoding request, the rest prefill chunks (always one chunk at least)",
            DefaultValueFactory = _ => defaults.MaxBatchedTokens,
        };
        var prefixBlock = new Option<int>("--prefix-block")
        {
            Description = "prompt tokens per prefix-cache block (rounded up to a multiple of --prefill-chunk)",
            DefaultValueFactory = _ => defaults.PrefixBlock,
        };
        var template = new Option<string?>("--chat-template") { Description = "nemotron-flash, chatml, or a folder/tokenizer_config.json" };
        Option[] options = [model, host, port, apiKey, apiKeyFile, metricsPublic, allowedHosts, cors, maxRequest, timeout, name, maxBatch,
                            maxQueue, maxContext, maxMemory, prefixCache, chunk, batchedTokens, prefixBlock, template];
        foreach (var o in options) command.Add(o);
        var common = new CommonOptions(command);
        command.SetAction(async (result, cancel) =>
        {
            var device = common.Initialize(result);
            string folder = result.GetValue(model)!, cacheSize = result.GetValue(prefixCache)!;
            var engine = new EngineOptions
            {
                MaxBatch = result.GetValue(maxBatch), MaxQueue = result.GetValue(maxQueue), MaxContext = result.GetValue(maxContext),
                MaxMemoryBytes = result.GetValue(maxMemory) is { } memory ? ProfileCommand.ParseBytes(memory, maxMemory.Name) : null,
                PrefixCacheBytes = cacheSize == "0" ? 0 : ProfileCommand.ParseBytes(cacheSize, prefixCache.Name),
                PrefillChunk = result.GetValue(chunk), MaxBatchedTokens = result.GetValue(batchedTokens),
                PrefixBlock = result.GetValue(prefixBlock),
            };
            var key = ServeOptions.ApiKeyFrom(result.GetValue(apiKey), result.GetValue(apiKeyFile),
                                              Environment.GetEnvironmentVariable("WREN_API_KEY"));
            var server = new ServeOptions(result.GetValue(name) ?? Path.GetFileName(Path.GetFullPath(folder).TrimEnd('/')),
                                          result.GetValue(host)!, result.GetValue(port), key)
            {
                MaxRequestBytes = ProfileCommand.ParseBytes(result.GetValue(maxRequest)!, maxRequest.Name),
                AllowedHosts = result.GetValue(allowedHosts) ?? [], CorsOrigins = result.GetValue(cors) ?? [],
                MetricsPublic = result.GetValue(metricsPublic),
                RequestTimeout = result.GetValue(timeout) is { } seconds
                    ? seconds is > 0 and <= 1e7 ? TimeSpan.FromSeconds(seconds)
                    : throw new WrenException($"--request-timeout must be positive seconds (at most 1e7), got {seconds}")
                    : null,
            };
            // A failed start (e.g. the port in use) is one WrenException line; the host's own log of it would add a stack trace.
            using var logging = LoggerFactory.Create(b => b.AddFilter("Microsoft.AspNetCore", LogLevel.Warning)
                .AddFilter("Microsoft.Extensions.Hosting", LogLevel.None).AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss ";
            }));   // one line per request, from the engine
            var settings = new ServeSettings(folder, server, engine, result.GetValue(template), common.Precision(result), device);
            await ServeHost.RunAsync(settings, logging, cancel: cancel);
            return 0;
        });
        return command;
    }
}
