using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging.Abstractions;
using Wren.Inference;
using Wren.Models;
using Wren.Serving;
using Wren.Templating;
using Wren.Tokenization;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Serving;

/// <summary>The in-process <see cref="IChatClient"/> and <c>wren serve</c>'s folder loading, on a model saved to a folder.</summary>
public sealed class ChatClientTests : IDisposable
{
    readonly string folder = Path.Combine(TempDir(), "tiny-chat");

    public ChatClientTests()
    {
        using var model = RandomModel(LoopbackServer.ModelConfig, seed: 11);
        model.SavePretrained(folder);
    }

    public void Dispose() => Directory.Delete(Path.GetDirectoryName(folder)!, recursive: true);

    [Fact]
    public async Task The_chat_client_answers_like_the_generator_streaming_or_not()
    {
        var engineOptions = new EngineOptions { MaxBatch = 4, MaxContext = 256, PrefillChunk = 16, PrefixBlock = 16 };
        using IChatClient client = WrenChatClient.Open(folder, engineOptions, "chatml");
        ChatMessage[] conversation = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Name a colour.")];
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 7 };
        var response = await client.GetResponseAsync(conversation, options);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(7, response.Usage!.OutputTokenCount);

        using var model = HybridForCausalLM.FromPretrained(folder);
        var tokenizer = new ByteTokenizer(256);
        var prompt = ChatTemplate.BuiltIn("chatml").Apply([new ChatTurn("system", "Be brief."), new ChatTurn("user", "Name a colour.")]);
        var ids = new TextGenerator(model, tokenizer).Generate(prompt, new SamplingOptions { Temperature = 0, MaxNewTokens = 7 })
            .Select(t => t.TokenId);
        Assert.Equal(tokenizer.Decode(ids.ToList()), response.Text);

        var streamed = new StringBuilder();
        UsageDetails? usage = null;
        await foreach (var update in client.GetStreamingResponseAsync(conversation, options))
        {
            streamed.Append(update.Text);
            usage ??= update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
        }
        Assert.Equal(response.Text, streamed.ToString());
        Assert.Equal(response.Usage.InputTokenCount, usage!.InputTokenCount);
        Assert.True(usage.CachedInputTokenCount > 0, "the second request starts from the first one's prefix state");
        Assert.Equal("tiny-chat", client.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    [Fact]
    public async Task Chat_template_kwargs_in_the_options_reach_the_template()
    {
        string templateFolder = TempDir();
        File.WriteAllText(Path.Combine(templateFolder, "chat_template.jinja"), "{{ messages[0]['content'] }}|{{ enable_thinking }}");
        using IChatClient client = WrenChatClient.Open(folder, new EngineOptions { MaxBatch = 1, MaxContext = 64 }, templateFolder);
        var options = new ChatOptions
        {
            MaxOutputTokens = 1,
            AdditionalProperties = new() { ["chat_template_kwargs"] = new Dictionary<string, object?> { ["enable_thinking"] = false } },
        };
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], options);
        Assert.Equal(Encoding.UTF8.GetByteCount("hi|False"), response.Usage!.InputTokenCount);
    }

    [Fact]
    public void The_chat_template_defaults_to_the_folder_then_nemotron_flash_and_unknown_names_are_errors()
    {
        ChatTurn[] turns = [new("user", "Hi")];
        Assert.Equal(ChatTemplate.BuiltIn("nemotron-flash").Apply(turns), ServeHost.ResolveTemplate(null, folder).Apply(turns));
        Assert.Equal(ChatTemplate.BuiltIn("chatml").Apply(turns), ServeHost.ResolveTemplate("chatml", folder).Apply(turns));
        var error = Assert.Throws<WrenException>(() => ServeHost.ResolveTemplate("llama-9", folder));
        Assert.Contains("nemotron-flash, chatml", error.Message);
    }

    [Fact]
    public async Task Serve_host_loads_a_model_folder_and_answers_on_a_free_port()
    {
        using var stop = new CancellationTokenSource();
        var listening = new TaskCompletionSource<Uri>();
        var settings = new ServeSettings(folder, new ServeOptions("tiny-chat", Port: 0),
                                         new EngineOptions { MaxBatch = 2, MaxContext = 128, PrefillChunk = 16 }, "chatml");
        var run = ServeHost.RunAsync(settings, NullLoggerFactory.Instance, listening.SetResult, stop.Token);
        var address = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30));
        using var http = new HttpClient { BaseAddress = address };
        var models = JsonNode.Parse(await http.GetStringAsync("/v1/models"))!;
        Assert.Equal("tiny-chat", (string)models["data"]![0]!["id"]!);
        stop.Cancel();
        await run.WaitAsync(TimeSpan.FromSeconds(30));
    }
}
