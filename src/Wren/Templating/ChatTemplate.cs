using System.Text.Json;

namespace Wren.Templating;

/// <summary>One chat message (role: system, user or assistant).</summary>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// A model's chat template: <c>chat_template</c> from the model folder's <c>tokenizer_config.json</c> (with its
/// <c>bos_token</c>/<c>eos_token</c>), or a built-in one by name (<c>nemotron-flash</c>: "User: …\nAssistant:" as the
/// released model card prompts; <c>chatml</c>).
/// </summary>
/// <remarks>Rendered as Hugging Face <c>transformers</c> does (<see cref="JinjaSettings.HuggingFaceChat"/>), with the
/// variables <c>messages</c> (a list of <c>{"role", "content"}</c>), <c>add_generation_prompt</c>, <c>bos_token</c> and
/// <c>eos_token</c> (left undefined when unknown).</remarks>
public sealed class ChatTemplate
{
    /// <summary>The released Nemotron-Flash models ship no template; their model card prompts "User: …\nAssistant:".
    /// Written out: an optional leading system message as a plain line, then "User: {content}\n" and
    /// "Assistant: {content}\n" per turn; the generation prompt is "Assistant:" (the reply follows after its space).</summary>
    const string NemotronFlashSource =
        "{% for message in messages %}"
        + "{% if message['role'] == 'system' %}"
        + "{% if not loop.first %}{{ raise_exception('A system message must come first.') }}{% endif %}"
        + "{{ message['content'] + '\\n' }}"
        + "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n' }}"
        + "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + '\\n' }}"
        + "{% else %}{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}"
        + "{% endfor %}"
        + "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

    /// <summary>ChatML as <c>transformers</c> defined its default template.</summary>
    const string ChatMlSource =
        "{% for message in messages %}"
        + "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        + "{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    readonly JinjaTemplate template;

    ChatTemplate(JinjaTemplate template, string? bosToken, string? eosToken)
    {
        this.template = template;
        BosToken = bosToken;
        EosToken = eosToken;
    }

    /// <summary>The names accepted by <see cref="BuiltIn"/>.</summary>
    public static IReadOnlyList<string> BuiltInNames => ["nemotron-flash", "chatml"];

    /// <summary>The template in <c>folder/tokenizer_config.json</c>, or null when the folder has none (no file, or no
    /// <c>chat_template</c> in it). A list of named templates (<c>[{"name": "default", "template": …}]</c>) gives the one
    /// named "default". Errors: <see cref="WrenException"/> for invalid JSON, wrong value types or template syntax.</summary>
    public static ChatTemplate? FromModelFolder(string folder)
    {
        string path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path)) return null;
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            root = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new WrenException($"{path}: invalid JSON: {e.Message}");
        }
        if (root.ValueKind != JsonValueKind.Object) throw new WrenException($"{path}: expected a JSON object");
        string? source = TemplateSource(root, path);
        if (source is null) return null;
        JinjaTemplate template;
        try
        {
            template = JinjaTemplate.Parse(source, JinjaSettings.HuggingFaceChat);
        }
        catch (WrenException e)
        {
            throw new WrenException($"{path}: chat_template {e.Message}");
        }
        return new ChatTemplate(template, SpecialToken(root, "bos_token", path), SpecialToken(root, "eos_token", path));
    }

    static string? TemplateSource(JsonElement root, string path)
    {
        if (!root.TryGetProperty("chat_template", out var value)) return null;
        switch (value.ValueKind)
        {
            case JsonValueKind.Null: return null;
            case JsonValueKind.String: return value.GetString();
            case JsonValueKind.Array:
                var names = new List<string>();
                foreach (var entry in value.EnumerateArray())
                {
                    if (entry.ValueKind != JsonValueKind.Object
                        || !entry.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                        || !entry.TryGetProperty("template", out var text) || text.ValueKind != JsonValueKind.String)
                        throw new WrenException($"{path}: chat_template list entries must be {{\"name\": string, \"template\": string}}");
                    if (name.GetString() == "default") return text.GetString();
                    names.Add(name.GetString()!);
                }
                throw new WrenException($"{path}: chat_template has no template named \"default\" (it has: {string.Join(", ", names)})");
            default:
                throw new WrenException($"{path}: chat_template must be a string or a list of named templates, not {value.ValueKind}");
        }
    }

    // A special token is a string or an AddedToken object {"content": "<s>", ...}.
    static string? SpecialToken(JsonElement root, string key, string path)
    {
        if (!root.TryGetProperty(key, out var value)) return null;
        return value.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object when value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String
                => content.GetString(),
            _ => throw new WrenException($"{path}: {key} must be a string or an object with a string \"content\""),
        };
    }

    /// <summary>A built-in template. Errors: <see cref="WrenException"/> listing <see cref="BuiltInNames"/>.</summary>
    public static ChatTemplate BuiltIn(string name) => name switch
    {
        "nemotron-flash" => new ChatTemplate(JinjaTemplate.Parse(NemotronFlashSource, JinjaSettings.HuggingFaceChat), null, null),
        "chatml" => new ChatTemplate(JinjaTemplate.Parse(ChatMlSource, JinjaSettings.HuggingFaceChat), null, "<|im_end|>"),
        _ => throw new WrenException($"unknown chat template '{name}' (built-in: {string.Join(", ", BuiltInNames)})"),
    };

    /// <summary>The <c>bos_token</c> text, or null when the template's source did not give one.</summary>
    public string? BosToken { get; private init; }

    /// <summary>The <c>eos_token</c> text, or null when the template's source did not give one
    /// (<c>chatml</c>: <c>&lt;|im_end|&gt;</c>).</summary>
    public string? EosToken { get; private init; }

    /// <summary>The prompt text for <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/> it ends where the
    /// assistant's reply starts. Errors: <see cref="WrenException"/> with the template's <c>raise_exception</c> message
    /// (e.g. roles that do not alternate) or a runtime error's position.</summary>
    public string Apply(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        var context = new Dictionary<string, object?>
        {
            ["messages"] = messages
                .Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content })
                .ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (BosToken is not null) context["bos_token"] = BosToken;
        if (EosToken is not null) context["eos_token"] = EosToken;
        return template.Render(context);
    }
}
