using System.Collections;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Wren.Tokenization;

namespace Wren.Templating;

/// <summary>One chat message (role: system, user, assistant or tool) as the template sees it.</summary>
/// <param name="Content">The text; null is None (an assistant message that only calls tools).</param>
/// <param name="Fields">The message's other fields, e.g. <c>tool_calls</c>, <c>tool_call_id</c>, <c>name</c>, as template values
/// (strings, numbers, lists, dictionaries or <see cref="JsonElement"/>s); null: none.</param>
public sealed record ChatTurn(string Role, string? Content, IReadOnlyDictionary<string, object?>? Fields = null);

/// <summary>What <c>transformers</c>' <c>apply_chat_template</c> passes a template besides the messages.</summary>
/// <param name="Tools">Tool definitions (OpenAI's <c>{"type": "function", "function": {…}}</c>); null: <c>tools</c> is None.</param>
/// <param name="Documents">Documents for retrieval-augmented templates; null: <c>documents</c> is None.</param>
/// <param name="Extra">Keyword variables (vLLM's <c>chat_template_kwargs</c>, e.g. <c>enable_thinking</c> for Qwen3); they
/// override a special token of the same name, as keyword arguments do in transformers.</param>
public sealed record ChatTemplateOptions(bool AddGenerationPrompt = true, IReadOnlyList<object?>? Tools = null,
                                 IReadOnlyList<object?>? Documents = null, IReadOnlyDictionary<string, object?>? Extra = null)
{
    /// <summary>The variables a request cannot set through <see cref="Extra"/> (transformers passes them itself).</summary>
    public static IReadOnlyList<string> ReservedNames { get; } = ["messages", "tools", "documents", "add_generation_prompt"];
}

/// <summary>A rendered chat prompt: its text, and the same text as pieces whose control pieces are the special tokens the
/// template wrote itself (<see cref="ChatTemplate.Render"/>).</summary>
public sealed record RenderedChat(string Text, IReadOnlyList<PromptPiece> Pieces);

