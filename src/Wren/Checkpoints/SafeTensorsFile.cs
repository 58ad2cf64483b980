using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using Wren.Common;
using static TorchSharp.torch;

namespace Wren.Checkpoints;

/// <summary>One tensor entry of a safetensors header; offsets are relative to the end of the header.</summary>
internal sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A safetensors file opened read-only through a memory map: an 8-byte little-endian header length, a JSON
/// header, then raw little-endian data. Every header field is validated before any data is read.
/// Written here: no safetensors package exists for .NET on the registry.
/// </summary>
internal sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Header sizes above this are rejected (the format's reference implementation uses the same bound).</summary>
    const long MaxHeaderBytes = 100_000_000;

    static readonly Dictionary<string, (int Size, ScalarType Type)> DTypes = new()
    {
        ["F64"] = (8, ScalarType.Float64), ["F32"] = (4, ScalarType.Float32), ["F16"] = (2, ScalarType.Float16),
        ["BF16"] = (2, ScalarType.BFloat16), ["I64"] = (8, ScalarType.Int64), ["I32"] = (4, ScalarType.Int32),
        ["I16"] = (2, ScalarType.Int16), ["I8"] = (1, ScalarType.Int8), ["U8"] = (1, ScalarType.Byte), ["BOOL"] = (1, ScalarType.Bool),
    };

    readonly MemoryMappedFile? map;
    readonly MemoryMappedViewAccessor? view;
    readonly byte* data;   // first byte after the header

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafeTensorsFile(string path, Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata, long dataStart,
                    long fileLength)
    {
        Path = path;
        Tensors = tensors;
        Metadata = metadata;
        if (fileLength == 0) return;
        map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        data = start + view.PointerOffset + dataStart;
    }

    public static int ElementSize(string dtype) => DTypes[dtype].Size;
    public static ScalarType TorchType(string dtype) => DTypes[dtype].Type;

    public static string DTypeName(ScalarType type) =>
        DTypes.FirstOrDefault(kv => kv.Value.Type == type).Key ?? throw new WrenException($"dtype {type} cannot be stored in safetensors");

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new WrenException($"safetensors file not found: {path}");
        long fileLength = new FileInfo(path).Length;
        void Fail(string message) => throw new WrenException($"{path}: invalid safetensors file: {message}");
        if (fileLength < 8) Fail($"the file has {fileLength} bytes, fewer than the 8-byte header length");
        byte[] lengthBytes = new byte[8];
        using (var stream = File.OpenRead(path)) stream.ReadExactly(lengthBytes);
        ulong headerLength = BitConverter.ToUInt64(lengthBytes);
        if (headerLength == 0 || headerLength > MaxHeaderBytes) Fail($"header length {headerLength} is not in 1…{MaxHeaderBytes}");
        if ((long)headerLength > fileLength - 8) Fail($"header length {headerLength} runs past the end of the file ({fileLength} bytes)");
        byte[] headerBytes = new byte[headerLength];
        using (var stream = File.OpenRead(path)) { stream.Seek(8, SeekOrigin.Begin); stream.ReadExactly(headerBytes); }
        long dataLength = fileLength - 8 - (long)headerLength;

        JsonObject header = null!;
        string headerText = Encoding.UTF8.GetString(headerBytes);
        try { header = StrictJson.ParseObject(headerText, path); }
        catch (WrenException e) when (e.InnerException is JsonException json)
        {
            Fail($"header is not valid JSON ({StrictJson.Describe(json, headerText)})");
        }
        catch (WrenException) { Fail("header is not a JSON object"); }

        var metadata = new Dictionary<string, string>();
        var tensors = new Dictionary<string, SafeTensorInfo>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                if (node is not JsonObject meta) { Fail("__metadata__ is not an object"); return null!; }
                foreach (var (key, value) in meta)
                    metadata[key] = value is JsonValue v && v.TryGetValue(out string? s) ? s : value?.ToJsonString() ?? "";
                continue;
            }
            if (node is not JsonObject entry) { Fail($"entry '{name}' is not an object"); return null!; }
            string? dtype = entry["dtype"] is JsonValue dv && dv.TryGetValue(out string? d) ? d : null;
            if (dtype is null || !DTypes.ContainsKey(dtype)) Fail($"tensor '{name}' has unknown dtype '{dtype}' (known: " +
                                                                  $"{string.Join(", ", DTypes.Keys)})");
            long[] shape = ReadLongs(entry["shape"], name, "shape", path);
            long[] offsets = ReadLongs(entry["data_offsets"], name, "data_offsets", path);
            if (offsets.Length != 2) Fail($"tensor '{name}': data_offsets must have 2 entries");
            if (shape.Any(s => s < 0)) Fail($"tensor '{name}': negative dimension in shape [{string.Join(", ", shape)}]");
            var info = new SafeTensorInfo(name, dtype!, shape, offsets[0], offsets[1]);
            if (info.Begin < 0 || info.End < info.Begin) Fail($"tensor '{name}': data_offsets [{info.Begin}, {info.End}] are not ordered");
            if (info.End > dataLength) Fail($"tensor '{name}': data_offsets end {info.End} is past the end of the data ({dataLength} " +
                                            $"bytes; the file may be truncated)");
            // Exact (BigInteger): a shape like [2^40, 2^40] must not wrap around to a small or zero byte count.
            var expected = shape.Aggregate(System.Numerics.BigInteger.One, (n, d) => n * d) * DTypes[dtype!].Size;
            if (expected != info.ByteLength)
                Fail($"tensor '{name}': {dtype}[{string.Join(", ", shape)}] needs {expected} bytes but data_offsets span " +
                     $"{info.ByteLength}");
            tensors[name] = info;
        }
        var ordered = tensors.Values.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < ordered.Count; i++)
            if (ordered[i].Begin < ordered[i - 1].End)
                Fail($"tensors '{ordered[i - 1].Name}' and '{ordered[i].Name}' overlap (bytes {ordered[i].Begin}…{ordered[i - 1].End})");
        return new SafeTensorsFile(path, tensors, metadata, 8 + (long)headerLength, fileLength);
    }

    static long[] ReadLongs(JsonNode? node, string tensor, string field, string path)
    {
        if (node is not JsonArray array) throw new WrenException($"{path}: invalid safetensors file: tensor '{tensor}' has no {field} " +
                                                                 $"array");
        var values = new long[array.Count];
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonValue v || !v.TryGetValue(out long value))
                throw new WrenException($"{path}: invalid safetensors file: tensor '{tensor}': {field}[{i}] is not an integer");
            values[i] = value;
        }
        return values;
    }

    public SafeTensorInfo Info(string name) =>
        Tensors.TryGetValue(name, out var info) ? info : throw new WrenException($"{Path}: no tensor named '{name}'");

    /// <summary>
    /// Copies tensor <paramref name="name"/> into <paramref name="target"/> (same shape; any dtype or device), one
    /// bounded chunk at a time, so a load never holds a second full copy of the weights.
    /// </summary>
    public void CopyInto(string name, Tensor target)
    {
        var info = Info(name);
        if (!info.Shape.SequenceEqual(target.shape))
            throw new WrenException($"{Path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}] but the model expects " +
                                    $"[{string.Join(", ", target.shape)}]");
        using var _ = no_grad();
        var fileType = TorchType(info.DType);
        bool direct = target.device.type == DeviceType.CPU && target.dtype == fileType && target.is_contiguous();
        using var staging = direct ? null : empty(info.Shape, fileType);
        using var destination = (direct ? target : staging!).view(-1);   // a view keeps its storage alive until disposed
        long elementSize = ElementSize(info.DType);
        const long chunkBytes = 1L << 28;
        long chunkElements = Math.Max(1, chunkBytes / elementSize);
        for (long start = 0; start < info.Elements; start += chunkElements)
        {
            long count = Math.Min(chunkElements, info.Elements - start);
            using var slice = destination.narrow(0, start, count);
            new ReadOnlySpan<byte>(data + info.Begin + start * elementSize, checked((int)(count * elementSize))).CopyTo(slice.bytes);
        }
        if (!direct) target.copy_(staging!);
        DropPages(info.Begin, info.ByteLength);
    }

    /// <summary>
    /// Tells the kernel this process no longer needs the mapped pages of a tensor it has copied, so that loading a
    /// model does not also hold the whole file in its resident set (the pages stay in the page cache; reading them
    /// again maps them back). Linux only; elsewhere the mapping is simply released at <see cref="Dispose"/>.
    /// </summary>
    void DropPages(long begin, long length)
    {
        if (!OperatingSystem.IsLinux() || length == 0) return;
        long page = Environment.SystemPageSize;
        long from = (long)(data + begin) / page * page, to = ((long)(data + begin + length) + page - 1) / page * page;
        _ = madvise((IntPtr)from, (nuint)(to - from), MadviseDontNeed);
    }

    const int MadviseDontNeed = 4;

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int madvise(IntPtr address, nuint length, int advice);

    /// <summary>A new CPU tensor with the stored dtype.</summary>
    public Tensor Read(string name)
    {
        var info = Info(name);
        var tensor = empty(info.Shape, TorchType(info.DType));
        CopyInto(name, tensor);
        return tensor;
    }

    public void Dispose()
    {
        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
        }
        map?.Dispose();
    }

    /// <summary>Writes tensors (name order kept) to <paramref name="path"/> atomically (temp file + rename).</summary>
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string,
                             string>? metadata = null)
    {
        var entries = tensors.ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
            header["__metadata__"] = new JsonObject(metadata.Select(kv =>
                KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value))));
        long offset = 0;
        foreach (var (name, tensor) in entries)
        {
            long bytes = tensor.NumberOfElements * tensor.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = DTypeName(tensor.dtype),
                ["shape"] = new JsonArray(tensor.shape.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()),
                ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + bytes)),
            };
            offset += bytes;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padding = (8 - headerBytes.Length % 8) % 8;   // keep the data 8-byte aligned, as the reference writer does
        string temp = AtomicFile.TempPath(path);
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            stream.Write(BitConverter.GetBytes((ulong)(headerBytes.Length + padding)));
            stream.Write(headerBytes);
            for (int i = 0; i < padding; i++) stream.WriteByte((byte)' ');
            foreach (var (_, tensor) in entries)
            {
                using var scope = NewDisposeScope();
                var flat = tensor.detach().to(CPU).contiguous().view(-1);
                long chunk = Math.Max(1, (1L << 28) / Math.Max(1, flat.ElementSize));
                for (long start = 0; start < flat.NumberOfElements; start += chunk)
                    stream.Write(flat.narrow(0, start, Math.Min(chunk, flat.NumberOfElements - start)).bytes);
            }
            stream.Flush(true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
