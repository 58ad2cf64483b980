using System.Text.Json.Nodes;
using TorchSharp;
using Wren.Common;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Checkpoints;

/// <summary>Loads and saves Hugging Face model folders (config.json + safetensors) with the exact HF tensor names.</summary>
internal static class Checkpoint
{
    public const string ConfigFile = "config.json";

    /// <summary>
    /// The body of both <c>HybridForCausalLM.FromPretrained</c> overloads, the one public load entry: builds the model in
    /// <paramref name="placement"/> and fills it one tensor at a time, so memory peaks at the target weights plus one
    /// source tensor. Training placements (float32, bfloat16 or float16, matrices unpacked) copy with a dtype
    /// conversion; inference placements with bf16, int8 or 4-bit matrices (fp32 activations) round or quantize each
    /// matrix as it is read (<see cref="Linear.Quantize"/>). The folder may hold fp32/bf16 weights or a quantized folder
    /// written by <see cref="Save"/> (int8, q4 or q4k, named by its <c>quantization_config</c>): targets of the same
    /// precision then copy the stored values and scales as they are, other targets dequantize (and requantize).
    /// </summary>
    internal static HybridForCausalLM Load(string folder, Placement placement)
    {
        if (File.Exists(folder))
            throw new WrenException($"{folder} is a file; give the model folder that holds it (config.json and model.safetensors)");
        if (!Directory.Exists(folder)) throw new WrenException($"model folder not found: {folder}");
        if (placement.Dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new WrenException($"models load as float32, bfloat16 or float16, not {placement.Dtype}");
        var config = HybridConfig.Load(Path.Combine(folder, ConfigFile));
        var scheme = CheckQuantization(folder);
        using var files = CheckpointFiles.Open(folder);
        var (shapes, stored) = CheckMatches(folder, config, files, scheme);
        var model = new HybridForCausalLM(config, placement);
        try
        {
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in parameters.Where(p => !IsScale(p.Key)))
                Fill(files, name, parameter, parameters.GetValueOrDefault(name + ScaleSuffix), placement.Weights,
                     stored.TryGetValue(name, out var precision) ? precision : null, shapes[name][^1]);
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks names, shapes and dtypes against the model's unpacked layout built on the meta device (nothing allocated), so a
    /// config can never make a load allocate more than the weight files hold. A matrix stored quantized (I8: int8; U8: the
    /// 4-bit layout of <paramref name="scheme"/>) must have its packed shape and its F32 scales beside it, checked whatever
    /// the target precision (they are read to dequantize too). Returns every parameter's unpacked shape and the
    /// quantized precision of each matrix stored quantized.
    /// </summary>
    static (Dictionary<string, long[]> Shapes, Dictionary<string, WeightPrecision> Stored) CheckMatches(
        string folder, HybridConfig config, CheckpointFiles files, WeightPrecision? scheme)
    {
        // int8 keeps matrices [out, in] and gives each a scale: the unpacked shapes, and which parameters are matrices.
        using var meta = new HybridForCausalLM(config, new Placement(ScalarType.Float32, new Device("meta"), WeightPrecision.Int8));
        var shapes = meta.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var stored = new Dictionary<string, WeightPrecision>();
        foreach (var matrix in shapes.Keys.Where(n => !IsScale(n) && shapes.ContainsKey(n + ScaleSuffix) && files.Names.Contains(n)))
            if (StoredQuantized(folder, files, matrix, scheme) is { } precision) stored[matrix] = precision;
        var tolerated = config.TieWordEmbeddings ? new HashSet<string> { "lm_head.weight", "lm_head.weight_scale" } : [];
        var missing = shapes.Keys.Where(n => !IsScale(n) && !files.Names.Contains(n))
            .Concat(stored.Keys.Select(n => n + ScaleSuffix).Where(n => !files.Names.Contains(n)))
            .ToList();
        bool Expected(string n) => IsScale(n) ? stored.ContainsKey(n[..^ScaleSuffix.Length]) : shapes.ContainsKey(n);
        // Rotary tables are recomputed; some exporters still write the non-persistent buffer.
        var unexpected = files.Names
            .Where(n => !Expected(n) && !tolerated.Contains(n))
            .Where(n => !n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new WrenException($"{folder}: the checkpoint does not match config.json: " +
                (missing.Count > 0 ? $"missing {missing.Count} tensor(s): {Sample(missing)}. " : "") +
                (unexpected.Count > 0 ? $"unexpected {unexpected.Count} tensor(s): {Sample(unexpected)}." : ""));
        foreach (var (name, shape) in shapes.Where(p => !IsScale(p.Key) && files.Names.Contains(p.Key)))
        {
            long[] expected = stored.TryGetValue(name, out var precision) ? precision.MatrixShape(shape[0], shape[1]) : shape;
            if (!files.Info(name).Shape.SequenceEqual(expected))
                throw new WrenException($"{folder}: tensor '{name}' has shape [{string.Join(", ", files.Info(name).Shape)}] " +
                                        $"but the model expects [{string.Join(", ", expected)}] (from config.json" +
                                        (stored.ContainsKey(name) ? $", stored as {precision.Name()})" : ")"));
        }
        foreach (var (weight, precision) in stored)
        {
            var info = files.Info(weight + ScaleSuffix);
            long[] expected = precision.ScaleShape(shapes[weight][0], shapes[weight][1])!;
            if (info.DType != "F32" || !info.Shape.SequenceEqual(expected))
                throw new WrenException($"{folder}: tensor '{weight + ScaleSuffix}' is {info.DType} [{string.Join(", ", info.Shape)}] " +
                                        $"but the {precision.Name()} weight beside it needs F32 [{string.Join(", ", expected)}] " +
                                        "block scales (docs/precision.md)");
        }
        return (shapes, stored);
    }

    /// <summary>
    /// The precision a matrix is stored in when quantized: I8 is int8; U8 is the folder's 4-bit layout (q4 or q4k, from its
    /// quantization_config); anything else is null (a floating-point matrix).
    /// </summary>
    static WeightPrecision? StoredQuantized(string folder, CheckpointFiles files, string weight, WeightPrecision? scheme) =>
        files.Info(weight).DType switch
        {
            "I8" => WeightPrecision.Int8,
            "U8" when scheme is WeightPrecision.Q4 or WeightPrecision.Q4K => scheme,
            "U8" => throw new WrenException($"{folder}: tensor '{weight}' is U8 (packed 4-bit) but config.json's {QuantizationKey} " +
                                            "names no 4-bit layout (wren_q4_0 or wren_q4_k, docs/precision.md)"),
            _ => null,
        };

    const string ScaleSuffix = "_scale";

    static bool IsScale(string name) => name.EndsWith(".weight" + ScaleSuffix, StringComparison.Ordinal);

    /// <summary>
    /// One parameter from the files: copied as stored (same precision on both sides), or through fp32: a stored quantized
    /// matrix dequantized (its unpacked width <paramref name="cols"/>), a quantized target quantized.
    /// </summary>
    static void Fill(CheckpointFiles files, string name, Tensor target, Tensor? targetScale, WeightPrecision targetPrecision,
                     WeightPrecision? stored, long cols)
    {
        using var _ = no_grad();
        if (targetScale is not null && stored == targetPrecision)
        {
            files.CopyInto(name, target);
            files.CopyInto(name + ScaleSuffix, targetScale);
        }
        else if (targetScale is not null || stored is not null)
        {
            using var values = files.Read(name);
            using var scale = stored is null ? null : files.Read(name + ScaleSuffix);
            using var source = stored is null ? values.alias() : Linear.Dequantize(values, scale, cols);
            if (targetScale is not null) Linear.Quantize(source, target, targetScale);
            else target.copy_(source);
        }
        else files.CopyInto(name, target);
    }

    static string Sample(List<string> names) => string.Join(", ", names.Take(8)) + (names.Count > 8 ? ", …" : "");

    /// <summary>
    /// Writes config.json and the weights (in <paramref name="dtype"/>, default the model's) into
    /// <paramref name="folder"/>, every file atomically. With <paramref name="maxShardBytes"/> &gt; 0 the weights are
    /// split into <c>model-0000i-of-0000n.safetensors</c> shards plus an index.
    /// </summary>
    public static void Save(HybridForCausalLM model, string folder, ScalarType? dtype = null, long maxShardBytes = 0)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, ConfigFile), ConfigWithPrecision(model).ToJsonString(new() { WriteIndented = true }));
        bool Convert(string name, Tensor p) => dtype is { } t && p.dtype != t && p.is_floating_point() && !IsScale(name);
        var tensors = model.named_parameters()
            .Select(p => (p.name, tensor: Convert(p.name, p.parameter) ? p.parameter.detach().to(dtype!.Value) : p.parameter.detach()))
            .ToList();
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        foreach (var stale in Directory.GetFiles(folder, "model*.safetensors*")) File.Delete(stale);
        try
        {
            if (maxShardBytes <= 0)
            {
                SafeTensorsFile.Write(Path.Combine(folder, CheckpointFiles.SingleFile), tensors, metadata);
                return;
            }
            var shards = new List<List<(string, Tensor)>> { new() };
            long size = 0;
            foreach (var entry in tensors)
            {
                long bytes = entry.tensor.NumberOfElements * entry.tensor.ElementSize;
                if (shards[^1].Count > 0 && size + bytes > maxShardBytes) { shards.Add([]); size = 0; }
                shards[^1].Add(entry);
                size += bytes;
            }
            var weightMap = new JsonObject();
            for (int i = 0; i < shards.Count; i++)
            {
                string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                SafeTensorsFile.Write(Path.Combine(folder, file), shards[i], metadata);
                foreach (var (name, _) in shards[i]) weightMap[name] = file;
            }
            long total = tensors.Sum(t => t.tensor.NumberOfElements * t.tensor.ElementSize);
            var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
            AtomicFile.WriteAllText(Path.Combine(folder, CheckpointFiles.IndexFile), index.ToJsonString(new() { WriteIndented = true }));
        }
        finally
        {
            foreach (var (_, tensor) in tensors) tensor.Dispose();
        }
    }

