using System.Collections;
using System.Text.Json;
using Parquet;
using Parquet.Serialization;

namespace Wren.Evaluation;

/// <summary>
/// Reads a task's documents (one record per JSONL line, JSON array element or Parquet row) into plain values:
/// <c>string</c>, <c>long</c>, <c>double</c>, <c>bool</c>, <c>null</c>, <c>List&lt;object?&gt;</c> and
/// <c>Dictionary&lt;string, object?&gt;</c> (nested Parquet structs and lists, e.g. ARC's <c>choices{text,label}</c>).
/// </summary>
public static class TaskDocuments
{
    /// <summary>The file extensions read as data: <c>.jsonl</c>, <c>.json</c> (an array or JSON lines), <c>.parquet</c>, and
    /// <c>.txt</c> (the whole file is one document with a <c>text</c> field, for perplexity on a text).</summary>
    public static bool IsDataFile(string name) =>
        name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ||
        name.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".txt", StringComparison.OrdinalIgnoreCase);

    /// <summary>All documents of <paramref name="stream"/>; <paramref name="name"/> (a path) picks the format and names errors.</summary>
    public static List<Dictionary<string, object?>> Read(Stream stream, string name)
    {
        if (name.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)) return ReadParquet(stream, name);
        if (name.EndsWith(".txt", StringComparison.OrdinalIgnoreCase)) return [new() { ["text"] = new StreamReader(stream).ReadToEnd() }];
        if (IsDataFile(name)) return ReadJson(stream, name);
        throw new WrenException($"{name}: unknown data format (use .jsonl, .json, .parquet or .txt)");
    }

    static List<Dictionary<string, object?>> ReadJson(Stream stream, string name)
    {
        string text = new StreamReader(stream).ReadToEnd();
        var documents = new List<Dictionary<string, object?>>();
        if (text.TrimStart().StartsWith('['))
        {
            try
            {
                using var array = JsonDocument.Parse(text);
                foreach (var element in array.RootElement.EnumerateArray()) documents.Add(Record(element, name, documents.Count + 1));
            }
            catch (JsonException e) { throw new WrenException($"{name}: invalid JSON ({e.Message})", e); }
            return documents;
        }
        int number = 0;
        foreach (var line in text.Split('\n'))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var record = JsonDocument.Parse(line);
                documents.Add(Record(record.RootElement, name, number));
            }
            catch (JsonException e) { throw new WrenException($"{name}:{number}: invalid JSON ({e.Message})", e); }
        }
        return documents;
    }

    static Dictionary<string, object?> Record(JsonElement element, string name, int number) =>
        element.ValueKind == JsonValueKind.Object
            ? (Dictionary<string, object?>)Plain(element)!
            : throw new WrenException($"{name}:{number}: expected a JSON object per record, got {element.ValueKind}");

    /// <summary>A JSON value as a plain .NET value (integers as long, other numbers as double).</summary>
    public static object? Plain(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => element.EnumerateObject().ToDictionary(p => p.Name, p => Plain(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Select(Plain).ToList(),
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => element.TryGetInt64(out long i) ? (object)i : element.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    static List<Dictionary<string, object?>> ReadParquet(Stream stream, string name)
    {
        try
        {
            var seekable = stream.CanSeek ? stream : Copy(stream);
            var result = ParquetSerializer.DeserializeUntypedAsync(seekable).GetAwaiter().GetResult();
            return result.Data.Select(row => (Dictionary<string, object?>)Plain(row)!).ToList();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ParquetException or InvalidOperationException)
        { throw new WrenException($"{name}: not a readable Parquet file ({e.Message})", e); }
    }

    static MemoryStream Copy(Stream stream)
    {
        var memory = new MemoryStream();
        stream.CopyTo(memory);
        memory.Position = 0;
        return memory;
    }

    /// <summary>A value read by Parquet.Net as a plain value: dictionaries and lists recursively, integers widened to long.</summary>
    static object? Plain(object? value) => value switch
    {
        null => null,
        string s => s,
        bool b => b,
        byte or sbyte or short or ushort or int or uint or long => Convert.ToInt64(value),
        float or double or decimal => Convert.ToDouble(value),
        IDictionary dictionary => dictionary.Keys.Cast<object>().ToDictionary(k => k.ToString()!, k => Plain(dictionary[k])),
        IEnumerable sequence => sequence.Cast<object?>().Select(Plain).ToList(),
        _ => value.ToString(),
    };
}
