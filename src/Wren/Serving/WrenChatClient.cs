using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using TorchSharp;
using Wren.Constraints;
using Wren.Inference;
using Wren.Models;
using Wren.Modules;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Serving;

/// <summary>
/// A Wren model as a Microsoft.Extensions.AI <see cref="IChatClient"/>, so that a .NET application uses it exactly like a
/// hosted model: conversations go through the chat template into the same <see cref="InferenceEngine"/> (continuous
/// batching, prefix-state cache) that <c>wren serve</c> runs. Options: temperature (default 1), top_p, top_k, seed,
/// max output tokens (default: the rest of the context), stop sequences, frequency and presence penalties; response format
/// (JSON, or JSON with a schema: the reply is grammar-constrained as <c>response_format</c> is on the server); tools with their
/// tool mode (auto, none, required, one named function) and <see cref="ChatOptions.AllowMultipleToolCalls"/>, so that
/// <c>UseFunctionInvocation()</c> calls .NET functions. Calls are written and read in the template's syntax
/// (<see cref="ToolCallSyntax"/>); a required call is grammar-constrained, so its arguments always match the function's schema.
/// </summary>
public sealed class WrenChatClient : IChatClient
{
    readonly InferenceEngine engine;
    readonly ChatTemplate template;
    readonly ToolCallSyntax syntax;
    readonly GrammarCache grammars = new();
    readonly IDisposable[] owned;

    /// <summary>A client over a running engine (not disposed with the client).</summary>
    public WrenChatClient(InferenceEngine engine, ChatTemplate template, string modelId) : this(engine, template, modelId, []) { }

    WrenChatClient(InferenceEngine engine, ChatTemplate template, string modelId, IDisposable[] owned)
    {
        this.engine = engine;
        this.template = template;
        syntax = ToolCallSyntax.Of(template.Source);
        this.owned = owned;
        Metadata = new ChatClientMetadata("wren", null, modelId);
    }

