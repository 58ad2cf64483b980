namespace Wren.Templating;

/// <summary>One chat message (role: system, user or assistant).</summary>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// A model's chat template: <c>chat_template</c> from the model folder's <c>tokenizer_config.json</c> (with its
/// <c>bos_token</c>/<c>eos_token</c>), or a built-in one by name (<c>nemotron-flash</c>: "User: …\nAssistant:" as the
/// released model card prompts; <c>chatml</c>).
/// </summary>
public sealed class ChatTemplate
{
    ChatTemplate() { }

    /// <summary>The names accepted by <see cref="BuiltIn"/>.</summary>
    public static IReadOnlyList<string> BuiltInNames => ["nemotron-flash", "chatml"];

    /// <summary>The template in <c>folder/tokenizer_config.json</c>, or null when the folder has none.</summary>
    public static ChatTemplate? FromModelFolder(string folder) => throw new NotImplementedException();

    /// <summary>A built-in template. Errors: <see cref="WrenException"/> listing <see cref="BuiltInNames"/>.</summary>
    public static ChatTemplate BuiltIn(string name) => throw new NotImplementedException();

    public string? BosToken { get; private init; }
    public string? EosToken { get; private init; }

    /// <summary>The prompt text for <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/> it ends where the
    /// assistant's reply starts.</summary>
    public string Apply(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true) => throw new NotImplementedException();
}
