using System.Text.Json;
using System.Text.Json.Serialization;

namespace Wren.Serving;

// Request and response bodies of OpenAI's API (https://platform.openai.com/docs/api-reference): field names, types and
// nulls as the reference gives them, so that stock clients parse them.

/// <summary>Token counts of a response.</summary>
internal sealed record UsageBody(
    [property: JsonPropertyName("prompt_tokens")] int PromptTokens,
    [property: JsonPropertyName("completion_tokens")] int CompletionTokens,
    [property: JsonPropertyName("total_tokens")] int TotalTokens,
    [property: JsonPropertyName("prompt_tokens_details")] PromptTokensDetails PromptTokensDetails);

/// <summary>Prompt tokens taken from the prefix cache.</summary>
internal sealed record PromptTokensDetails([property: JsonPropertyName("cached_tokens")] int CachedTokens);

/// <summary>A <c>/v1/completions</c> response or stream chunk (<c>object</c> = "text_completion").</summary>
internal sealed record CompletionBody(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("system_fingerprint")] string SystemFingerprint,
    [property: JsonPropertyName("choices")] IReadOnlyList<CompletionChoice> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageBody? Usage);

internal sealed record CompletionChoice(
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("logprobs")] CompletionLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

/// <summary>Legacy completions log-probabilities: parallel lists per token (the first prompt token's are null with echo).</summary>
internal sealed record CompletionLogprobs(
    [property: JsonPropertyName("tokens")] IReadOnlyList<string> Tokens,
    [property: JsonPropertyName("token_logprobs")] IReadOnlyList<double?> TokenLogprobs,
    [property: JsonPropertyName("top_logprobs")] IReadOnlyList<Dictionary<string, double>?> TopLogprobs,
    [property: JsonPropertyName("text_offset")] IReadOnlyList<int> TextOffset);

/// <summary>A <c>/v1/chat/completions</c> response ("chat.completion") or stream chunk ("chat.completion.chunk").</summary>
internal sealed record ChatBody(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("system_fingerprint")] string SystemFingerprint,
    [property: JsonPropertyName("choices")] IReadOnlyList<ChatChoice> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageBody? Usage);

