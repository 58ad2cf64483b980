using Wren.Models;
using Wren.Serving;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Tests.Constraints;

/// <summary>
/// A random-weight model behind a byte-level BPE tokenizer (<see cref="ConstrainedGenerationTests.NoiseModel"/>), served on a
/// loopback port with the built-in ChatML template: its free text is noise, so only a constraint can make a reply valid.
/// </summary>
internal sealed class NoiseServer : IAsyncDisposable
{
    public const string ModelName = "noise";

    readonly HybridForCausalLM model;
    public ITextTokenizer Tokenizer { get; }
    public InferenceEngine Engine { get; }
    public OpenAiServer Server { get; }
    public HttpClient Http { get; }

    NoiseServer(HybridForCausalLM model, ITextTokenizer tokenizer, InferenceEngine engine, OpenAiServer server)
    {
        this.model = model;
        Tokenizer = tokenizer;
        Engine = engine;
        Server = server;
        Http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(120) };
    }

    public static async Task<NoiseServer> StartAsync(EngineOptions options)
    {
        var (model, tokenizer) = ConstrainedGenerationTests.NoiseModel();
        var engine = new InferenceEngine(model, tokenizer, options);
        var server = await OpenAiServer.StartAsync(engine, ChatTemplate.BuiltIn("chatml"), new ServeOptions(ModelName, Port: 0));
        return new NoiseServer(model, tokenizer, engine, server);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Engine.Dispose();
        model.Dispose();
    }
}