    /// <summary>
    /// Writes the model folder <paramref name="source"/> into <paramref name="target"/> with its matrices stored as
    /// <paramref name="weights"/> (e.g. an int8 folder that loads without the fp32 file), copying the folder's other
    /// files (tokenizer, generation config) as they are. Memory: the target weights plus one source tensor.
    /// </summary>
    public static void Convert(string source, string target, WeightPrecision weights, long maxShardBytes = 0)
    {
        if (Path.GetFullPath(source) == Path.GetFullPath(target)) throw new WrenException("convert into another folder than the source");
        using var model = Load(source, new Placement(ScalarType.Float32, CPU, weights));
        Save(model, target, maxShardBytes: maxShardBytes);
        foreach (var file in Directory.GetFiles(source))
        {
            string name = Path.GetFileName(file);
            if (name != ConfigFile && !name.StartsWith("model", StringComparison.Ordinal))
                File.Copy(file, Path.Combine(target, name), overwrite: true);
        }
    }

    /// <summary>
    /// The model's config.json, marked when its matrices are quantized with the layout's <c>quantization_config</c> (the key
    /// Hugging Face uses for quantized checkpoints; <see cref="Layouts"/>). Each quantized matrix <c>NAME.weight</c> (int8:
    /// I8 [out, in]; q4/q4k: U8 packed bytes, <see cref="WeightPrecisions.MatrixShape"/>) then has <c>NAME.weight_scale</c>
    /// (F32, <see cref="WeightPrecisions.ScaleShape"/>) beside it; see docs/precision.md.
    /// </summary>
    static JsonObject ConfigWithPrecision(HybridForCausalLM model)
    {
        var json = (JsonObject)JsonNode.Parse(model.Config.ToJson())!;
        json.Remove(QuantizationKey);
        if (Layouts.TryGetValue(model.Placement.Weights, out var layout))
            json[QuantizationKey] = new JsonObject(layout.Select(p => KeyValuePair.Create(p.Key, p.Value switch
            {
                bool flag => JsonValue.Create(flag),
                int number => JsonValue.Create(number),
                var text => (JsonNode?)JsonValue.Create((string)text),
            })));
        return json;
    }

