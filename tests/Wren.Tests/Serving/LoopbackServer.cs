using System.ClientModel;
using System.ClientModel.Primitives;
using OpenAI;
using Wren.Models;
using Wren.Serving;
using Wren.Templating;
using Wren.Tokenization;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Serving;

/// <summary>
/// What <c>wren serve</c> runs (<see cref="InferenceEngine"/> + <see cref="OpenAiServer"/> on Kestrel), bound to a free
/// loopback port, over a small random hybrid with every layer type (a sliding-window layer included) and byte tokens.
/// </summary>
public sealed class LoopbackServer : IAsyncDisposable
{
    public const string ModelName = "tiny-hybrid";

    public static HybridConfig ModelConfig => Config("deltanet", "f", "m2", "a", "gdn", "a") with
    {
        VocabSize = 256,
        NumMemoryTokens = 2,
        SlidingWindow = 12,
        GlobalAttnIdx = [5],
    };

    public HybridForCausalLM Model { get; }
    public ITextTokenizer Tokenizer { get; } = new ByteTokenizer(256);
    public InferenceEngine Engine { get; }
    public OpenAiServer Server { get; }
    public HttpClient Http { get; }
    public Uri Address => Server.Address;

    LoopbackServer(HybridForCausalLM model, InferenceEngine engine, OpenAiServer server)
    {
        Model = model;
        Engine = engine;
        Server = server;
        Http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
    }

    /// <param name="serve">Changes to the server's options (the model name and a free port are set).</param>
    /// <param name="tokenizer">The engine's tokenizer (default: bytes); tests wrap it to count calls.</param>
    /// <param name="template">The chat template (null: the built-in <c>chatml</c>).</param>
    public static async Task<LoopbackServer> StartAsync(EngineOptions? options = null, string? apiKey = null,
                                                        Func<ServeOptions, ServeOptions>? serve = null, ITextTokenizer? tokenizer = null,
                                                        ChatTemplate? template = null)
    {
        var model = RandomModel(ModelConfig, seed: 11);
        options ??= new EngineOptions { MaxBatch = 8, PrefillChunk = 16, MaxContext = 256 };
        var engine = new InferenceEngine(model, tokenizer ?? new ByteTokenizer(256), options);
        template ??= ChatTemplate.BuiltIn("chatml");
        var serveOptions = new ServeOptions(ModelName, Port: 0, ApiKey: apiKey);
        var server = await OpenAiServer.StartAsync(engine, template, serve?.Invoke(serveOptions) ?? serveOptions);
        return new LoopbackServer(model, engine, server);
    }

    /// <summary>
    /// Sends <paramref name="request"/> (head and body, as bytes) over a raw socket and reads the reply until the server closes the
    /// connection or <paramref name="seconds"/> pass: for requests no HTTP client would send.
    /// </summary>
    public async Task<string> RawAsync(byte[] request, int seconds = 30)
    {
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(Address.Host, Address.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(request);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var reply = new MemoryStream();
        try { await stream.CopyToAsync(reply, timeout.Token); }
        catch (Exception e) when (e is OperationCanceledException or IOException) { }
        return System.Text.Encoding.UTF8.GetString(reply.ToArray());
    }

    /// <summary>The official OpenAI client pointed at this server (no retries: a refusal must surface).</summary>
    public OpenAIClient OpenAi(string key = "unused") =>
        new(new ApiKeyCredential(key),
            new OpenAIClientOptions { Endpoint = new Uri(Address, "/v1"), RetryPolicy = new ClientRetryPolicy(0) });

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Engine.Dispose();
        Model.Dispose();
    }
}
