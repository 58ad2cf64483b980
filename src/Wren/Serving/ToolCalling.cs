using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Wren.Constraints;
using Wren.Templating;

namespace Wren.Serving;

/// <summary>One function of a request's <c>tools</c> (OpenAI's <c>{"type": "function", "function": {…}}</c>).</summary>
/// <param name="Parameters">Its arguments' JSON Schema; <c>{"type": "object"}</c> when the tool gives none.</param>
public sealed record ToolFunction(string Name, string? Description, JsonElement Parameters)
{
    /// <summary>The tool as chat templates see it in <c>tools</c> (OpenAI's form, as transformers passes it).</summary>
    public JsonElement ToTemplateObject()
    {
        var function = new JsonObject { ["name"] = Name };
        if (Description is { } d) function["description"] = d;
        function["parameters"] = JsonNode.Parse(Parameters.GetRawText());
        return JsonDocument.Parse(new JsonObject { ["type"] = "function", ["function"] = function }.ToJsonString()).RootElement.Clone();
    }
}

/// <summary>A function call the model made: its id (<c>call_…</c>), the function's name and its arguments as JSON text.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>
/// How a template family writes function calls, and how a reply is read back into <see cref="ToolCall"/>s. A reply is
/// <see cref="Prefix"/>, calls each between <see cref="Open"/> and <see cref="Close"/> and separated by <see cref="Separator"/>,
/// then <see cref="Suffix"/>; a call is a JSON object <c>{"name": …, ArgumentsKey: {…}}</c>. The families are the documented
/// ones: Hermes (<c>&lt;tool_call&gt;</c> blocks: NousResearch Hermes 2 Pro, Qwen2.5 and Qwen3's templates), Llama 3.1/3.2's
/// JSON tool calling (<c>{"name": …, "parameters": …}</c>, several separated by <c>;</c>, after an optional
/// <c>&lt;|python_tag|&gt;</c>), Mistral's <c>[TOOL_CALLS]</c> followed by a JSON array.
/// </summary>
public sealed record ToolCallSyntax(string Family, string Prefix, string Open, string Close, string Separator, string Suffix,
                                    string ArgumentsKey, bool WholeReply)
{
    public static readonly ToolCallSyntax Hermes = new("hermes", "", "<tool_call>\n", "\n</tool_call>", "\n", "", "arguments", false);
    public static readonly ToolCallSyntax Llama3 = new("llama3-json", "", "", "", "; ", "", "parameters", true);
    public static readonly ToolCallSyntax Mistral = new("mistral", "[TOOL_CALLS][", "", "", ", ", "]", "arguments", true);

    /// <summary>The family a chat template writes: by its call markers, Hermes when it has none.</summary>
    public static ToolCallSyntax Of(string templateSource) =>
        templateSource.Contains("[TOOL_CALLS]") ? Mistral
        : templateSource.Contains("<tool_call>") ? Hermes
        : templateSource.Contains("<|python_tag|>") || templateSource.Contains("\"parameters\": dictionary of argument") ? Llama3
        : Hermes;

    /// <summary>The system text that describes <paramref name="tools"/> and this syntax to a model whose template does not render
    /// <c>tools</c> itself (Hermes' wording, as its model card documents it).</summary>
    public string Instructions(IReadOnlyList<ToolFunction> tools)
    {
        var text = new StringBuilder("You may call one or more functions to assist with the user query. You are provided with " +
                                     "function signatures within <tools></tools> XML tags:\n<tools>\n");
        foreach (var tool in tools)
        {
            var function = new JsonObject { ["name"] = tool.Name, ["parameters"] = JsonNode.Parse(tool.Parameters.GetRawText()) };
            if (tool.Description is { } d) function["description"] = d;
            text.Append(new JsonObject { ["type"] = "function", ["function"] = function }.ToJsonString()).Append('\n');
        }
        text.Append("</tools>\nFor each function call, return a json object with the function name and arguments as ")
            .Append($"{Prefix}{Open}{{\"name\": <function-name>, \"{ArgumentsKey}\": <args-json-object>}}{Close}{Suffix}");
        return text.ToString();
    }

    /// <summary>
    /// The reply's calls of known functions, and its text outside them (null when none is left). A call whose JSON does not
    /// parse or names no tool stays text, as a reply that is not a call at all does.
    /// </summary>
    public (string? Content, IReadOnlyList<ToolCall> Calls) Parse(string reply, IReadOnlyCollection<string> names)
    {
        var calls = new List<ToolCall>();
        if (!WholeReply)
        {
            var rest = Regex.Replace(reply, $"{Regex.Escape(Open.TrimEnd())}\\s*(.*?)\\s*{Regex.Escape(Close.TrimStart())}", m =>
            {
                if (ReadCall(m.Groups[1].Value, names) is not { } call) return m.Value;
                calls.Add(call);
                return "";
            }, RegexOptions.Singleline);
            return (calls.Count == 0 ? reply : rest.Trim() is { Length: > 0 } text ? text : null, calls);
        }
        var body = reply.Trim();
        if (this == Llama3 && body.StartsWith("<|python_tag|>")) body = body["<|python_tag|>".Length..].TrimStart();
        if (Prefix.Length > 0)
        {
            if (!body.StartsWith(Prefix.TrimEnd('['))) return (reply, []);
            body = body[Prefix.TrimEnd('[').Length..].TrimStart();
        }
        if (ReadValues(body) is not { } values) return (reply, []);
        foreach (var value in values.SelectMany(v => v.ValueKind == JsonValueKind.Array ? [.. v.EnumerateArray()] : (List<JsonElement>)[v]))
            if (ReadCall(value, names) is { } call) calls.Add(call);
            else return (reply, []);
        return calls.Count == 0 ? (reply, []) : (null, calls);
    }

    ToolCall? ReadCall(string json, IReadOnlyCollection<string> names)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return ReadCall(document.RootElement, names);
        }
        catch (JsonException) { return null; }
    }

    ToolCall? ReadCall(JsonElement call, IReadOnlyCollection<string> names)
    {
        if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
            || !names.Contains(name.GetString()!)) return null;
        if (!call.TryGetProperty(ArgumentsKey, out var arguments) && !call.TryGetProperty("arguments", out arguments))
            return new ToolCall(NewId(), name.GetString()!, "{}");
        string text = arguments.ValueKind switch
        {
            JsonValueKind.Object => arguments.GetRawText(),
            JsonValueKind.String when IsObject(arguments.GetString()!) => arguments.GetString()!,
            _ => "",
        };
        return text.Length == 0 ? null : new ToolCall(NewId(), name.GetString()!, text);
    }

    static bool IsObject(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException) { return false; }
    }

    /// <summary>JSON values one after another, separated by white space or <see cref="Separator"/>, up to the end; null when
    /// the text is anything else.</summary>
    List<JsonElement>? ReadValues(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var values = new List<JsonElement>();
        int at = 0;
        while (true)
        {
            while (at < bytes.Length && bytes[at] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') at++;
            if (at == bytes.Length) return values.Count > 0 ? values : null;
            if (values.Count > 0 && Separator.Trim() is { Length: > 0 } sep && bytes[at] == (byte)sep[0]) at++;
            var reader = new Utf8JsonReader(bytes.AsSpan(at));
            try
            {
                using var document = JsonDocument.ParseValue(ref reader);
                values.Add(document.RootElement.Clone());
            }
            catch (JsonException) { return null; }
            at += (int)reader.BytesConsumed;
        }
    }

    /// <summary>An OpenAI-style call id: <c>call_</c> and 24 random letters and digits.</summary>
    public static string NewId() =>
        "call_" + RandomNumberGenerator.GetString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 24);

    /// <summary>
    /// The grammar of a reply that is only calls: one (or, with <paramref name="many"/>, one or more) call of one of
    /// <paramref name="tools"/>, its arguments valid for the function's schema. The schemas' <c>$defs</c> are lifted to the
    /// root so that their <c>#/$defs/…</c> references resolve. Errors: <see cref="WrenException"/> for a schema the grammar
    /// engine refuses, or two tools giving the same <c>$defs</c> name different schemas.
    /// </summary>
    public ByteGrammar Grammar(IReadOnlyList<ToolFunction> tools, bool many)
    {
        var defs = new JsonObject();
        var alternatives = new JsonArray();
        foreach (var tool in tools)
        {
            var parameters = JsonNode.Parse(tool.Parameters.GetRawText())!.AsObject();
            foreach (var key in new[] { "$defs", "definitions" })
                if (parameters[key] is JsonObject own)
                {
                    foreach (var (name, definition) in own)
                    {
                        if (defs[name] is { } known && !JsonNode.DeepEquals(known, definition))
                            throw new WrenException($"tools '{tool.Name}' and another define '{name}' differently in their $defs");
                        defs[name] = definition?.DeepClone();
                    }
                    parameters.Remove(key);
                }
            alternatives.Add(new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject { ["name"] = new JsonObject { ["const"] = tool.Name }, [ArgumentsKey] = parameters },
                ["required"] = new JsonArray("name", ArgumentsKey),
                ["additionalProperties"] = false,
            });
        }
        var root = alternatives.Count == 1 ? alternatives[0]!.DeepClone().AsObject() : new JsonObject { ["anyOf"] = alternatives };
        if (defs.Count > 0) root["$defs"] = defs;
        using var document = JsonDocument.Parse(root.ToJsonString());
        return JsonSchemaGrammar.Calls(document.RootElement, Prefix, Open, Close, Separator, Suffix, many);
    }
}