    /// <summary>
    /// Loads a model folder (config.json + safetensors, its tokenizer) and starts an engine for it, both disposed with the client.
    /// </summary>
    /// <param name="chatTemplate">See <see cref="ServeSettings.ChatTemplate"/>.</param>
    public static WrenChatClient Open(string modelFolder, EngineOptions? options = null, string? chatTemplate = null,
                                      WeightPrecision weights = WeightPrecision.Float32)
    {
        var model = HybridForCausalLM.FromPretrained(modelFolder, weights);
        try
        {
            model.eval();
            var tokenizer = TokenizerLoader.ForModel(modelFolder, model.Config);
            var template = ServeHost.ResolveTemplate(chatTemplate, modelFolder);
            var engine = new InferenceEngine(model, tokenizer, options ?? new EngineOptions());
            return new WrenChatClient(engine, template, Path.GetFileName(Path.GetFullPath(modelFolder).TrimEnd('/')), [engine, model]);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public ChatClientMetadata Metadata { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
                                                     CancellationToken cancellationToken = default)
    {
        var (handle, tools) = Submit(messages, options, cancellationToken);
        var text = new StringBuilder();
        string? finish = null;
        await foreach (var step in handle.Steps.ReadAllAsync(cancellationToken))
        {
            text.Append(step.Text);
            finish = step.FinishReason;
        }
        var (content, calls) = tools is null ? (text.ToString(), []) : syntax.Parse(text.ToString(), Names(tools));
        if (tools is { Parallel: false } && calls.Count > 1) calls = [calls[0]];
        var message = new ChatMessage(ChatRole.Assistant, Contents(content, calls));
        return new ChatResponse(message)
        {
            ResponseId = handle.Id, ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(finish, calls.Count > 0), Usage = Usage(handle.Usage),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (handle, tools) = Submit(messages, options, cancellationToken);
        var splitter = tools is null ? null : new ToolCallStream(syntax, Names(tools));
        int called = 0;
        await foreach (var step in handle.Steps.ReadAllAsync(cancellationToken))
        {
            var (text, calls) = splitter?.Push(step.Text) ?? (step.Text, []);
            if (step.FinishReason is not null && splitter is not null)
            {
                var (restText, restCalls) = splitter.Finish();
                (text, calls) = (text + restText, [.. calls, .. restCalls]);
            }
            if (tools is { Parallel: false }) calls = [.. calls.Take(Math.Max(0, 1 - called))];
            called += calls.Count;
            var update = new ChatResponseUpdate(ChatRole.Assistant, Contents(text, calls))
            {
                ResponseId = handle.Id, MessageId = handle.Id, ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow,
                FinishReason = Finish(step.FinishReason, called > 0),
            };
            if (step.FinishReason is not null && Usage(handle.Usage) is { } usage) update.Contents.Add(new UsageContent(usage));
            yield return update;
        }
    }

    static HashSet<string> Names(ToolRequest tools) => tools.Tools.Select(t => t.Name).ToHashSet();

    /// <summary>The text (when any) and the calls, as message contents.</summary>
    static List<AIContent> Contents(string? text, IEnumerable<ToolCall> calls) =>
    [
        .. text is { Length: > 0 } ? [new TextContent(text)] : Array.Empty<AIContent>(),
        .. calls.Select(c => new FunctionCallContent(c.Id, c.Name, JsonSerializer.Deserialize<Dictionary<string, object?>>(c.Arguments))),
    ];

    (GenerationHandle Handle, ToolRequest? Tools) Submit(IEnumerable<ChatMessage> messages, ChatOptions? options, CancellationToken cancel)
    {
        var turns = new List<ChatTurn>();
        if (options?.Instructions is { Length: > 0 } instructions) turns.Add(new ChatTurn("system", instructions));
        foreach (var message in messages) turns.AddRange(Turns(message));
        var tools = Tools(options);
        IReadOnlyList<object?>? templateTools = null;
        if (tools is not null) (turns, templateTools) = tools.Prompt(turns, template, syntax);
        // chat_template_kwargs, as the HTTP endpoint takes them: keyword variables of the template (e.g. enable_thinking).
        var extra = options?.AdditionalProperties?.TryGetValue("chat_template_kwargs", out var kwargs) == true
            ? kwargs as IReadOnlyDictionary<string, object?>
              ?? throw new ArgumentException("chat_template_kwargs must be an IReadOnlyDictionary<string, object?>", nameof(options))
            : null;
        var prompt = ChatPrompts.Encode(engine.Tokenizer, template, turns, new ChatTemplateOptions(Tools: templateTools, Extra: extra));
        var grammar = tools is { Forced: true }
            ? grammars.Get(ToolRequest.GrammarKey(syntax, tools), () => syntax.Grammar(tools.Callable, tools.Parallel))
            : options?.ResponseFormat switch
            {
                ChatResponseFormatJson { Schema: { } schema } => grammars.Get("schema:" + schema.GetRawText(),
                                                                              () => JsonSchemaGrammar.FromSchema(schema)),
                ChatResponseFormatJson => grammars.Get("json_object", JsonSchemaGrammar.JsonObject),
                _ => null,
            };
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? 1.0, TopP = options?.TopP ?? 1.0, TopK = options?.TopK ?? 0,
            Seed = options?.Seed is { } seed ? unchecked((ulong)seed) : null,
            MaxNewTokens = options?.MaxOutputTokens ?? Math.Max(1, engine.Options.MaxContext - prompt.Count),
            StopStrings = options?.StopSequences?.ToList() ?? [], StopTokenIds = ChatPrompts.StopIds(engine.Tokenizer, template),
            FrequencyPenalty = options?.FrequencyPenalty ?? 0, PresencePenalty = options?.PresencePenalty ?? 0, Grammar = grammar,
        };
        return (engine.Submit(new EngineRequest(prompt, sampling), cancel), tools);
    }

    /// <summary>The options' functions and tool mode as a tool request; null without functions or with tool mode none.
    /// Errors: <see cref="ArgumentException"/> for a required function that is not among the tools.</summary>
    static ToolRequest? Tools(ChatOptions? options)
    {
        var functions = options?.Tools?.OfType<AIFunctionDeclaration>()
            .Select(f => new ToolFunction(f.Name, f.Description, f.JsonSchema)).ToList() ?? [];
        if (functions.Count == 0 || options!.ToolMode is NoneChatToolMode) return null;
        bool parallel = options.AllowMultipleToolCalls ?? true;
        return options.ToolMode switch
        {
            RequiredChatToolMode { RequiredFunctionName: { } name } => functions.Any(f => f.Name == name)
                ? new ToolRequest(functions, "function", name, parallel)
                : throw new ArgumentException($"the required function '{name}' is not among the tools", nameof(options)),
            RequiredChatToolMode => new ToolRequest(functions, "required", null, parallel),
            _ => new ToolRequest(functions, "auto", null, parallel),
        };
    }

    /// <summary>A message as template turns: its text; an assistant's function calls as <c>tool_calls</c> (arguments as objects);
    /// each function result as a <c>tool</c> turn with its <c>tool_call_id</c>.</summary>
    static IEnumerable<ChatTurn> Turns(ChatMessage message)
    {
        var calls = message.Contents.OfType<FunctionCallContent>().ToList();
        var results = message.Contents.OfType<FunctionResultContent>().ToList();
        if (results.Count > 0)
        {
            foreach (var result in results)
                yield return new ChatTurn("tool", result.Result as string ?? JsonSerializer.Serialize(result.Result),
                                          new Dictionary<string, object?> { ["tool_call_id"] = result.CallId });
            yield break;
        }
        if (calls.Count == 0)
        {
            yield return new ChatTurn(message.Role.Value, message.Text);
            yield break;
        }
        var list = new JsonArray(calls.Select(c => (JsonNode?)new JsonObject
        {
            ["id"] = c.CallId, ["type"] = "function",
            ["function"] = new JsonObject
            {
                ["name"] = c.Name, ["arguments"] = JsonSerializer.SerializeToNode(c.Arguments ?? new Dictionary<string, object?>()),
            },
        }).ToArray());
        var fields = new Dictionary<string, object?> { ["tool_calls"] = JsonDocument.Parse(list.ToJsonString()).RootElement.Clone() };
        yield return new ChatTurn("assistant", message.Text is { Length: > 0 } text ? text : null, fields);
    }

    static ChatFinishReason? Finish(string? reason, bool called) => reason switch
    {
        "stop" when called => ChatFinishReason.ToolCalls,
        "stop" => ChatFinishReason.Stop,
        "length" => ChatFinishReason.Length,
        _ => null,
    };

    static UsageDetails? Usage(GenerationUsage? usage) => usage is null ? null : new UsageDetails
    {
        InputTokenCount = usage.PromptTokens, OutputTokenCount = usage.CompletionTokens,
        TotalTokenCount = usage.PromptTokens + usage.CompletionTokens, CachedInputTokenCount = usage.CachedPromptTokens,
    };

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType == typeof(InferenceEngine) ? engine
        : null;

    public void Dispose()
    {
        foreach (var item in owned) item.Dispose();
    }
}
