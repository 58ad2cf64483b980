using System.Text.Json;
using System.Text.Json.Nodes;

namespace Wren.Checkpoints;

/// <summary>
/// Parses the JSON of model files (config.json, safetensors headers, tokenizer.json) so that every malformed input is a
/// <see cref="WrenException"/>: a repeated key is an error naming the key (the JSON RFC leaves duplicates undefined, and
/// safetensors' reference parser rejects them), nesting deeper than 64 levels is an error, and the tree is built at once
/// (System.Text.Json's lazy <see cref="JsonObject"/> would otherwise throw on first use, far from the parse).
/// </summary>
public static class StrictJson
{
    static readonly JsonDocumentOptions Options = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    /// <summary>The top-level object of <paramref name="json"/>.</summary>
    /// <exception cref="WrenException">
    /// Invalid JSON, a repeated key, too deep, or not an object; the message starts with <paramref name="source"/>.
    /// </exception>
    public static JsonObject ParseObject(string json, string source)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: Options);
            if (root is JsonObject built) _ = built.Count;   // materialise now
        }
        catch (JsonException e) { throw new WrenException($"{source}: invalid JSON ({Describe(e, json)})", e); }
        return root as JsonObject ?? throw new WrenException($"{source}: expected a JSON object at the top level");
    }

    /// <summary>
    /// A settings file's deserialization error (System.Text.Json's <see cref="JsonSerializer"/>) in the file's terms, on one
    /// line: an unknown or repeated key, or a value of the wrong type, by its JSON path; else the parser's first line.
    /// </summary>
    public static string Explain(JsonException error)
    {
        string first = error.Message.Split('\n')[0], at = error.Path is { Length: > 0 } path ? $" at {path}" : "";
        if (System.Text.RegularExpressions.Regex.Match(first, "^The JSON property '(.*)' could not be mapped") is { Success: true } m)
            return $"unknown key '{m.Groups[1].Value}'{at}";
        if (first.Contains("Duplicate", StringComparison.OrdinalIgnoreCase)) return $"a key is repeated{at}";
        if (first.Contains("could not be converted", StringComparison.Ordinal)) return $"wrong type of value{at}";
        return first;
    }

    /// <summary>What is wrong, on one line: a repeated key is named in full (System.Text.Json cuts it after 16 characters), up to
    /// 200 characters.</summary>
    internal static string Describe(JsonException error, string json) =>
        RepeatedKey(json) is { } key ? $"duplicate key '{(key.Length > 200 ? key[..200] + "…" : key)}'"
            : error.Message.Split('\n')[0].Trim();

    /// <summary>The first key repeated within one object, or null.</summary>
    static string? RepeatedKey(string json)
    {
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(json), new JsonReaderOptions { MaxDepth = Options.MaxDepth });
        var open = new Stack<HashSet<string>>();
        try
        {
            while (reader.Read())
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: open.Push([]); break;
                    case JsonTokenType.EndObject: open.Pop(); break;
                    case JsonTokenType.PropertyName when !open.Peek().Add(reader.GetString()!): return reader.GetString();
                }
        }
        catch (JsonException) { }   // malformed before any repeat: the parser's own message applies
        return null;
    }
}