/// <summary>
/// A streamed reply split into text and calls as it comes (<see cref="ToolCallSyntax"/>): text is passed on at once except
/// what could still begin a call; a call is passed on when its closing marker arrives (whole-reply families: when the reply
/// ends), as one <c>tool_calls</c> delta with its id, name and arguments.
/// </summary>
public sealed class ToolCallStream(ToolCallSyntax syntax, IReadOnlyCollection<string> names)
{
    readonly StringBuilder pending = new();
    string heldSpace = "";   // white space at the end of the text sent so far: sent with the next text, dropped after a call
    bool inCall, decided, called;

    /// <summary>What can be sent after <paramref name="text"/> arrived: text, and calls that are complete.</summary>
    public (string Text, IReadOnlyList<ToolCall> Calls) Push(string text)
    {
        pending.Append(text);
        return syntax.WholeReply ? PushWhole() : PushBlocks();
    }

    /// <summary>The rest at the end of the reply: a call left open stays text.</summary>
    public (string Text, IReadOnlyList<ToolCall> Calls) Finish()
    {
        var rest = pending.ToString();
        pending.Clear();
        if (!syntax.WholeReply)
        {
            var tail = called && rest.Trim().Length == 0 ? "" : heldSpace + rest;
            heldSpace = "";
            return (tail, []);
        }
        if (!decided)
        {
            var (content, calls) = syntax.Parse(rest, names);
            return (calls.Count > 0 ? content ?? "" : rest, calls);
        }
        return (rest, []);
    }

