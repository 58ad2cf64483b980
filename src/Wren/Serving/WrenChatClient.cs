using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.AI;
using TorchSharp;
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
/// max output tokens (default: the rest of the context), stop sequences, frequency and presence penalties; tools are not supported.
/// </summary>
public sealed class WrenChatClient : IChatClient
{
    readonly InferenceEngine engine;
    readonly ChatTemplate template;
    readonly IDisposable[] owned;

    /// <summary>A client over a running engine (not disposed with the client).</summary>
    public WrenChatClient(InferenceEngine engine, ChatTemplate template, string modelId) : this(engine, template, modelId, []) { }

    WrenChatClient(InferenceEngine engine, ChatTemplate template, string modelId, IDisposable[] owned)
    {
        this.engine = engine;
        this.template = template;
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
        var handle = Submit(messages, options, cancellationToken);
        var text = new StringBuilder();
        string? finish = null;
        await foreach (var step in handle.Steps.ReadAllAsync(cancellationToken))
        {
            text.Append(step.Text);
            finish = step.FinishReason;
        }
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
            ResponseId = handle.Id, ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(finish), Usage = Usage(handle.Usage),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var handle = Submit(messages, options, cancellationToken);
        await foreach (var step in handle.Steps.ReadAllAsync(cancellationToken))
        {
            var update = new ChatResponseUpdate(ChatRole.Assistant, step.Text)
            {
                ResponseId = handle.Id, MessageId = handle.Id, ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow,
                FinishReason = Finish(step.FinishReason),
            };
            if (step.FinishReason is not null && Usage(handle.Usage) is { } usage) update.Contents.Add(new UsageContent(usage));
            yield return update;
        }
    }

    GenerationHandle Submit(IEnumerable<ChatMessage> messages, ChatOptions? options, CancellationToken cancel)
    {
        if (options?.Tools is { Count: > 0 }) throw new NotSupportedException("Wren's chat client does not support tools");
        var turns = new List<ChatTurn>();
        if (options?.Instructions is { Length: > 0 } instructions) turns.Add(new ChatTurn("system", instructions));
        turns.AddRange(messages.Select(m => new ChatTurn(m.Role.Value, m.Text)));
        // chat_template_kwargs, as the HTTP endpoint takes them: keyword variables of the template (e.g. enable_thinking).
        var extra = options?.AdditionalProperties?.TryGetValue("chat_template_kwargs", out var kwargs) == true
            ? kwargs as IReadOnlyDictionary<string, object?>
              ?? throw new ArgumentException("chat_template_kwargs must be an IReadOnlyDictionary<string, object?>", nameof(options))
            : null;
        var prompt = ChatPrompts.Encode(engine.Tokenizer, template, turns, new ChatTemplateOptions(Extra: extra));
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? 1.0, TopP = options?.TopP ?? 1.0, TopK = options?.TopK ?? 0,
            Seed = options?.Seed is { } seed ? unchecked((ulong)seed) : null,
            MaxNewTokens = options?.MaxOutputTokens ?? Math.Max(1, engine.Options.MaxContext - prompt.Count),
            StopStrings = options?.StopSequences?.ToList() ?? [], StopTokenIds = ChatPrompts.StopIds(engine.Tokenizer, template),
            FrequencyPenalty = options?.FrequencyPenalty ?? 0, PresencePenalty = options?.PresencePenalty ?? 0,
        };
        return engine.Submit(new EngineRequest(prompt, sampling), cancel);
    }

    static ChatFinishReason? Finish(string? reason) => reason switch
    {
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