/// <summary>
/// A model's chat template: <c>chat_template.jinja</c> in the model folder, else <c>chat_template</c> of its
/// <c>tokenizer_config.json</c> (as transformers prefers them), with the special tokens of that file; or a built-in one by name
/// (<c>nemotron-flash</c>: "User: …\nAssistant:" as the released model card prompts; <c>chatml</c>).
/// </summary>
/// <remarks>
/// <para>Rendered as Hugging Face <c>transformers</c>' <c>apply_chat_template</c> does (<see cref="JinjaSettings.HuggingFaceChat"/>),
/// with its variables: <c>messages</c> (dictionaries with <c>role</c>, <c>content</c> and the message's other fields),
/// <c>tools</c> and <c>documents</c> (None when absent), <c>add_generation_prompt</c>, every special token of
/// tokenizer_config.json (<c>bos_token</c>, <c>eos_token</c>, <c>unk_token</c>, <c>sep_token</c>, <c>pad_token</c>,
/// <c>cls_token</c>, <c>mask_token</c>, <c>additional_special_tokens</c> and the named <c>extra_special_tokens</c>; a token the
/// file leaves null is undefined) and the keyword extras of <see cref="ChatTemplateOptions.Extra"/>.</para>
/// <para>Control tokens (<see cref="Render"/>): transformers tokenizes the rendered string with special tokens matched, so a
/// special-token string inside a message would become a control token there. Wren marks instead where the template itself
/// writes one: each special token's text in the template's literals (its text between tags and its string constants) and in
/// the special-token variables is bracketed by two Unicode noncharacters (U+FDD0–U+FDEF, which Unicode reserves for internal
/// use) that occur nowhere in the request's messages, tools, documents or extras. Only a bracketed token becomes a control
/// token; every other character of the output, message text included, is text, encoded with special tokens not matched
/// (<c>split_special_tokens=True</c>). The brackets travel with the strings through the template's logic (concatenation,
/// <c>set</c>, macros), so a token built in a variable before it is written still counts. Why this equals transformers on
/// benign input: the markers are not in the request's data, so every comparison between data and a literal comes out as
/// in transformers, and the output with the markers removed is transformers' string byte for byte (for templates that only
/// write and concatenate their special-token literals, as every real template tested does); when the messages hold no
/// special-token string, transformers' special-token matches in that string are exactly the bracketed tokens, and Hugging
/// Face encodes the text between matches piece by piece, which is what Wren encodes. A request that uses every
/// noncharacter pair is refused (<see cref="WrenException"/>).</para>
/// </remarks>
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

    /// <summary>ChatML as <c>transformers</c> defined its default template; with <c>tools</c>, the Hermes tool format (written
    /// here from NousResearch's Hermes 2 Pro model card, as Qwen2.5's template also renders it): a system turn listing the tools
    /// in <c>&lt;tools&gt;</c>, assistant calls in <c>&lt;tool_call&gt;</c> blocks, tool results as user turns in
    /// <c>&lt;tool_response&gt;</c>. Without tools the text is the transformers default's.</summary>
    const string ChatMlSource =
        "{%- if tools %}{{- '<|im_start|>system\\n' }}"
        + "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
        + "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function "
        + "signatures within <tools></tools> XML tags:\\n<tools>' }}"
        + "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
        + "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
        + "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n"
        + "</tool_call><|im_end|>\\n' }}{%- endif %}"
        + "{% for message in messages %}"
        + "{%- if tools and loop.first and message['role'] == 'system' %}"
        + "{%- elif message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] %}"
        + "{{- '<|im_start|>assistant\\n' }}{%- if message['content'] %}{{- message['content'] + '\\n' }}{%- endif %}"
        + "{%- for call in message['tool_calls'] %}{%- if not loop.first %}{{- '\\n' }}{%- endif %}"
        + "{{- '<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' + (call['function']['arguments'] | tojson)"
        + " + '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
        + "{%- elif message['role'] == 'tool' %}"
        + "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
        + "{%- else %}"
        + "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        + "{%- endif %}"
        + "{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>transformers' <c>SPECIAL_TOKENS_ATTRIBUTES</c>: the special tokens a template sees by name.</summary>
    static readonly string[] SpecialTokenNames =
        ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// <summary>The first noncharacter of the marker pairs (U+FDD0–U+FDEF: 16 pairs of opening and closing marker).</summary>
    const char FirstMarker = '\uFDD0';
    const int MarkerPairs = 16;

    readonly string source;
    readonly JinjaTemplate template;
    readonly IReadOnlyDictionary<string, object?> specialTokens;
    /// <summary>Per marker pair and control-token set: the template parsed with its literals marked, and the special-token
    /// variables marked.</summary>
    readonly ConcurrentDictionary<(int Pair, IReadOnlyDictionary<string, int> Tokens),
                                  (JinjaTemplate Template, Dictionary<string, object?> Trusted)> marked = new();

    ChatTemplate(string source, IReadOnlyDictionary<string, object?> specialTokens)
    {
        this.source = source;
        template = JinjaTemplate.Parse(source, JinjaSettings.HuggingFaceChat);
        this.specialTokens = specialTokens;
        BosToken = specialTokens.GetValueOrDefault("bos_token") as string;
        EosToken = specialTokens.GetValueOrDefault("eos_token") as string;
    }

    /// <summary>The names accepted by <see cref="BuiltIn"/>.</summary>
    public static IReadOnlyList<string> BuiltInNames => ["nemotron-flash", "chatml"];

    /// <summary>The template of a model folder: <c>chat_template.jinja</c> when present (transformers prefers it), else
    /// <c>chat_template</c> of <c>tokenizer_config.json</c>; null when the folder has neither. A list of named templates
    /// (<c>[{"name": "default", "template": …}]</c>) gives the one named "default". The special tokens come from
    /// tokenizer_config.json either way. Errors: <see cref="WrenException"/> for invalid JSON, wrong value types or template
    /// syntax.</summary>
    public static ChatTemplate? FromModelFolder(string folder)
    {
        string path = Path.Combine(folder, "tokenizer_config.json"), jinja = Path.Combine(folder, "chat_template.jinja");
        JsonElement? root = null;
        if (File.Exists(path))
        {
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllText(path));
                root = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new WrenException($"{path}: invalid JSON: {e.Message}");
            }
            if (root.Value.ValueKind != JsonValueKind.Object) throw new WrenException($"{path}: expected a JSON object");
        }
        bool fromFile = File.Exists(jinja);
        string? source = fromFile ? File.ReadAllText(jinja) : root is { } config ? TemplateSource(config, path) : null;
        if (source is null) return null;
        var tokens = root is { } r ? SpecialTokens(r, path) : new Dictionary<string, object?>();
        try
        {
            return new ChatTemplate(source, tokens);
        }
        catch (WrenException e)
        {
            throw new WrenException(fromFile ? $"{jinja}: {e.Message}" : $"{path}: chat_template {e.Message}");
        }
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

    /// <summary>The special tokens of tokenizer_config.json as transformers' <c>special_tokens_map</c> names them (null ones
    /// left out), plus the named <c>extra_special_tokens</c>.</summary>
    static Dictionary<string, object?> SpecialTokens(JsonElement root, string path)
    {
        var tokens = new Dictionary<string, object?>();
        foreach (string name in SpecialTokenNames)
            if (root.TryGetProperty(name, out var value) && TokenText(value, name, path) is { } text) tokens[name] = text;
        if (root.TryGetProperty("additional_special_tokens", out var additional) && additional.ValueKind != JsonValueKind.Null)
        {
            if (additional.ValueKind != JsonValueKind.Array)
                throw new WrenException($"{path}: additional_special_tokens must be a list");
            tokens["additional_special_tokens"] = additional.EnumerateArray()
                .Select(t => (object?)(TokenText(t, "additional_special_tokens", path)
                                      ?? throw new WrenException($"{path}: additional_special_tokens must not hold null")))
                .ToList();
        }
        if (root.TryGetProperty("extra_special_tokens", out var extra) && extra.ValueKind == JsonValueKind.Object)
            foreach (var property in extra.EnumerateObject())
                if (TokenText(property.Value, $"extra_special_tokens.{property.Name}", path) is { } text)
                    tokens.TryAdd(property.Name, text);
        return tokens;
    }

    // A special token is a string or an AddedToken object {"content": "<s>", ...}.
    static string? TokenText(JsonElement value, string key, string path) => value.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Object when value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String
            => content.GetString(),
        _ => throw new WrenException($"{path}: {key} must be a string or an object with a string \"content\""),
    };

    /// <summary>A built-in template. Errors: <see cref="WrenException"/> listing <see cref="BuiltInNames"/>.</summary>
    public static ChatTemplate BuiltIn(string name) => name switch
    {
        "nemotron-flash" => new ChatTemplate(NemotronFlashSource, new Dictionary<string, object?>()),
        "chatml" => new ChatTemplate(ChatMlSource, new Dictionary<string, object?> { ["eos_token"] = "<|im_end|>" }),
        _ => throw new WrenException($"unknown chat template '{name}' (built-in: {string.Join(", ", BuiltInNames)})"),
    };

    /// <summary>The template's Jinja source.</summary>
    public string Source => source;

    /// <summary>True when the template reads the <c>tools</c> variable (it describes tools to the model itself).</summary>
    public bool RendersTools => source.Contains("tools", StringComparison.Ordinal);

    /// <summary>The <c>bos_token</c> text, or null when the template's source did not give one.</summary>
    public string? BosToken { get; }

    /// <summary>The <c>eos_token</c> text, or null when the template's source did not give one
    /// (<c>chatml</c>: <c>&lt;|im_end|&gt;</c>).</summary>
    public string? EosToken { get; }

    /// <summary>The prompt text for <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/> it ends where the
    /// assistant's reply starts. Errors: <see cref="WrenException"/> with the template's <c>raise_exception</c> message
    /// (e.g. roles that do not alternate) or a runtime error's position.</summary>
    public string Apply(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true) =>
        template.Render(Variables(messages, new ChatTemplateOptions(addGenerationPrompt), specialTokens));

    /// <summary>
    /// The prompt for <paramref name="messages"/> as text and as pieces, the control pieces being the tokens of
    /// <paramref name="controlTokens"/> (text → id, a tokenizer's <see cref="ITextTokenizer.ControlTokens"/>) that the template
    /// wrote itself (see the remarks). <see cref="RenderedChat.Text"/> is what <see cref="Apply"/> renders.
    /// Errors: <see cref="WrenException"/> as <see cref="Apply"/>; a reserved name in <see cref="ChatTemplateOptions.Extra"/>; a
    /// request whose strings hold every noncharacter pair U+FDD0–U+FDEF.
    /// </summary>
    public RenderedChat Render(IReadOnlyList<ChatTurn> messages, ChatTemplateOptions options,
                               IReadOnlyDictionary<string, int> controlTokens)
    {
        if (options.Extra?.Keys.FirstOrDefault(ChatTemplateOptions.ReservedNames.Contains) is { } reserved)
            throw new WrenException($"chat_template_kwargs cannot set '{reserved}'");
        if (controlTokens.Count == 0)
        {
            string plain = Apply(messages, options);
            return new RenderedChat(plain, [new PromptPiece(plain, Control: false)]);
        }
        int used = 0;
        void See(string text)
        {
            foreach (char c in text)
                if (c is >= FirstMarker and < (char)(FirstMarker + 2 * MarkerPairs)) used |= 1 << ((c - FirstMarker) / 2);
        }
        See(source);
        Visit(specialTokens, See);
        foreach (var message in messages)
        {
            See(message.Role);
            See(message.Content ?? "");
            Visit(message.Fields, See);
        }
        Visit(options.Tools, See);
        Visit(options.Documents, See);
        Visit(options.Extra, See);
        int pair = Enumerable.Range(0, MarkerPairs).FirstOrDefault(p => (used & (1 << p)) == 0, -1);
        if (pair < 0)
            throw new WrenException("the request uses every Unicode noncharacter U+FDD0–U+FDEF, which Wren keeps to mark the " +
                                    "chat template's control tokens");
        char open = (char)(FirstMarker + 2 * pair), close = (char)(open + 1);
        var (markedTemplate, trusted) = marked.GetOrAdd((pair, controlTokens), _ => Marked(open, close, controlTokens));
        string output;
        try
        {
            output = markedTemplate.Render(Variables(messages, options, trusted));
        }
        catch (WrenException e)
        {
            throw new WrenException(e.Message.Replace(open.ToString(), "").Replace(close.ToString(), ""));
        }
        return Pieces(output, open, close, controlTokens);
    }

    /// <summary>The template with every control token in its literals bracketed by <paramref name="open"/> and
    /// <paramref name="close"/> (leftmost-longest, as Hugging Face finds added tokens), and the special-token variables
    /// bracketed the same way.</summary>
    (JinjaTemplate, Dictionary<string, object?>) Marked(char open, char close, IReadOnlyDictionary<string, int> controlTokens)
    {
        var matcher = new LeftmostLongestMatcher<string>(controlTokens.Keys.Select(t => (t, t)));
        string Mark(string text)
        {
            var marked = new StringBuilder();
            int at = 0;
            foreach (var (start, length, token) in matcher.Matches(text))
            {
                marked.Append(text, at, start - at).Append(open).Append(token).Append(close);
                at = start + length;
            }
            return marked.Append(text, at, text.Length - at).ToString();
        }
        var trusted = specialTokens.ToDictionary(kv => kv.Key, kv => kv.Value switch
        {
            string text => Mark(text),
            IEnumerable<object?> list => (object?)list.Select(t => (object?)Mark((string)t!)).ToList(),
            var other => other,
        });
        return (JinjaTemplate.Parse(source, JinjaSettings.HuggingFaceChat, Mark), trusted);
    }

    /// <summary>The output split at its bracketed control tokens; a marker that does not bracket a control token is dropped.</summary>
    static RenderedChat Pieces(string output, char open, char close, IReadOnlyDictionary<string, int> controlTokens)
    {
        var pieces = new List<PromptPiece>();
        var text = new StringBuilder();
        var all = new StringBuilder();
        for (int i = 0; i < output.Length; i++)
        {
            char c = output[i];
            if (c == open)
            {
                int end = output.IndexOf(close, i + 1);
                if (end > i && output.IndexOf(open, i + 1, end - i - 1) < 0 && controlTokens.ContainsKey(output[(i + 1)..end]))
                {
                    if (text.Length > 0) pieces.Add(new PromptPiece(text.ToString(), Control: false));
                    text.Clear();
                    pieces.Add(new PromptPiece(output[(i + 1)..end], Control: true));
                    all.Append(output, i + 1, end - i - 1);
                    i = end;
                }
                continue;
            }
            if (c == close) continue;
            text.Append(c);
            all.Append(c);
        }
        if (text.Length > 0) pieces.Add(new PromptPiece(text.ToString(), Control: false));
        return new RenderedChat(all.ToString(), pieces);
    }

    string Apply(IReadOnlyList<ChatTurn> messages, ChatTemplateOptions options) =>
        template.Render(Variables(messages, options, specialTokens));

    static Dictionary<string, object?> Variables(IReadOnlyList<ChatTurn> messages, ChatTemplateOptions options,
                                                 IReadOnlyDictionary<string, object?> specialTokens)
    {
        var context = new Dictionary<string, object?>(specialTokens);
        foreach (var (name, value) in options.Extra ?? new Dictionary<string, object?>()) context[name] = value;
        context["messages"] = messages.Select(m =>
        {
            var message = new Dictionary<string, object?>();
            foreach (var (name, value) in m.Fields ?? new Dictionary<string, object?>()) message[name] = value;
            (message["role"], message["content"]) = (m.Role, m.Content);
            return (object?)message;
        }).ToList();
        context["tools"] = options.Tools;
        context["documents"] = options.Documents;
        context["add_generation_prompt"] = options.AddGenerationPrompt;
        return context;
    }

    /// <summary>Every string and dictionary key in a template value (strings, lists, dictionaries, JSON).</summary>
    static void Visit(object? value, Action<string> see)
    {
        switch (value)
        {
            case null: return;
            case string s: see(s); return;
            case JsonElement e: VisitJson(e, see); return;
            case IDictionary dict:
                foreach (DictionaryEntry entry in dict)
                {
                    if (entry.Key is string key) see(key);
                    Visit(entry.Value, see);
                }
                return;
            case IEnumerable items:
                foreach (var item in items) Visit(item, see);
                return;
        }
    }

    static void VisitJson(JsonElement e, Action<string> see)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String: see(e.GetString()!); break;
            case JsonValueKind.Array: foreach (var item in e.EnumerateArray()) VisitJson(item, see); break;
            case JsonValueKind.Object:
                foreach (var property in e.EnumerateObject())
                {
                    see(property.Name);
                    VisitJson(property.Value, see);
                }
                break;
        }
    }
}