    (string, IReadOnlyList<ToolCall>) PushWhole()
    {
        if (decided) return Drain();
        var head = pending.ToString().TrimStart();
        string[] starts = ["{", "[", "<|python_tag|>", syntax.Prefix.TrimEnd('[')];
        if (head.Length == 0 || starts.Any(s => s.Length > 0 && (head.StartsWith(s) || s.StartsWith(head)))) return ("", []);
        decided = true;   // not a call: the reply is text from here on
        return Drain();
    }

    (string, IReadOnlyList<ToolCall>) Drain()
    {
        var text = pending.ToString();
        pending.Clear();
        return (text, []);
    }

    (string, IReadOnlyList<ToolCall>) PushBlocks()
    {
        string open = syntax.Open.TrimEnd(), close = syntax.Close.TrimStart();
        var text = new StringBuilder();
        var calls = new List<ToolCall>();
        while (true)
        {
            var buffer = pending.ToString();
            if (inCall)
            {
                int end = buffer.IndexOf(close, StringComparison.Ordinal);
                if (end < 0) break;
                var block = buffer[..(end + close.Length)];
                var (content, parsed) = syntax.Parse(block, names);
                if (parsed.Count > 0) calls.AddRange(parsed);
                else text.Append(content);
                pending.Remove(0, block.Length);
                inCall = false;
                continue;
            }
            int start = buffer.IndexOf(open, StringComparison.Ordinal);
            if (start >= 0)
            {
                text.Append(buffer[..start]);
                pending.Remove(0, start);
                inCall = true;
                continue;
            }
            int keep = 0;   // the longest end of the buffer that could begin the opening marker
            for (int k = Math.Min(open.Length - 1, buffer.Length); k > 0; k--)
                if (open.StartsWith(buffer[^k..], StringComparison.Ordinal)) { keep = k; break; }
            text.Append(buffer[..^keep]);
            pending.Remove(0, buffer.Length - keep);
            break;
        }
        called |= calls.Count > 0;
        var sent = text.ToString();
        if (sent.Trim().Length == 0) { heldSpace = calls.Count > 0 ? "" : heldSpace + sent; return ("", calls); }
        var trimmed = sent.TrimEnd();
        var result = heldSpace + trimmed;
        heldSpace = sent[trimmed.Length..];
        return (result, calls);
    }
}

