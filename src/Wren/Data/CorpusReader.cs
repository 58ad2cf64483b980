using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Parquet;
using Parquet.Schema;

namespace Wren.Data;

/// <summary>Which field of JSONL records and which column of Parquet files holds the text.</summary>
public sealed record CorpusFormat(string JsonField = "text", string ParquetColumn = "text");

/// <summary>
/// A piece of a document. Plain-text files stream in pieces cut at line ends (so a corpus larger than memory works);
/// a JSONL record or a Parquet row is one piece. <see cref="EndsDocument"/> marks where an end-of-text token goes.
/// </summary>
public readonly record struct CorpusPiece(string Text, bool EndsDocument);

/// <summary>Finds corpus files and streams their text: plain text (.txt, .md, …, optionally .gz), JSONL and Parquet.</summary>
public static class CorpusReader
{
    /// <summary>Plain-text pieces end at the first line end after this many characters.</summary>
    public const int PieceChars = 8192;

    static readonly string[] Extensions = [".txt", ".text", ".md", ".jsonl", ".ndjson", ".parquet"];

    /// <summary>Expands folders (recursively, sorted, known extensions only, .gz allowed) and checks that every file exists.</summary>
    public static IReadOnlyList<string> Files(IEnumerable<string> inputs)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (File.Exists(input)) files.Add(Path.GetFullPath(input));
            else if (Directory.Exists(input))
            {
                var found = Directory.EnumerateFiles(input, "*", SearchOption.AllDirectories)
                    .Where(f => !Path.GetFileName(f).StartsWith('.')
                                && Extensions.Any(e => StripGzip(f).EndsWith(e, StringComparison.OrdinalIgnoreCase)))
                    .Select(Path.GetFullPath).Order(StringComparer.Ordinal).ToList();
                if (found.Count == 0)
                    throw new WrenException($"{input}: no corpus files in this folder ({string.Join(", ", Extensions)}, optionally .gz)");
                files.AddRange(found);
            }
            else throw new WrenException($"corpus input not found: {input}");
        }
        if (files.Count == 0) throw new WrenException("no corpus inputs given");
        return files;
    }

    static string StripGzip(string path) => path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;

    public static IEnumerable<CorpusPiece> Read(string file, CorpusFormat format)
    {
        string name = StripGzip(file);
        if (name.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)) return ReadParquet(file, format.ParquetColumn);
        if (name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".ndjson", StringComparison.OrdinalIgnoreCase))
            return ReadJsonLines(file, format.JsonField);
        return ReadText(file);
    }

    static TextReader OpenText(string file)
    {
        Stream stream = File.OpenRead(file);
        if (file.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) stream = new GZipStream(stream, CompressionMode.Decompress);
        return new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);
    }

    static IEnumerable<CorpusPiece> ReadText(string file)
    {
        using var reader = OpenText(file);
        var piece = new StringBuilder();
        string? line;
        while ((line = ReadLine(reader, file)) is not null)
        {
            piece.Append(line).Append('\n');
            if (piece.Length < PieceChars) continue;
            yield return new CorpusPiece(piece.ToString(), EndsDocument: false);
            piece.Clear();
        }
        if (piece.Length > 0) yield return new CorpusPiece(piece.ToString(), EndsDocument: true);
    }

    static string? ReadLine(TextReader reader, string file)
    {
        try { return reader.ReadLine(); }
        catch (InvalidDataException e) { throw new WrenException($"{file}: corrupt compressed data ({e.Message})", e); }
    }

    static IEnumerable<CorpusPiece> ReadJsonLines(string file, string field)
    {
        using var reader = OpenText(file);
        string? line;
        long number = 0;
        while ((line = ReadLine(reader, file)) is not null)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string text;
            try
            {
                using var record = JsonDocument.Parse(line);
                if (record.RootElement.ValueKind != JsonValueKind.Object)
                    throw new WrenException($"{file}:{number}: expected a JSON object per line");
                if (!record.RootElement.TryGetProperty(field, out var value))
                    throw new WrenException($"{file}:{number}: no field \"{field}\" (fields: " +
                                            $"{string.Join(", ", record.RootElement.EnumerateObject().Select(p => p.Name))}); " +
                                            "choose one with --text-field");
                if (value.ValueKind != JsonValueKind.String)
                    throw new WrenException($"{file}:{number}: field \"{field}\" is {value.ValueKind}, not a string");
                text = value.GetString()!;
            }
            catch (JsonException e) { throw new WrenException($"{file}:{number}: invalid JSON ({e.Message})", e); }
            yield return new CorpusPiece(text, EndsDocument: true);
        }
    }

    /// <summary>
    /// Rows of a Parquet string column, or of a list-of-strings column: a list's items are joined with line ends into one
    /// document (a row is one document either way). Other column types are a clear error.
    /// </summary>
    static IEnumerable<CorpusPiece> ReadParquet(string file, string column)
    {
        using var stream = File.OpenRead(file);
        ParquetReader reader;
        try { reader = ParquetReader.CreateAsync(stream).GetAwaiter().GetResult(); }
        catch (Exception e) when (e is IOException or InvalidDataException or ParquetException)
        { throw new WrenException($"{file}: not a readable Parquet file ({e.Message})", e); }
        try
        {
            var fields = reader.Schema.Fields;
            var (field, isList) = fields.FirstOrDefault(f => f.Name == column) switch
            {
                DataField data => (data, false),
                ListField { Item: DataField item } => (item, true),
                null => throw new WrenException($"{file}: no column \"{column}\" " +
                                                $"(columns: {string.Join(", ", fields.Select(f => f.Name))}); " +
                                                "choose one with --text-column"),
                var other => throw new WrenException($"{file}: column \"{column}\" is a {other.SchemaType} of other fields, " +
                                                     "not strings or a list of strings"),
            };
            if (field.ClrType != typeof(string) && field.ClrType != typeof(ReadOnlyMemory<char>))
                throw new WrenException($"{file}: column \"{column}\" holds {field.ClrType.Name}, not strings");
            for (int group = 0; group < reader.RowGroupCount; group++)
                foreach (var text in ReadRowGroup(file, reader, group, field, isList))
                    if (!string.IsNullOrEmpty(text)) yield return new CorpusPiece(text, EndsDocument: true);
        }
        finally { reader.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
    }

    /// <summary>The texts of one row group; a damaged group is a <see cref="WrenException"/> naming the file.</summary>
    static IReadOnlyList<string?> ReadRowGroup(string file, ParquetReader reader, int group, DataField field, bool isList)
    {
        try
        {
            using var rows = reader.OpenRowGroupReader(group);
            if (!isList)
            {
                var values = new string?[rows.RowCount];
                rows.ReadAsync(field, values.AsMemory()).AsTask().GetAwaiter().GetResult();
                return values;
            }
            long slots = rows.GetMetadata(field)?.MetaData?.NumValues ?? 0;
            if (slots > int.MaxValue) throw new WrenException($"{file}: row group {group} holds {slots} values, more than one read takes");
            var items = new ReadOnlyMemory<char>[slots];
            var (definition, repetition) = (new int[slots], new int[slots]);
            rows.ReadRawAsync(field, items.AsMemory(), definition.AsMemory(), repetition.AsMemory()).GetAwaiter().GetResult();
            return JoinLists(items, definition, repetition, field.MaxDefinitionLevel);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ParquetException or ArgumentException
                                       or InvalidOperationException)
        {
            throw new WrenException($"{file}: row group {group} cannot be read ({e.Message.Split('\n')[0]})", e);
        }
    }

    /// <summary>
    /// Rows of a list column from its present values and levels (Parquet's Dremel encoding): repetition level 0 starts a row,
    /// definition level <paramref name="maxDefinition"/> marks a present item (lower levels are a null or empty list or item).
    /// </summary>
    static List<string?> JoinLists(ReadOnlyMemory<char>[] values, int[] definitionLevels, int[] repetitionLevels, int maxDefinition)
    {
        var rows = new List<string?>();
        var row = new List<string>();
        for (int i = 0, next = 0; i < repetitionLevels.Length; i++)
        {
            if (repetitionLevels[i] == 0 && i > 0) { rows.Add(string.Join('\n', row)); row.Clear(); }
            if (definitionLevels[i] == maxDefinition) row.Add(values[next++].ToString());
        }
        if (repetitionLevels.Length > 0) rows.Add(string.Join('\n', row));
        return rows;
    }
}
