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
        catch (JsonException e) { throw new WrenException($"{source}: invalid JSON ({FirstLine(e.Message)})", e); }
        return root as JsonObject ?? throw new WrenException($"{source}: expected a JSON object at the top level");
    }

    static string FirstLine(string message) => message.Split('\n')[0].Trim();
}