/// <summary>
/// A chat request's <c>tools</c>, <c>tool_choice</c> (<c>none</c>, <c>auto</c>, <c>required</c> or
/// <c>{"type": "function", "function": {"name": …}}</c>) and <c>parallel_tool_calls</c>, checked as OpenAI documents them.
/// </summary>
internal sealed record ToolRequest(IReadOnlyList<ToolFunction> Tools, string Choice, string? Named, bool Parallel)
{
    /// <summary>Most tools in one request (OpenAI's limit).</summary>
    public const int MaxTools = 128;

    /// <summary>The tools a reply may call: all of them, or the named one.</summary>
    public IReadOnlyList<ToolFunction> Callable => Named is { } n ? [.. Tools.Where(t => t.Name == n)] : Tools;

    /// <summary>The cache key of <see cref="ToolCallSyntax.Grammar"/> for this request's callable tools.</summary>
    public static string GrammarKey(ToolCallSyntax syntax, ToolRequest tools) =>
        $"tools:{syntax.Family}:{tools.Parallel}:"
        + string.Join("\n", tools.Callable.Select(t => t.Name + "\n" + t.Parameters.GetRawText()));

    /// <summary>True when the reply must be calls (<c>required</c> or a named function): it is grammar-constrained.</summary>
    public bool Forced => Choice is "required" or "function";

    static readonly Regex FunctionName = new("^[A-Za-z0-9_-]{1,64}$", RegexOptions.Compiled);

