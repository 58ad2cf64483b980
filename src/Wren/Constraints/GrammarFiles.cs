using System.Text.Json;

namespace Wren.Constraints;

/// <summary>Grammars named on the command line: a JSON Schema file or a GBNF file (at most one).</summary>
public static class GrammarFiles
{
    /// <returns>The compiled grammar, or null when neither file is given.</returns>
    /// <exception cref="WrenException">Both are given, a file is missing, the schema is not JSON, or it does not compile.</exception>
    public static ByteGrammar? Load(string? jsonSchemaPath, string? gbnfPath)
    {
        if (jsonSchemaPath is not null && gbnfPath is not null) throw new WrenException("give --json-schema or --grammar, not both");
        string? path = jsonSchemaPath ?? gbnfPath;
        if (path is null) return null;
        if (!File.Exists(path)) throw new WrenException($"grammar file not found: {path}");
        var text = File.ReadAllText(path);
        try
        {
            if (gbnfPath is not null) return GbnfGrammar.Parse(text);
            using var document = JsonDocument.Parse(text);
            return JsonSchemaGrammar.FromSchema(document.RootElement.Clone());
        }
        catch (JsonException e) { throw new WrenException($"{path}: not valid JSON ({e.Message})", e); }
        catch (WrenException e) { throw new WrenException($"{path}: {e.Message}", e); }
    }
}