    const string QuantizationKey = "quantization_config";

    /// <summary>
    /// The <c>quantization_config</c> of each layout Wren writes: int8 (<see cref="Kernels.MatVecInt8"/>), q4
    /// (<see cref="Kernels.MatVecQ4"/>) and q4k (<see cref="Kernels.MatVecQ4K"/>), scales in fp32 throughout.
    /// </summary>
    static readonly Dictionary<WeightPrecision, Dictionary<string, object>> Layouts = new()
    {
        [WeightPrecision.Int8] = new()
        {
            ["quant_method"] = "wren_q8_0", ["bits"] = 8, ["group_size"] = Kernels.MatVecInt8.BlockSize, ["symmetric"] = true,
            ["scale_dtype"] = "float32",
        },
        [WeightPrecision.Q4] = new()
        {
            ["quant_method"] = "wren_q4_0", ["bits"] = 4, ["group_size"] = Kernels.MatVecQ4.BlockSize, ["symmetric"] = true,
            ["scale_dtype"] = "float32",
        },
        [WeightPrecision.Q4K] = new()
        {
            ["quant_method"] = "wren_q4_k", ["bits"] = 4, ["group_size"] = 32, ["super_group_size"] = Kernels.MatVecQ4K.SuperBlockSize,
            ["scale_bits"] = 6, ["symmetric"] = false, ["scale_dtype"] = "float32",
        },
    };