    /// <summary>The request's tools, or null without <c>tools</c>. Errors: 400 naming the field, for every malformed part, an
    /// unknown named function, more than <see cref="MaxTools"/> tools, and a parameters schema the grammar engine refuses
    /// (the keyword named) or longer than <paramref name="maxSchemaBytes"/>.</summary>
    public static ToolRequest? Parse(RequestFields body, int maxSchemaBytes)
    {
        var choice = body.Get("tool_choice");
        bool parallel = body.Bool("parallel_tool_calls") ?? true;
        if (body.Get("tools") is not { } list)
        {
            if (choice is { ValueKind: JsonValueKind.String } c && (c.ValueEquals("none") || c.ValueEquals("auto"))) return null;
            if (choice is not null) throw ServeError.Invalid("'tool_choice' needs 'tools'", "tool_choice");
            return null;
        }
        if (list.ValueKind != JsonValueKind.Array) throw RequestFields.TypeError("tools", "a list of tools");
        if (list.GetArrayLength() > MaxTools)
            throw ServeError.Invalid($"'tools' has {list.GetArrayLength()} tools; at most {MaxTools} are accepted", "tools");
        var tools = new List<ToolFunction>();
        foreach (var tool in list.EnumerateArray())
        {
            string at = $"tools[{tools.Count}]";
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out var type) || !type.ValueEquals("function"))
                throw ServeError.Invalid($"'{at}' must be an object with \"type\": \"function\"", "tools");
            if (!tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
                throw ServeError.Invalid($"'{at}.function' must be an object", "tools");
            var fields = new RequestFields(function);
            var name = fields.String("name") ?? throw ServeError.Invalid($"'{at}.function.name' is required", "tools");
            if (!FunctionName.IsMatch(name))
                throw ServeError.Invalid($"'{at}.function.name' must be 1 to 64 letters, digits, '_' or '-', got '{Short(name)}'", "tools");
            if (tools.Any(t => t.Name == name)) throw ServeError.Invalid($"two tools are named '{name}'", "tools");
            var parameters = fields.Get("parameters") ?? JsonDocument.Parse("{\"type\": \"object\"}").RootElement;
            bool objectType = parameters.ValueKind == JsonValueKind.Object && (!parameters.TryGetProperty("type", out var kind)
                              || kind.ValueKind == JsonValueKind.String && kind.ValueEquals("object"));
            if (!objectType)
                throw ServeError.Invalid($"'{at}.function.parameters' must be a JSON Schema of an object (\"type\": \"object\"): a " +
                                         "call's arguments are an object", "tools");
            if (function.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False
                                                                                                or JsonValueKind.Null))
                throw ServeError.Invalid($"'{at}.function.strict' must be a boolean", "tools");
            if (Encoding.UTF8.GetByteCount(parameters.GetRawText()) > maxSchemaBytes)
                throw ServeError.Invalid($"'{at}.function.parameters' is longer than {maxSchemaBytes:N0} bytes", "tools");
            try { JsonSchemaGrammar.FromSchema(parameters); }
            catch (WrenException e) { throw ServeError.Invalid($"'{at}.function.parameters': {e.Message}", "tools"); }
            tools.Add(new ToolFunction(name, fields.String("description"), parameters.Clone()));
        }
        if (tools.Count == 0)
            return choice is null || choice.Value.ValueKind == JsonValueKind.String && (choice.Value.ValueEquals("none")
                                                                                         || choice.Value.ValueEquals("auto"))
                ? null : throw ServeError.Invalid("'tool_choice' needs 'tools'", "tool_choice");
        return choice switch
        {
            null => new ToolRequest(tools, "auto", null, parallel),
            { ValueKind: JsonValueKind.String } s when s.GetString() is "none" or "auto" or "required" =>
                new ToolRequest(tools, s.GetString()!, null, parallel),
            { ValueKind: JsonValueKind.Object } o when o.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
                                                       && t.ValueEquals("function")
                                                       && o.TryGetProperty("function", out var f) && f.ValueKind == JsonValueKind.Object
                                                       && f.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String =>
                tools.Any(t => t.Name == n.GetString()) ? new ToolRequest(tools, "function", n.GetString(), parallel)
                    : throw ServeError.Invalid($"'tool_choice' names the function '{Short(n.GetString()!)}', which is not in 'tools'",
                                               "tool_choice"),
            _ => throw ServeError.Invalid("'tool_choice' must be \"none\", \"auto\", \"required\" or " +
                                          "{\"type\": \"function\", \"function\": {\"name\": …}}", "tool_choice"),
        };
    }

    static string Short(string text) => text.Length <= 40 ? text : text[..40] + "…";

    /// <summary>
    /// The conversation and template tools for this request: the tools go to the template's <c>tools</c> variable; a
    /// template that does not render them gets their description (<see cref="ToolCallSyntax.Instructions"/>) in its system
    /// turn instead (a new first turn when there is none).
    /// </summary>
    public (List<ChatTurn> Turns, IReadOnlyList<object?> TemplateTools) Prompt(List<ChatTurn> turns, ChatTemplate template,
                                                                              ToolCallSyntax syntax)
    {
        var templateTools = Tools.Select(t => (object?)t.ToTemplateObject()).ToList();
        if (template.RendersTools) return (turns, templateTools);
        var instructions = syntax.Instructions(Tools);
        List<ChatTurn> described = turns is [{ Role: "system" } system, .. var rest]
            ? [system with { Content = (system.Content is { Length: > 0 } c ? c + "\n\n" : "") + instructions }, .. rest]
            : [new ChatTurn("system", instructions), .. turns];
        return (described, templateTools);
    }
}

/// <summary>Compiled grammars by source text (the last 64), so that repeated requests share one grammar and the token masks
/// the engine caches per grammar instance.</summary>
internal sealed class GrammarCache
{
    const int Capacity = 64;
    readonly Dictionary<string, ByteGrammar> grammars = [];

    public ByteGrammar Get(string key, Func<ByteGrammar> compile)
    {
        lock (grammars)
            if (grammars.TryGetValue(key, out var known)) return known;
        var grammar = compile();
        lock (grammars)
        {
            if (grammars.Count >= Capacity) grammars.Clear();
            grammars[key] = grammar;
        }
        return grammar;
    }
}
