using Microsoft.Extensions.Logging;
using TorchSharp;
using Wren.Models;
using Wren.Modules;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Serving;

/// <summary>What <c>wren serve</c> runs: a model folder, the engine's sizes and the HTTP API's address.</summary>
/// <param name="ChatTemplate">A built-in name (<see cref="Templating.ChatTemplate.BuiltInNames"/>), a model folder or a
/// tokenizer_config.json; null: the model folder's template, else <c>nemotron-flash</c>.</param>
public sealed record ServeSettings(string ModelFolder, ServeOptions Server, EngineOptions Engine, string? ChatTemplate = null,
                                   WeightPrecision Weights = WeightPrecision.Float32, torch.Device? Device = null);

/// <summary>Loads a model folder and serves it until cancelled.</summary>
public static class ServeHost
{
    /// <summary>
    /// Loads the model, tokenizer and chat template, starts the engine and the HTTP API, and runs until <paramref name="cancel"/>.
    /// </summary>
    /// <param name="started">Called with the bound address once the server listens.</param>
    public static async Task RunAsync(ServeSettings settings, ILoggerFactory logging, Action<Uri>? started = null,
                                      CancellationToken cancel = default)
    {
        settings.Server.Validate();
        settings.Engine.Validate();
        using var model = HybridForCausalLM.FromPretrained(settings.ModelFolder, settings.Weights, settings.Device);
        model.eval();
        var tokenizer = TokenizerLoader.ForModel(settings.ModelFolder, model.Config);
        var template = ResolveTemplate(settings.ChatTemplate, settings.ModelFolder);
        using var engine = new InferenceEngine(model, tokenizer, settings.Engine, logger: logging.CreateLogger("Wren.Serving.Engine"));
        await using var server = await OpenAiServer.StartAsync(engine, template, settings.Server, logging, cancel);
        logging.CreateLogger("Wren.Serving").LogInformation(
            "serving {Model} ({Tokenizer}) on {Address}: {Slots} slots of {Context} tokens ({SlotMB:F1} MB each), " +
            "prefill chunks of {Chunk} tokens, {Budget} tokens a step, prefix cache {PrefixMB:F0} MB in blocks of {Block} tokens",
            settings.Server.ModelName, tokenizer.Name, server.Address, engine.Slots, settings.Engine.MaxContext, engine.SlotBytes / 1e6,
            settings.Engine.PrefillChunk, settings.Engine.MaxBatchedTokens, settings.Engine.PrefixCacheBytes / 1e6,
            settings.Engine.CacheBlock);
        started?.Invoke(server.Address);
        try { await server.WaitForShutdownAsync(cancel); }
        catch (OperationCanceledException) { }
    }

    /// <summary>The chat template named by <paramref name="choice"/> (see <see cref="ServeSettings.ChatTemplate"/>).</summary>
    public static ChatTemplate ResolveTemplate(string? choice, string modelFolder)
    {
        if (choice is null) return ChatTemplate.FromModelFolder(modelFolder) ?? ChatTemplate.BuiltIn("nemotron-flash");
        if (ChatTemplate.BuiltInNames.Contains(choice)) return ChatTemplate.BuiltIn(choice);
        string folder = File.Exists(choice) && Path.GetFileName(choice) == "tokenizer_config.json"
            ? Path.GetDirectoryName(Path.GetFullPath(choice))!
            : choice;
        if (Directory.Exists(folder) && ChatTemplate.FromModelFolder(folder) is { } template) return template;
        throw new WrenException($"--chat-template '{choice}' is neither a built-in template " +
                                $"({string.Join(", ", ChatTemplate.BuiltInNames)}) " +
                                "nor a folder or tokenizer_config.json with a chat_template");
    }
}
