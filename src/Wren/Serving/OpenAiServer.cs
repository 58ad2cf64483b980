using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Wren.Constraints;
using Wren.Inference;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Serving;

/// <summary>Where and how the HTTP API listens.</summary>
/// <param name="ModelName">The id clients pass as <c>model</c> (another id is a 404).</param>
/// <param name="ApiKey">
/// When set, every <c>/v1/</c> request (and <c>/metrics</c> unless <see cref="MetricsPublic"/>) needs
/// <c>Authorization: Bearer KEY</c> (else 401); see <see cref="ApiKeyFrom"/> for keeping it off the command line.
/// </param>
public sealed record ServeOptions(string ModelName, string Host = "127.0.0.1", int Port = 8080, string? ApiKey = null)
{
    /// <summary>Largest request body in bytes; a longer one is refused with 413 while it arrives (Kestrel's body limit).</summary>
    public long MaxRequestBytes { get; init; } = 8L << 20;
    /// <summary>
    /// Host names accepted in the <c>Host</c> header besides IP literals, <c>localhost</c> and <see cref="Host"/> ("*": any). A
    /// browser tricked by DNS rebinding sends the attacker's name, which is refused (400).
    /// </summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];
    /// <summary>Leave <c>/metrics</c> open when <see cref="ApiKey"/> is set.</summary>
    public bool MetricsPublic { get; init; }
    /// <summary>Origins (<c>https://app.example</c>, or "*") that browsers may call from (CORS); none by default.</summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    /// <summary>A request still running after this long is ended and its slot freed: 408, or an error event in a stream.</summary>
    public TimeSpan? RequestTimeout { get; init; }

    /// <exception cref="WrenException">
    /// The port is outside 0..65535 (0: any free port), the API key is empty, a limit is not positive or a CORS origin is not
    /// <c>scheme://host[:port]</c>.
    /// </exception>
    public void Validate()
    {
        if (Port is < IPEndPoint.MinPort or > IPEndPoint.MaxPort)
            throw new WrenException($"--port must be 0 (any free port) to {IPEndPoint.MaxPort}, got {Port}");
        if (ApiKey is "") throw new WrenException("--api-key is empty: give a key, or leave the option out to serve without one");
        if (MaxRequestBytes < 1) throw new WrenException($"--max-request-bytes must be positive, got {MaxRequestBytes}");
        if (RequestTimeout is { } timeout && timeout <= TimeSpan.Zero)
            throw new WrenException($"--request-timeout must be positive seconds, got {timeout.TotalSeconds}");
        if (AllowedHosts.FirstOrDefault(h => h.Length == 0 || h.Contains(':') && !IPAddress.TryParse(h, out _)) is { } host)
            throw new WrenException($"--allowed-hosts takes host names without ports, got '{host}'");
        foreach (var origin in CorsOrigins)
            if (origin != "*" && !(Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
                                   && uri.GetLeftPart(UriPartial.Authority) == origin.TrimEnd('/')))
                throw new WrenException("--cors-origin must look like https://app.example or http://localhost:3000 (or *), " +
                                        $"got '{origin}'");
    }

    /// <summary>
    /// The API key from one source: <paramref name="key"/> (<c>--api-key</c>, visible to other users in <c>ps</c>), the first line of
    /// <paramref name="file"/> (<c>--api-key-file</c>), else <paramref name="environment"/> (<c>WREN_API_KEY</c>; empty = unset).
    /// </summary>
    /// <exception cref="WrenException">Both options given, the file missing, or the file's key empty.</exception>
    public static string? ApiKeyFrom(string? key, string? file, string? environment)
    {
        if (key is not null && file is not null) throw new WrenException("give --api-key or --api-key-file, not both");
        if (file is null) return key ?? (string.IsNullOrEmpty(environment) ? null : environment);
        if (!File.Exists(file)) throw new WrenException($"--api-key-file '{file}' does not exist");
        var line = File.ReadLines(file).FirstOrDefault()?.Trim();
        return string.IsNullOrEmpty(line) ? throw new WrenException($"--api-key-file '{file}' holds no key on its first line") : line;
    }
}