internal sealed record ChatChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("message"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ChatReplyBody? Message,
    [property: JsonPropertyName("delta"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ChatMessageBody? Delta,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

internal sealed record ChatMessageBody(
    [property: JsonPropertyName("role"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonPropertyName("content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content,
    [property: JsonPropertyName("tool_calls"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    IReadOnlyList<ToolCallBody>? ToolCalls = null);

/// <summary>A whole reply's message: <c>content</c> is always written (null when the reply is only calls, as OpenAI sends).</summary>
internal sealed record ChatReplyBody(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string? Content,
    [property: JsonPropertyName("tool_calls"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    IReadOnlyList<ToolCallBody>? ToolCalls = null);

/// <summary>One call in a message (<see cref="Index"/> null) or a stream delta (<see cref="Index"/> its position).</summary>
internal sealed record ToolCallBody(
    [property: JsonPropertyName("index"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Index,
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("function")] ToolCallFunctionBody Function)
{
    public static ToolCallBody Of(ToolCall call, int? index) =>
        new(index, call.Id, "function", new ToolCallFunctionBody(call.Name, call.Arguments));
}

internal sealed record ToolCallFunctionBody(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("arguments")] string Arguments);

internal sealed record ChatLogprobs([property: JsonPropertyName("content")] IReadOnlyList<ChatTokenLogprob> Content);

internal sealed record ChatTokenLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] double Logprob,
    [property: JsonPropertyName("bytes")] IReadOnlyList<int> Bytes,
    [property: JsonPropertyName("top_logprobs")] IReadOnlyList<ChatTopLogprob> TopLogprobs);

internal sealed record ChatTopLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] double Logprob,
    [property: JsonPropertyName("bytes")] IReadOnlyList<int> Bytes);

/// <summary><c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
internal sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

internal sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);

/// <summary>Typed reads of a request body's fields, each type error a 400 naming the field.</summary>
internal readonly struct RequestFields(JsonElement root)
{
    /// <summary>Parses a body straight from its stream (no copy); the document is the caller's to dispose.</summary>
    public static async Task<(RequestFields Fields, JsonDocument Document)> ParseAsync(Stream body, CancellationToken cancel)
    {
        JsonDocument document;
        try { document = await JsonDocument.ParseAsync(body, default, cancel); }
        catch (JsonException e) { throw ServeError.Invalid($"the request body is not valid JSON: {e.Message}"); }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw ServeError.Invalid("the request body must be a JSON object");
        }
        try { RequireUnicode(document.RootElement, ""); }
        catch
        {
            document.Dispose();
            throw;
        }
        return (new RequestFields(document.RootElement), document);
    }

    /// <summary>
    /// Every string and key of the body, checked once as it arrives so that no later read (a template variable, a schema, a
    /// tool) meets text .NET cannot decode: a 400 naming the first field (its JSON path) that holds a lone surrogate or
    /// bytes that are not UTF-8.
    /// </summary>
    static void RequireUnicode(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                Text(element, path);
                break;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try { name = property.Name; }
                    catch (InvalidOperationException)
                    {
                        throw ServeError.Invalid($"a key inside '{(path.Length == 0 ? "the body" : path)}' is not valid Unicode " +
                                                 "text (a lone surrogate or bytes that are not UTF-8)", path.Length == 0 ? null : path);
                    }
                    RequireUnicode(property.Value, path.Length == 0 ? name : $"{path}.{name}");
                }
                break;
            case JsonValueKind.Array:
                int index = 0;
                foreach (var item in element.EnumerateArray()) RequireUnicode(item, $"{path}[{index++}]");
                break;
        }
    }

    public JsonElement? Get(string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public string? String(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.String ? Text(v, name) : throw TypeError(name, "a string")
        : null;

    /// <summary>
    /// A JSON string's text. Errors: 400 naming <paramref name="field"/> when it holds a lone surrogate escape (<c>"\ud800"</c>, half
    /// of an emoji) or bytes that are not UTF-8, which .NET refuses to turn into a string (RFC 8259 §8.2: such text is not
    /// interoperable).
    /// </summary>
    public static string Text(JsonElement value, string field)
    {
        try { return value.GetString()!; }
        catch (InvalidOperationException)
        {
            throw ServeError.Invalid($"'{field}' is not valid Unicode text: it holds a lone surrogate (such as \\ud800, half of an " +
                                     "emoji) or bytes that are not UTF-8", field);
        }
    }

    public bool? Bool(string name) => Get(name) is { } v
        ? v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw TypeError(name, "a boolean")
        : null;

    public double? Number(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw TypeError(name, "a number")
        : null;

    public long? Integer(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : throw TypeError(name, "an integer")
        : null;

    /// <summary>A string or a list of strings (<c>stop</c>).</summary>
    public IReadOnlyList<string> Strings(string name) => Get(name) switch
    {
        null => [],
        { ValueKind: JsonValueKind.String } v => [Text(v, name)],
        { ValueKind: JsonValueKind.Array } v when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
            v.EnumerateArray().Select(e => Text(e, name)).ToList(),
        _ => throw TypeError(name, "a string or a list of strings"),
    };

    /// <summary>A JSON object (<c>chat_template_kwargs</c>) as name → value; null when absent.</summary>
    public IReadOnlyDictionary<string, object?>? Object(string name) => Get(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Object } v =>
            v.EnumerateObject().GroupBy(p => p.Name).ToDictionary(g => g.Key, g => (object?)g.Last().Value),
        _ => throw TypeError(name, "an object"),
    };

    /// <summary>A list of JSON objects (<c>tools</c>, <c>documents</c>); null when absent or empty.</summary>
    public IReadOnlyList<object?>? Objects(string name) => Get(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Array } v when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Object) =>
            v.GetArrayLength() == 0 ? null : v.EnumerateArray().Select(e => (object?)e).ToList(),
        _ => throw TypeError(name, "a list of objects"),
    };

    public static ServeError TypeError(string name, string expected) => ServeError.Invalid($"'{name}' must be {expected}", name);
}