    /// <summary>
    /// A <c>quantization_config</c> in config.json must describe one of the layouts Wren writes (<see cref="Layouts"/>):
    /// another method (GPTQ, AWQ, bitsandbytes, …) or other settings would be read wrongly, so they are refused by name.
    /// Returns the layout's precision, or null when there is none.
    /// </summary>
    static WeightPrecision? CheckQuantization(string folder)
    {
        if (JsonNode.Parse(File.ReadAllText(Path.Combine(folder, ConfigFile)))?[QuantizationKey] is not { } node) return null;
        if (node is not JsonObject settings)
            throw new WrenException($"{folder}: config.json's {QuantizationKey} must be an object");
        static string Text(JsonNode? value) =>
            value is JsonValue v && v.TryGetValue(out string? str) ? str : value?.ToJsonString() ?? "null";
        string method = Text(settings["quant_method"]);
        var (precision, expected) = Layouts.FirstOrDefault(l => (string)l.Value["quant_method"] == method);
        if (expected is null)
            throw new WrenException($"{folder}: config.json's {QuantizationKey}.quant_method is {method}; Wren reads only its own " +
                                    $"layouts ({string.Join(", ", Layouts.Values.Select(l => l["quant_method"]))}; docs/precision.md)");
        foreach (var (key, value) in settings)
        {
            if (!expected.TryGetValue(key, out var want))
                throw new WrenException($"{folder}: config.json's {QuantizationKey} has '{key}', which Wren's {precision.Name()} layout " +
                                        $"({method}, docs/precision.md) does not have");
            string wanted = want is bool b ? (b ? "true" : "false") : $"{want}";
            if (Text(value) != wanted)
                throw new WrenException($"{folder}: config.json's {QuantizationKey}.{key} is {Text(value)}; Wren reads only its own " +
                                        $"{precision.Name()} layout ({key} = {wanted}, docs/precision.md)");
        }
        return precision;
    }
}