/// <summary>
/// The OpenAI-compatible HTTP API on Kestrel over an <see cref="InferenceEngine"/>: <c>GET /v1/models</c>, <c>/v1/models/{id}</c>,
/// <c>/health</c>, <c>/metrics</c> (Prometheus text), <c>POST /v1/completions</c> and <c>/v1/chat/completions</c> (JSON or
/// server-sent events ending in <c>data: [DONE]</c>), llama-server's <c>POST /tokenize</c> and <c>/detokenize</c>. Errors are
/// OpenAI-style JSON: 400 invalid field, text that is not Unicode,
/// an unsupported parameter (<see cref="Unsupported"/>), a prompt longer than the context, more sequences than the server can
/// ever hold, or a Host header not allowed (<see cref="ServeOptions.AllowedHosts"/>); 401 missing or wrong API key (with
/// <c>WWW-Authenticate</c>); 404 unknown model or route; 405 wrong method; 408 past <see cref="ServeOptions.RequestTimeout"/>;
/// 413 body over <see cref="ServeOptions.MaxRequestBytes"/>; 415 a body that is not <c>application/json</c>; 429 with
/// <c>Retry-After</c> when the queue is full, 503 with it while the engine stops; an unexpected failure is a 500 with a
/// one-line message, never a stack trace.
/// </summary>
public sealed class OpenAiServer : IAsyncDisposable
{
    static readonly JsonSerializerOptions Json = new() { DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    readonly WebApplication app;
    readonly InferenceEngine engine;
    readonly ChatTemplate template;
    readonly ToolCallSyntax syntax;
    readonly ServeOptions options;
    readonly ILogger logger;
    readonly long started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();   // the model's "created" in /v1/models
    readonly int tokenBytes;                                              // see TokenBytesBound
    readonly string fingerprint;

    OpenAiServer(WebApplication app, InferenceEngine engine, ChatTemplate template, ServeOptions options, ILogger logger)
    {
        this.app = app;
        this.engine = engine;
        this.template = template;
        syntax = ToolCallSyntax.Of(template.Source);
        this.options = options;
        this.logger = logger;
        tokenBytes = TokenBytesBound(engine.Tokenizer);
        fingerprint = Fingerprint(options.ModelName, engine.WeightType);
    }

    /// <summary>
    /// OpenAI's <c>system_fingerprint</c>: "fp_" and 10 hex digits of SHA-256 over the model name, Wren's version and the weight
    /// dtype, so a client can tell when a seeded request may stop reproducing (any of the three changed).
    /// </summary>
    public static string Fingerprint(string modelName, TorchSharp.torch.ScalarType weights)
    {
        string version = typeof(OpenAiServer).Assembly.GetName().Version?.ToString() ?? "0";
        var digest = SHA256.HashData(Encoding.UTF8.GetBytes($"{modelName}\n{version}\n{weights}"));
        return "fp_" + Convert.ToHexStringLower(digest)[..10];
    }

    /// <summary>The address Kestrel bound (with the real port when <see cref="ServeOptions.Port"/> is 0).</summary>
    public Uri Address { get; private set; } = null!;

    /// <summary>Starts listening; the engine stays owned by the caller.</summary>
    public static async Task<OpenAiServer> StartAsync(InferenceEngine engine, ChatTemplate template, ServeOptions options,
                                                      ILoggerFactory? logging = null, CancellationToken cancel = default)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (logging is not null) builder.Services.AddSingleton(logging);
        builder.WebHost.UseUrls($"http://{options.Host}:{options.Port}");
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = options.MaxRequestBytes);
        var app = builder.Build();
        var logger = (logging ?? NullLoggerFactory.Instance).CreateLogger("Wren.Serving");
        var server = new OpenAiServer(app, engine, template, options, logger);
        server.MapRoutes();
        try { await app.StartAsync(cancel); }
        catch (IOException e) { throw new WrenException($"cannot listen on {options.Host}:{options.Port}: {e.Message}", e); }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(bound);
        return server;
    }

    /// <summary>Completes when the server stops (<paramref name="cancel"/> stops it).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel) => app.WaitForShutdownAsync(cancel);

    void MapRoutes()
    {
        app.Use(Guard);
        app.Map("/health", ctx => Method(ctx, "GET") ?? WriteJson(ctx, 200, new { status = "ok", slots = engine.Slots }));
        app.Map("/metrics", async ctx =>
        {
            if (Method(ctx, "GET") is { } refused) { await refused; return; }
            ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await engine.Metrics.WriteAsync(ctx.Response.Body, ctx.RequestAborted);
        });
        app.Map("/v1/models", ctx => Method(ctx, "GET") ?? WriteJson(ctx, 200, new { @object = "list", data = new[] { ModelBody() } }));
        app.Map("/v1/models/{**id}", ctx => Method(ctx, "GET") ?? (ctx.Request.RouteValues["id"] as string == options.ModelName
            ? WriteJson(ctx, 200, ModelBody())
            : throw new ServeError(404, "invalid_request_error",
                                   $"the model '{ctx.Request.RouteValues["id"]}' does not exist; this server serves '{options.ModelName}'",
                                   "model", "model_not_found")));
        app.Map("/v1/completions", ctx => Method(ctx, "POST") ?? Completions(ctx));
        app.Map("/v1/chat/completions", ctx => Method(ctx, "POST") ?? Chat(ctx));
        app.Map("/tokenize", ctx => Method(ctx, "POST") ?? Tokenize(ctx));
        app.Map("/detokenize", ctx => Method(ctx, "POST") ?? Detokenize(ctx));
        app.MapFallback(ctx => throw new ServeError(404, "invalid_request_error", $"unknown route {ctx.Request.Method} {ctx.Request.Path}",
                                                    null, "not_found"));
    }

    /// <summary>
    /// llama-server's <c>POST /tokenize</c>: <c>{content, add_special, with_pieces}</c> → <c>{tokens}</c>, ids or, with
    /// <c>with_pieces</c>, <c>{id, piece}</c> objects whose piece is the token's text, or its bytes as a list of numbers when they
    /// are not whole UTF-8. <c>add_special</c> adds the beginning-of-text token where the tokenizer asks for one. Text is always
    /// text: a special token's spelling in <c>content</c> is not parsed into its id (Wren's rule, <see cref="ITextTokenizer"/>), so
    /// <c>parse_special: true</c>, llama-server's default, is a 400 when given. Errors: 400 naming the field.
    /// </summary>
    async Task Tokenize(HttpContext ctx)
    {
        var body = await ReadBody(ctx);
        var content = body.String("content") ?? throw ServeError.Invalid("'content' is required (a string)", "content");
        if (body.Bool("parse_special") == true)
            throw ServeError.Invalid("'parse_special' true is not supported: special-token text is tokenized as text", "parse_special",
                                     "unsupported_parameter");
        CheckTextFits(Encoding.UTF8.GetByteCount(content), "content");
        var tokenizer = engine.Tokenizer;
        var ids = body.Bool("add_special") == true ? tokenizer.EncodePrompt(content) : tokenizer.Encode(content);
        if (body.Bool("with_pieces") != true)
        {
            await WriteJson(ctx, 200, new { tokens = ids });
            return;
        }
        var control = tokenizer.ControlTokens.GroupBy(c => c.Value).ToDictionary(g => g.Key, g => g.First().Key);
        object Piece(int id)
        {
            if (control.TryGetValue(id, out var text)) return text;
            if (tokenizer.TokenBytes?.Bytes[id] is not { } bytes) return tokenizer.Decode([id]);
            try { return new UTF8Encoding(false, true).GetString(bytes); }
            catch (DecoderFallbackException) { return bytes.Select(b => (int)b).ToArray(); }
        }
        await WriteJson(ctx, 200, new { tokens = ids.Select(id => new { id, piece = Piece(id) }).ToList() });
    }

    /// <summary>
    /// llama-server's <c>POST /detokenize</c>: <c>{tokens}</c> (ids of this vocabulary) → <c>{content}</c>, the text the
    /// tokenizer decodes them to (special tokens to nothing). Errors: 400 naming <c>tokens</c>.
    /// </summary>
    async Task Detokenize(HttpContext ctx)
    {
        var body = await ReadBody(ctx);
        var tokens = body.Get("tokens") ?? throw ServeError.Invalid("'tokens' is required (a list of token ids)", "tokens");
        int vocabulary = engine.Config.VocabSize;
        if (tokens.ValueKind != JsonValueKind.Array) throw RequestFields.TypeError("tokens", "a list of token ids");
        var ids = tokens.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id)
                                                          && id >= 0 && id < vocabulary ? id
            : throw ServeError.Invalid($"'tokens' must hold token ids between 0 and {vocabulary - 1}, got " +
                                       (e.ValueKind == JsonValueKind.Number ? e.GetRawText()[..Math.Min(40, e.GetRawText().Length)]
                                           : $"a {e.ValueKind.ToString().ToLowerInvariant()}"), "tokens")).ToList();
        await WriteJson(ctx, 200, new { content = engine.Tokenizer.Decode(ids) });
    }

    object ModelBody() => new { id = options.ModelName, @object = "model", created = started, owned_by = "wren" };

    /// <summary>
    /// Fields of OpenAI's API that this server does not honour, each with the value that means "off" (accepted, as is null): any
    /// other value is a 400 <c>unsupported_parameter</c> naming the field, never silently ignored. A field leaves this table when
    /// it is implemented.
    /// </summary>
    static readonly (string Field, string Neutral, Func<JsonElement, bool> IsNeutral)[] Unsupported =
    [
        ("best_of", "1", v => v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) && n == 1),
        ("suffix", "\"\"", v => v.ValueKind == JsonValueKind.String && v.ValueEquals("")),
        ("functions", "[] (use 'tools')", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0),
        ("function_call", "\"none\" (use 'tool_choice')", v => v.ValueKind == JsonValueKind.String && v.ValueEquals("none")),
    ];

    static void RejectUnsupported(RequestFields body)
    {
        foreach (var (field, neutral, isNeutral) in Unsupported)
            if (body.Get(field) is { } value && !isNeutral(value))
                throw ServeError.Invalid($"'{field}' is not supported by this server (only {neutral} or null is accepted)", field,
                                         "unsupported_parameter");
    }

    static Task? Method(HttpContext ctx, string method) => ctx.Request.Method == method ? null
        : throw new ServeError(405, "invalid_request_error", $"{ctx.Request.Path} accepts {method}, not {ctx.Request.Method}", null,
                               "method_not_allowed");

    /// <summary>
    /// Host check, CORS, API key and deadline; OpenAI-style errors; the request counter by status.
    /// </summary>
    async Task Guard(HttpContext ctx, RequestDelegate next)
    {
        var aborted = ctx.RequestAborted;
        using var deadline = options.RequestTimeout is { } timeout ? CancellationTokenSource.CreateLinkedTokenSource(aborted) : null;
        if (deadline is not null)
        {
            deadline.CancelAfter(options.RequestTimeout!.Value);
            ctx.RequestAborted = deadline.Token;   // the handlers' token: a request past its deadline is cancelled as if its client left
        }
        bool TimedOut(Exception e) =>
            e is OperationCanceledException && deadline?.IsCancellationRequested == true && !aborted.IsCancellationRequested;
        try
        {
            CheckHost(ctx);
            if (Cors(ctx)) return;
            var path = ctx.Request.Path;
            if (options.ApiKey is { } key && (path.StartsWithSegments("/v1") || path.StartsWithSegments("/tokenize")
                                              || path.StartsWithSegments("/detokenize")
                                              || path.StartsWithSegments("/metrics") && !options.MetricsPublic))
                CheckKey(ctx, key);
            await next(ctx);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            if (!ctx.Response.HasStarted) ctx.Response.StatusCode = 499;   // the client went away (nginx's code); nothing more can be sent
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            ctx.RequestAborted = aborted;
            var error = e switch
            {
                ServeError s => s,
                _ when TimedOut(e) => Timeout(),
                BadHttpRequestException { StatusCode: 413 } b => new ServeError(413, "invalid_request_error", b.Message, null,
                                                                                "request_too_large"),
                BadHttpRequestException b => ServeError.Invalid(b.Message),
                _ => new ServeError(500, "server_error", $"internal error: {e.GetType().Name}: {e.Message}"),
            };
            if (error.Status is 429 or 503) ctx.Response.Headers.RetryAfter = "1";
            if (error.Status == 401)
                ctx.Response.Headers.WWWAuthenticate = ctx.Request.Headers.Authorization.Count == 0
                    ? "Bearer realm=\"wren\"" : "Bearer realm=\"wren\", error=\"invalid_token\"";
            logger.Log(error.Status >= 500 ? LogLevel.Error : LogLevel.Information, "{Method} {Path} answered {Status}: {Message}",
                       ctx.Request.Method, ctx.Request.Path, error.Status, error.Message);
            await WriteJson(ctx, error.Status, new ErrorBody(new ErrorDetail(error.Message, error.Type, error.Param, error.Code)));
        }
        catch (Exception e)
        {
            // A stream already under way ends with an error event instead of [DONE].
            ctx.RequestAborted = aborted;
            var error = TimedOut(e) ? Timeout() : new ServeError(500, "server_error", $"internal error: {e.Message}");
            logger.LogError("{Method} {Path} failed mid-response: {Message}", ctx.Request.Method, ctx.Request.Path, error.Message);
            try { await Event(ctx, new ErrorBody(new ErrorDetail(error.Message, error.Type, null, error.Code))); }
            catch (Exception) when (aborted.IsCancellationRequested || e is not OperationCanceledException) { }
        }
        finally
        {
            engine.Metrics.Requests.WithLabels(ctx.Response.StatusCode.ToString()).Inc();
        }
    }

    ServeError Timeout() =>
        new(408, "server_error", $"the request ran past the server's limit of {options.RequestTimeout!.Value.TotalSeconds:G} seconds " +
                                 "(--request-timeout) and was ended", null, "request_timeout");

    /// <summary>
    /// 400 unless the Host header names this server: an IP literal, <c>localhost</c>, the bound host or an allowed name. A DNS
    /// rebinding attack reaches a loopback server under the attacker's own name, which this refuses.
    /// </summary>
    void CheckHost(HttpContext ctx)
    {
        string host = ctx.Request.Host.Host;
        if (host.Length == 0 || IPAddress.TryParse(host.Trim('[', ']'), out _) || AllowedHost(host)) return;
        throw new ServeError(400, "invalid_request_error", $"the Host header '{host}' is not this server's (--allowed-hosts adds names)",
                             null, "host_not_allowed");
    }

    bool AllowedHost(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || host.Equals(options.Host, StringComparison.OrdinalIgnoreCase)
        || options.AllowedHosts.Any(h => h == "*" || h.Equals(host, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// CORS for <see cref="ServeOptions.CorsOrigins"/>: the allowed origin is echoed on every response, and a preflight
    /// (<c>OPTIONS</c> with <c>Access-Control-Request-Method</c>) is answered 204 here; true when the request is done.
    /// </summary>
    bool Cors(HttpContext ctx)
    {
        string origin = ctx.Request.Headers.Origin.ToString();
        if (origin.Length == 0
            || !options.CorsOrigins.Any(o => o == "*" || o.TrimEnd('/').Equals(origin, StringComparison.OrdinalIgnoreCase)))
            return false;
        var headers = ctx.Response.Headers;
        headers.AccessControlAllowOrigin = options.CorsOrigins.Contains("*") ? "*" : origin;
        headers.Vary = "Origin";
        if (!HttpMethods.IsOptions(ctx.Request.Method) || ctx.Request.Headers.AccessControlRequestMethod.Count == 0) return false;
        headers.AccessControlAllowMethods = "GET, POST";
        headers.AccessControlAllowHeaders = "Authorization, Content-Type";
        headers.AccessControlMaxAge = "600";
        ctx.Response.StatusCode = 204;
        return true;
    }

    /// <summary>
    /// 401 unless <c>Authorization</c> is <c>Bearer KEY</c> (the scheme in any case, RFC 9110 §11.1). The SHA-256 digests are
    /// compared in constant time, so neither the key's bytes nor its length leak through timing.
    /// </summary>
    static void CheckKey(HttpContext ctx, string key)
    {
        string header = ctx.Request.Headers.Authorization.ToString().Trim();
        int space = header.IndexOf(' ');
        bool bearer = space > 0 && header[..space].Equals("Bearer", StringComparison.OrdinalIgnoreCase);
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(bearer ? header[(space + 1)..].Trim() : ""));
        if (bearer && CryptographicOperations.FixedTimeEquals(given, SHA256.HashData(Encoding.UTF8.GetBytes(key)))) return;
        throw new ServeError(401, "invalid_request_error", "a valid API key is required: send 'Authorization: Bearer KEY'", null,
                             "invalid_api_key");
    }

    static async Task WriteJson(HttpContext ctx, int status, object body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(body, body.GetType(), Json), ctx.RequestAborted);
    }

    /// <summary>The body parsed from the request stream; Kestrel ends it at <see cref="ServeOptions.MaxRequestBytes"/> (413).</summary>
    static async Task<RequestFields> ReadBody(HttpContext ctx)
    {
        // application/json only (any charset but UTF-8 refused): text/plain and form posts are what a hostile page can send
        // cross-site without a CORS preflight.
        var type = MediaTypeHeaderValue.TryParse(ctx.Request.ContentType, out var parsed) ? parsed : null;
        if (type?.MediaType is not { } media || !(media.Equals("application/json", StringComparison.OrdinalIgnoreCase)
                                                  || media.EndsWith("+json", StringComparison.OrdinalIgnoreCase))
            || type.CharSet is { Length: > 0 } charset && !charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase))
            throw new ServeError(415, "invalid_request_error",
                                 $"the body must be application/json (UTF-8), got '{ctx.Request.ContentType ?? "no Content-Type"}'", null,
                                 "unsupported_media_type");
        var (fields, document) = await RequestFields.ParseAsync(ctx.Request.Body, ctx.RequestAborted);
        ctx.Response.RegisterForDispose(document);
        return fields;
    }

    void CheckModel(RequestFields body)
    {
        var model = body.String("model") ?? throw ServeError.Invalid("'model' is required", "model");
        if (model != options.ModelName)
            throw new ServeError(404, "invalid_request_error",
                                 $"the model '{model}' does not exist; this server serves '{options.ModelName}'",
                                 "model", "model_not_found");
    }

    /// <summary>Most <c>stop</c> strings, as OpenAI's reference allows.</summary>
    public const int MaxStops = 4;

    /// <summary>Sampling fields shared by both endpoints (OpenAI's defaults: temperature 1, top_p 1). <c>ignore_eos</c> (vLLM's
    /// and llama.cpp's extension, for benchmarks): the end-of-sequence and end-of-turn tokens do not end the request.</summary>
    SamplingOptions Sampling(RequestFields body, int defaultMaxTokens, string maxTokensField)
    {
        long maxTokens = body.Integer(maxTokensField) ?? defaultMaxTokens;
        if (maxTokens < 0) throw ServeError.Invalid($"'{maxTokensField}' must be >= 0, got {maxTokens}", maxTokensField);
        double temperature = body.Number("temperature") ?? 1.0;
        if (temperature is < 0 or > 2) throw ServeError.Invalid($"'temperature' must be between 0 and 2, got {temperature}", "temperature");
        double topP = body.Number("top_p") ?? 1.0;
        if (topP is <= 0 or > 1) throw ServeError.Invalid($"'top_p' must be in (0, 1], got {topP}", "top_p");
        long topK = body.Integer("top_k") ?? 0;
        if (topK < 0) throw ServeError.Invalid($"'top_k' must be >= 0, got {topK}", "top_k");
        double penalty = body.Number("repetition_penalty") ?? 1.0;
        if (penalty <= 0) throw ServeError.Invalid($"'repetition_penalty' must be > 0, got {penalty}", "repetition_penalty");
        var stop = body.Strings("stop");
        if (stop.Any(s => s.Length == 0)) throw ServeError.Invalid("'stop' strings must not be empty", "stop");
        if (stop.Count > MaxStops) throw ServeError.Invalid($"'stop' takes at most {MaxStops} strings, got {stop.Count}", "stop");
        double Penalty(string field) => body.Number(field) is not { } p ? 0
            : p is >= -2 and <= 2 ? p : throw ServeError.Invalid($"'{field}' must be between -2 and 2, got {p}", field);
        return new SamplingOptions
        {
            MaxNewTokens = (int)Math.Min(maxTokens, int.MaxValue), Temperature = temperature, TopP = topP,
            TopK = (int)Math.Min(topK, int.MaxValue),
            RepetitionPenalty = penalty, Seed = body.Integer("seed") is { } seed ? unchecked((ulong)seed) : null, StopStrings = stop,
            StopTokenIds = body.Bool("ignore_eos") == true ? [] : ChatPrompts.StopIds(engine.Tokenizer, template),
            Grammar = Grammar(body), LogitBias = LogitBias(body),
            FrequencyPenalty = Penalty("frequency_penalty"), PresencePenalty = Penalty("presence_penalty"),
        };
    }

    /// <summary><c>logit_bias</c>: token id (a string key, as JSON objects have) → bias in [−100, 100].</summary>
    Dictionary<int, double> LogitBias(RequestFields body)
    {
        var biases = new Dictionary<int, double>();
        if (body.Get("logit_bias") is not { } map) return biases;
        if (map.ValueKind != JsonValueKind.Object) throw RequestFields.TypeError("logit_bias", "an object of token id → bias");
        foreach (var entry in map.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, null, out int id) || id >= engine.Config.VocabSize)
                throw ServeError.Invalid($"'logit_bias' key '{entry.Name}' is not a token id of this model's vocabulary of " +
                                         $"{engine.Config.VocabSize}", "logit_bias");
            if (entry.Value.ValueKind != JsonValueKind.Number || entry.Value.GetDouble() is < -100 or > 100)
                throw ServeError.Invalid($"'logit_bias' values must be numbers between -100 and 100 (token {id})", "logit_bias");
            biases[id] = entry.Value.GetDouble();
        }
        return biases;
    }

    /// <summary>Longest JSON schema or GBNF grammar accepted, in UTF-8 bytes of its JSON text.</summary>
    public const int MaxGrammarBytes = 100_000;

    readonly GrammarCache grammars = new();

    /// <summary>
    /// The constraint of <c>response_format</c> (<c>text</c>, <c>json_object</c>, <c>json_schema</c> as OpenAI defines them)
    /// or of <c>grammar</c> (llama.cpp's GBNF, as llama-server takes it); null for free text. Compiled grammars are kept
    /// by source text (the last 64), so repeated requests share one grammar and its cached token masks.
    /// </summary>
    ByteGrammar? Grammar(RequestFields body)
    {
        var format = body.Get("response_format");
        var gbnf = body.String("grammar");
        if (format is not null && gbnf is not null && FormatType(format.Value) != "text")
            throw ServeError.Invalid("give either 'response_format' or 'grammar', not both", "grammar");
        if (gbnf is not null) return Compiled("gbnf:" + gbnf, "grammar", () => GbnfGrammar.Parse(gbnf));
        if (format is not { } f) return null;
        switch (FormatType(f))
        {
            case "text":
                return null;
            case "json_object":
                return Compiled("json_object", "response_format", JsonSchemaGrammar.JsonObject);
            case "json_schema":
                if (!f.TryGetProperty("json_schema", out var wrapper) || wrapper.ValueKind != JsonValueKind.Object)
                    throw ServeError.Invalid("'response_format' of type json_schema needs a 'json_schema' object", "response_format");
                if (!wrapper.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                    throw ServeError.Invalid("'response_format.json_schema.name' is required", "response_format");
                if (!wrapper.TryGetProperty("schema", out var schema))
                    throw ServeError.Invalid("'response_format.json_schema.schema' is required", "response_format");
                return Compiled("schema:" + schema.GetRawText(), "response_format", () => JsonSchemaGrammar.FromSchema(schema));
            case var other:
                throw ServeError.Invalid($"unknown 'response_format' type '{other}' (text, json_object, json_schema)", "response_format");
        }
    }

    static string? FormatType(JsonElement format) =>
        format.ValueKind == JsonValueKind.Object && format.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString() : throw ServeError.Invalid("'response_format' must be an object with a string 'type'", "response_format");

    ByteGrammar Compiled(string key, string field, Func<ByteGrammar> compile)
    {
        if (Encoding.UTF8.GetByteCount(key) > MaxGrammarBytes)
            throw ServeError.Invalid($"the {(field == "grammar" ? "grammar" : "schema")} is {Encoding.UTF8.GetByteCount(key):N0} bytes; " +
                                     $"at most {MaxGrammarBytes:N0} are accepted", field);
        try { return grammars.Get(key, compile); }
        catch (WrenException e) when (e is not ServeError) { throw ServeError.Invalid(e.Message, field); }
    }

    int Count(RequestFields body, string field, long defaultValue, int max)
    {
        long n = body.Integer(field) ?? defaultValue;
        if (n < 1 || n > max) throw ServeError.Invalid($"'{field}' must be between 1 and {max}, got {n}", field);
        return (int)n;
    }

    /// <summary>
    /// Submits every request (all or none); the handles end when <paramref name="cancel"/> fires. Errors: 400 naming
    /// <paramref name="field"/> when there are more requests than the engine can ever hold (<see cref="InferenceEngine.Capacity"/>),
    /// which retrying would never change; 429 when they do not fit now.
    /// </summary>
    List<GenerationHandle> SubmitAll(IReadOnlyList<EngineRequest> requests, CancellationTokenSource cancel, string field)
    {
        if (requests.Count > engine.Capacity)
            throw ServeError.Invalid($"this request needs {requests.Count} sequences (prompts × n), more than the " +
                                     $"{engine.Capacity} this server can ever hold ({engine.Slots} running + {engine.Options.MaxQueue} " +
                                     "waiting, --max-batch and --max-queue)", field, "too_many_sequences");
        var handles = new List<GenerationHandle>();
        try
        {
            foreach (var request in requests) handles.Add(engine.Submit(request, cancel.Token));
        }
        catch
        {
            cancel.Cancel();
            throw;
        }
        return handles;
    }

    async Task Completions(HttpContext ctx)
    {
        var body = await ReadBody(ctx);
        CheckModel(body);
        RejectUnsupported(body);
        var prompts = Prompts(body);
        var sampling = Sampling(body, 16, "max_tokens");
        foreach (var p in prompts) CheckPromptFits(p.Ids.Count, sampling.MaxNewTokens > 0, "prompt");
        int n = Count(body, "n", 1, 16);
        bool echo = body.Bool("echo") ?? false, stream = body.Bool("stream") ?? false;
        int? logprobs = body.Integer("logprobs") is { } k ? (int)Math.Clamp(k, -1, 21) : null;
        if (logprobs is < 0 or > 20)
            throw ServeError.Invalid($"'logprobs' must be between 0 and 20, got {body.Integer("logprobs")}", "logprobs");
        bool includeUsage = IncludeUsage(body);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var handles = SubmitAll(prompts.SelectMany(p => Enumerable.Range(0, n).Select(j =>
            new EngineRequest(p.Ids, sampling with { Seed = sampling.Seed + (ulong)j }, logprobs, echo && logprobs is not null))).ToList(),
            cancel, n > 1 ? "n" : "prompt");
        var id = ResponseId.New("cmpl-");
        int promptTokens = prompts.Sum(p => p.Ids.Count);
        string PromptText(int choice) => echo ? prompts[choice / n].Text : "";
        if (!stream)
        {
            var results = await Task.WhenAll(handles.Select(h => Collect(h, cancel.Token)));
            CompletionLogprobs? Logprobs(List<GenerationStep> steps, int i) => logprobs is null ? null
                : LegacyLogprobs(echo ? handles[i].PromptLogprobs : null, steps.Where(s => s.Logprob is not null).ToList(),
                                 echo ? 0 : prompts[i / n].Text.Length);
            var choices = results.Select((steps, i) => new CompletionChoice(PromptText(i) + string.Concat(steps.Select(s => s.Text)), i,
                Logprobs(steps, i), steps[^1].FinishReason)).ToList();
            await WriteJson(ctx, 200, Completion(id, choices, Usage(handles, promptTokens)));
            return;
        }
        await StartEvents(ctx);
        var started = new bool[handles.Count];
        await foreach (var (index, step) in Merge(handles, cancel.Token))
        {
            string text = step.Text;
            CompletionLogprobs? lp = logprobs is null ? null : LegacyLogprobs(null, [step], 0);
            if (!started[index])
            {
                started[index] = true;
                text = PromptText(index) + text;
                if (echo && logprobs is not null) lp = LegacyLogprobs(handles[index].PromptLogprobs, [step], 0);
            }
            await Event(ctx, Completion(id, [new CompletionChoice(text, index, lp, step.FinishReason)]));
        }
        for (int i = 0; i < handles.Count; i++)                // max_tokens 0 with echo: the prompt alone
            if (!started[i])
                await Event(ctx, Completion(id, [new CompletionChoice(PromptText(i), i,
                    logprobs is null ? null : LegacyLogprobs(handles[i].PromptLogprobs, [], 0),
                    handles[i].Usage?.FinishReason ?? "length")]));
        if (includeUsage) await Event(ctx, Completion(id, [], Usage(handles, promptTokens)));
        await Done(ctx);
    }

    CompletionBody Completion(ResponseId id, IReadOnlyList<CompletionChoice> choices, UsageBody? usage = null) =>
        new(id.Id, "text_completion", id.Created, options.ModelName, fingerprint, choices, usage);

    ChatBody Chunk(ResponseId id, IReadOnlyList<ChatChoice> choices, UsageBody? usage = null) =>
        new(id.Id, "chat.completion.chunk", id.Created, options.ModelName, fingerprint, choices, usage);

    /// <summary>A response's id and <c>created</c> time (Unix seconds when its request arrived, as OpenAI sets it), shared by
    /// all its chunks.</summary>
    readonly record struct ResponseId(string Id, long Created)
    {
        public static ResponseId New(string prefix) =>
            new(prefix + Guid.NewGuid().ToString("N")[..24], DateTimeOffset.UtcNow.ToUnixTimeSeconds());
    }

    static bool IncludeUsage(RequestFields body) =>
        body.Get("stream_options") is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty("include_usage", out var u)
        && u.ValueKind == JsonValueKind.True;

    /// <summary>
    /// <c>prompt</c>: a string, a list of strings, a list of token ids, or a list of lists of token ids (at most 64 prompts). Text
    /// whose length alone proves it longer than the context is refused before the tokenizer sees it (<see cref="CheckTextFits"/>).
    /// </summary>
    List<(IReadOnlyList<int> Ids, string Text)> Prompts(RequestFields body)
    {
        var prompt = body.Get("prompt") ?? throw ServeError.Invalid("'prompt' is required", "prompt");
        if (prompt.ValueKind == JsonValueKind.Array && prompt.GetArrayLength() > 64 && prompt[0].ValueKind != JsonValueKind.Number)
            throw ServeError.Invalid($"at most 64 prompts per request, got {prompt.GetArrayLength()}", "prompt");
        var tokenizer = engine.Tokenizer;
        const string expected = "a string, a list of strings, a list of token ids or a list of such lists";
        (IReadOnlyList<int>, string) FromIds(JsonElement list)
        {
            CheckPromptFits(list.GetArrayLength(), generates: false, "prompt");
            var ids = list.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var i) ? i
                : throw RequestFields.TypeError("prompt", expected)).ToList();
            return (ids, tokenizer.Decode(ids.Where(i => i >= 0)));
        }
        (IReadOnlyList<int>, string) FromText(JsonElement value)
        {
            string text = RequestFields.Text(value, "prompt");
            CheckTextFits(Encoding.UTF8.GetByteCount(text), "prompt");
            return (tokenizer.Encode(text), text);
        }
        return prompt.ValueKind switch
        {
            JsonValueKind.String => [FromText(prompt)],
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                prompt.EnumerateArray().Select(FromText).ToList(),
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number) =>
                [FromIds(prompt)],
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Array) =>
                prompt.EnumerateArray().Select(FromIds).ToList(),
            _ => throw RequestFields.TypeError("prompt", expected),
        };
    }

    /// <summary>
    /// UTF-8 bytes one token can stand for, at most: twice (for normalizers that shrink text, such as NFC composing "e" + U+0301
    /// into "é") the longest token's decoded text plus one byte (a leading space that a Metaspace decoder drops). A token's
    /// decoded text is never shorter than the bytes it covers otherwise (byte-level pieces of a split character decode to
    /// U+FFFD, three bytes), so text of N bytes has at least N / this many tokens; a normalizer that deletes characters is the
    /// exception, and its text may be refused while it would fit.
    /// </summary>
    static int TokenBytesBound(ITextTokenizer tokenizer) =>
        2 * (1 + Enumerable.Range(0, tokenizer.VocabularySize).Max(id => Encoding.UTF8.GetByteCount(tokenizer.Decode([id]))));

    /// <summary>400 <c>context_length_exceeded</c> naming <paramref name="field"/> when text of this many UTF-8 bytes cannot fit.</summary>
    void CheckTextFits(long bytes, string field)
    {
        long fewest = bytes / tokenBytes;
        if (fewest > engine.Options.MaxContext)
            throw ServeError.Invalid($"this model's maximum context length is {engine.Options.MaxContext} tokens; the {field} " +
                                     $"has {bytes} bytes of text, at least {fewest} tokens", field, "context_length_exceeded");
    }

    /// <summary>400 <c>context_length_exceeded</c> naming <paramref name="field"/> when the prompt alone fills the context.</summary>
    /// <param name="generates">Whether a token must follow the prompt (all but <c>max_tokens</c> 0 with <c>echo</c>).</param>
    void CheckPromptFits(int tokens, bool generates, string field)
    {
        int context = engine.Options.MaxContext;
        if (tokens > context - (generates ? 1 : 0))
            throw ServeError.Invalid($"this model's maximum context length is {context} tokens; the {field} alone has {tokens}" +
                                     (generates ? ", leaving no room for a generated token" : ""), field, "context_length_exceeded");
    }

    CompletionLogprobs LegacyLogprobs(IReadOnlyList<TokenLogprob>? prompt, IReadOnlyList<GenerationStep> steps, int offset)
    {
        var all = (prompt ?? []).Concat(steps.Select(s => s.Logprob!)).ToList();
        var offsets = new List<int>();
        foreach (var t in all) { offsets.Add(offset); offset += t.Token.Length; }
        return new CompletionLogprobs(all.Select(t => t.Token).ToList(), all.Select(t => t.Logprob).ToList(),
            all.Select(t => t.Logprob is null ? null : Top(t)).ToList(), offsets);
    }

    static Dictionary<string, double> Top(TokenLogprob t)
    {
        var top = new Dictionary<string, double>();
        foreach (var alternative in t.Top) top.TryAdd(alternative.Token, alternative.Logprob);
        return top;
    }

    /// <summary>Token counts; <paramref name="promptTokens"/> counts each prompt once, whatever n is (as OpenAI does).</summary>
    static UsageBody Usage(IReadOnlyList<GenerationHandle> handles, int promptTokens)
    {
        int completion = handles.Sum(h => h.Usage?.CompletionTokens ?? 0);
        int cached = handles.Sum(h => h.Usage?.CachedPromptTokens ?? 0);
        return new UsageBody(promptTokens, completion, promptTokens + completion, new PromptTokensDetails(cached));
    }

    async Task Chat(HttpContext ctx)
    {
        var body = await ReadBody(ctx);
        CheckModel(body);
        RejectUnsupported(body);
        var turns = Messages(body);
        CheckTextFits(turns.Sum(t => (long)Encoding.UTF8.GetByteCount(t.Content ?? "")), "messages");
        var tools = ToolRequest.Parse(body, MaxGrammarBytes) is { Choice: not "none" } offered ? offered : null;
        IReadOnlyList<object?>? templateTools = null;
        if (tools is not null) (turns, templateTools) = tools.Prompt(turns, template, syntax);
        var templateOptions = new ChatTemplateOptions(true, templateTools, body.Objects("documents"), body.Object("chat_template_kwargs"));
        var prompt = ChatPrompts.Encode(engine.Tokenizer, template, turns, templateOptions);
        CheckPromptFits(prompt.Count, generates: true, "messages");
        string maxField = body.Get("max_completion_tokens") is not null ? "max_completion_tokens" : "max_tokens";
        var sampling = Sampling(body, Math.Max(1, engine.Options.MaxContext - prompt.Count), maxField);
        if (sampling.MaxNewTokens == 0) throw ServeError.Invalid($"'{maxField}' must be >= 1", maxField);
        if (tools is { Forced: true })
        {
            if (sampling.Grammar is not null)
                throw ServeError.Invalid("'tool_choice' required or a named function constrains the reply itself: give no " +
                                         "'response_format' or 'grammar' with it", "tool_choice");
            var callable = tools.Callable;
            sampling = sampling with
            {
                Grammar = Compiled(ToolRequest.GrammarKey(syntax, tools), "tools", () => syntax.Grammar(callable, tools.Parallel)),
            };
        }
        var names = tools?.Tools.Select(t => t.Name).ToHashSet() ?? [];
        int n = Count(body, "n", 1, 16);
        bool stream = body.Bool("stream") ?? false, includeUsage = IncludeUsage(body);
        bool logprobs = body.Bool("logprobs") ?? false;
        long top = body.Integer("top_logprobs") ?? 0;
        if (top is < 0 or > 20) throw ServeError.Invalid($"'top_logprobs' must be between 0 and 20, got {top}", "top_logprobs");
        if (top > 0 && !logprobs) throw ServeError.Invalid("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var handles = SubmitAll(Enumerable.Range(0, n).Select(j =>
            new EngineRequest(prompt, sampling with { Seed = sampling.Seed + (ulong)j }, logprobs ? (int)top : null)).ToList(),
            cancel, "n");
        var id = ResponseId.New("chatcmpl-");
        string? Finish(string? reason, bool called) => called && reason == "stop" ? "tool_calls" : reason;
        if (!stream)
        {
            var results = await Task.WhenAll(handles.Select(h => Collect(h, cancel.Token)));
            var choices = results.Select((steps, i) =>
            {
                string text = string.Concat(steps.Select(s => s.Text));
                var (content, calls) = tools is null ? (text, []) : syntax.Parse(text, names);
                if (tools is { Parallel: false } && calls.Count > 1) calls = [calls[0]];
                var message = new ChatReplyBody("assistant", content,
                                                  calls.Count > 0 ? calls.Select(c => ToolCallBody.Of(c, null)).ToList() : null);
                return new ChatChoice(i, message, null, logprobs ? ChatLogprobsOf(steps) : null,
                                      Finish(steps[^1].FinishReason, calls.Count > 0));
            }).ToList();
            await WriteJson(ctx, 200, new ChatBody(id.Id, "chat.completion", id.Created, options.ModelName, fingerprint, choices,
                                                   Usage(handles, prompt.Count)));
            return;
        }
        await StartEvents(ctx);
        for (int i = 0; i < n; i++)
            await Event(ctx, Chunk(id, [new ChatChoice(i, null, new ChatMessageBody("assistant", ""), null, null)]));
        var splitters = Enumerable.Range(0, n).Select(_ => tools is null ? null : new ToolCallStream(syntax, names)).ToArray();
        var called = new int[n];
        await foreach (var (index, step) in Merge(handles, cancel.Token))
        {
            var (text, calls) = splitters[index] is { } splitter ? splitter.Push(step.Text) : (step.Text, []);
            if (step.FinishReason is not null && splitters[index] is { } last)
            {
                var (restText, restCalls) = last.Finish();
                (text, calls) = (text + restText, [.. calls, .. restCalls]);
            }
            if (tools is { Parallel: false }) calls = [.. calls.Take(Math.Max(0, 1 - called[index]))];
            foreach (var call in calls)
                await Event(ctx, Chunk(id, [new ChatChoice(index, null,
                    new ChatMessageBody(null, null, [ToolCallBody.Of(call, called[index]++)]), null, null)]));
            if (tools is null || text.Length > 0 || step.FinishReason is not null || logprobs)
            {
                var delta = new ChatMessageBody(null, text.Length > 0 ? text : step.FinishReason is null ? "" : null);
                await Event(ctx, Chunk(id, [new ChatChoice(index, null, delta, logprobs ? ChatLogprobsOf([step]) : null,
                                                           Finish(step.FinishReason, called[index] > 0))]));
            }
        }
        if (includeUsage) await Event(ctx, Chunk(id, [], Usage(handles, prompt.Count)));
        await Done(ctx);
    }

    /// <summary>
    /// <c>messages</c>: objects with a role (system, developer, user, assistant, tool) and text content (a string or text
    /// parts; null is None for an assistant message); their other fields (<c>tool_calls</c>, <c>tool_call_id</c>, <c>name</c>…)
    /// reach the chat template as they are.
    /// </summary>
    static List<ChatTurn> Messages(RequestFields body)
    {
        var messages = body.Get("messages") ?? throw ServeError.Invalid("'messages' is required", "messages");
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            throw RequestFields.TypeError("messages", "a non-empty list of messages");
        var turns = new List<ChatTurn>();
        foreach (var message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object) throw RequestFields.TypeError("messages", "a list of objects");
            var fields = new RequestFields(message);
            var role = fields.String("role") ?? throw ServeError.Invalid("every message needs a 'role'", "messages");
            if (role is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw ServeError.Invalid($"unsupported message role '{role}' (system, developer, user, assistant, tool)", "messages");
            string field = $"messages[{turns.Count}].content";
            string? content = fields.Get("content") switch
            {
                null => role == "assistant" ? null : "",
                { ValueKind: JsonValueKind.String } s => RequestFields.Text(s, field),
                { ValueKind: JsonValueKind.Array } parts => string.Concat(parts.EnumerateArray().Select(p =>
                    p.ValueKind == JsonValueKind.Object && p.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
                        && t.ValueEquals("text") && p.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                        ? RequestFields.Text(text, field) : throw ServeError.Invalid("only text content parts are supported", "messages"))),
                _ => throw RequestFields.TypeError("content", "a string or a list of text parts"),
            };
            var others = message.EnumerateObject().Where(p => p.Name is not ("role" or "content"))
                .GroupBy(p => p.Name).ToDictionary(g => g.Key, g => (object?)g.Last().Value);
            if (fields.Get("tool_calls") is { } calls)
            {
                if (role != "assistant")
                    throw ServeError.Invalid($"'messages[{turns.Count}].tool_calls' is only for assistant messages", "messages");
                others["tool_calls"] = TemplateToolCalls(calls, $"messages[{turns.Count}].tool_calls");
            }
            if (role == "tool" && fields.Get("tool_call_id") is not { ValueKind: JsonValueKind.String })
                throw ServeError.Invalid($"'messages[{turns.Count}].tool_call_id' (a string) is required for a tool message", "messages");
            turns.Add(new ChatTurn(role == "developer" ? "system" : role, content, others.Count > 0 ? others : null));
        }
        return turns;
    }

    /// <summary>
    /// An assistant message's <c>tool_calls</c> for the template: each <c>function.arguments</c> JSON string becomes the object it
    /// encodes, as vLLM hands them to templates (which write <c>arguments | tojson</c>). Errors: 400 naming the field when a call
    /// is not <c>{"function": {"name": …, "arguments": …}}</c>.
    /// </summary>
    static JsonElement TemplateToolCalls(JsonElement calls, string field)
    {
        if (calls.ValueKind != JsonValueKind.Array) throw RequestFields.TypeError(field, "a list of tool calls");
        var converted = new JsonArray();
        foreach (var call in calls.EnumerateArray())
        {
            if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("function", out var function)
                || function.ValueKind != JsonValueKind.Object || !function.TryGetProperty("name", out var name)
                || name.ValueKind != JsonValueKind.String
                || call.TryGetProperty("id", out var id) && id.ValueKind != JsonValueKind.String
                || call.TryGetProperty("type", out var type) && !(type.ValueKind == JsonValueKind.String && type.ValueEquals("function")))
                throw ServeError.Invalid($"'{field}' must hold objects {{\"id\": \"…\", \"type\": \"function\", \"function\": " +
                                         "{\"name\": …, \"arguments\": …}}", field);
            var node = JsonNode.Parse(call.GetRawText())!.AsObject();
            if (function.TryGetProperty("arguments", out var arguments))
                node["function"]!["arguments"] = arguments.ValueKind == JsonValueKind.String ? ArgumentsObject(arguments, field)
                    : throw ServeError.Invalid($"'{field}' arguments must be a string of a JSON object", field);
            converted.Add(node);
        }
        return JsonDocument.Parse(converted.ToJsonString()).RootElement.Clone();
    }

    static JsonNode ArgumentsObject(JsonElement arguments, string field)
    {
        try
        {
            if (JsonNode.Parse(RequestFields.Text(arguments, field)) is JsonObject parsed) return parsed;
        }
        catch (JsonException) { }
        throw ServeError.Invalid($"'{field}' arguments must be a string of a JSON object", field);
    }

    static ChatLogprobs ChatLogprobsOf(IEnumerable<GenerationStep> steps) =>
        new(steps.Select(s => s.Logprob!).Select(t => new ChatTokenLogprob(t.Token, t.Logprob ?? 0, Bytes(t.Token),
            t.Top.Select(a => new ChatTopLogprob(a.Token, a.Logprob, Bytes(a.Token))).ToList())).ToList());

    static int[] Bytes(string token) => Encoding.UTF8.GetBytes(token).Select(b => (int)b).ToArray();

    static async Task<List<GenerationStep>> Collect(GenerationHandle handle, CancellationToken cancel)
    {
        var steps = new List<GenerationStep>();
        await foreach (var step in handle.Steps.ReadAllAsync(cancel)) steps.Add(step);
        if (steps.Count == 0) steps.Add(new GenerationStep(-1, "", null, handle.Usage?.FinishReason ?? "length"));   // echo, max_tokens 0
        return steps;
    }

    /// <summary>The steps of every handle as they come, tagged with the handle's index.</summary>
    static async IAsyncEnumerable<(int Index, GenerationStep Step)> Merge(IReadOnlyList<GenerationHandle> handles,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancel)
    {
        if (handles.Count == 1)
        {
            await foreach (var step in handles[0].Steps.ReadAllAsync(cancel)) yield return (0, step);
            yield break;
        }
        var merged = Channel.CreateUnbounded<(int, GenerationStep)>();
        var pumps = handles.Select(async (h, i) =>
        {
            await foreach (var step in h.Steps.ReadAllAsync(cancel)) await merged.Writer.WriteAsync((i, step), cancel);
        }).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(t => merged.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        await foreach (var item in merged.Reader.ReadAllAsync(cancel)) yield return item;
    }

    static Task StartEvents(HttpContext ctx)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        return ctx.Response.StartAsync(ctx.RequestAborted);
    }

    static async Task Event(HttpContext ctx, object body)
    {
        await ctx.Response.WriteAsync($"data: {JsonSerializer.Serialize(body, body.GetType(), Json)}\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    static async Task Done(HttpContext ctx)
    {
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
