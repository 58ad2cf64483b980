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
    /// conversion; inference placements with bf16 or int8 matrices (fp32 activations) round or quantize each matrix as
    /// it is read (<see cref="Kernels.MatVecInt8"/>). The folder may hold fp32/bf16 weights or an int8 folder written
    /// by <see cref="Save"/>: int8 targets then copy the stored values and scales as they are, other targets dequantize.
    /// </summary>
    internal static HybridForCausalLM Load(string folder, Placement placement)
    {
        if (File.Exists(folder))
            throw new WrenException($"{folder} is a file; give the model folder that holds it (config.json and model.safetensors)");
        if (!Directory.Exists(folder)) throw new WrenException($"model folder not found: {folder}");
        if (placement.Dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new WrenException($"models load as float32, bfloat16 or float16, not {placement.Dtype}");
        var config = HybridConfig.Load(Path.Combine(folder, ConfigFile));
        CheckQuantization(folder);
        using var files = CheckpointFiles.Open(folder);
        CheckMatches(folder, config, placement, files);
        var model = new HybridForCausalLM(config, placement);
        try
        {
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in parameters.Where(p => !IsScale(p.Key)))
                Fill(files, name, parameter, parameters.GetValueOrDefault(name + ScaleSuffix), StoredInt8(files, name));
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
    /// Checks names and shapes against the model built in <paramref name="placement"/>'s layout on the meta device (nothing
    /// allocated), so a config can never make a load allocate more than the weight files hold. int8 scales belong to their
    /// weight: expected in the files exactly when the stored weight is int8.
    /// </summary>
    static void CheckMatches(string folder, HybridConfig config, Placement placement, CheckpointFiles files)
    {
        using var meta = new HybridForCausalLM(config, placement with { Device = new Device("meta") });
        var shapes = meta.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var tolerated = config.TieWordEmbeddings ? new HashSet<string> { "lm_head.weight", "lm_head.weight_scale" } : [];
        var missing = shapes.Keys.Where(n => !IsScale(n) && !files.Names.Contains(n))
            .Concat(files.Names.Where(n => StoredInt8(files, n)).Select(n => n + ScaleSuffix).Where(n => !files.Names.Contains(n)))
            .ToList();
        bool Expected(string n) => IsScale(n)
            ? StoredInt8(files, n[..^ScaleSuffix.Length]) && shapes.ContainsKey(n[..^ScaleSuffix.Length])
            : shapes.ContainsKey(n);
        // Rotary tables are recomputed; some exporters still write the non-persistent buffer.
        var unexpected = files.Names
            .Where(n => !Expected(n) && !tolerated.Contains(n))
            .Where(n => !n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new WrenException($"{folder}: the checkpoint does not match config.json: " +
                (missing.Count > 0 ? $"missing {missing.Count} tensor(s): {Sample(missing)}. " : "") +
                (unexpected.Count > 0 ? $"unexpected {unexpected.Count} tensor(s): {Sample(unexpected)}." : ""));
        // A scale's shape follows its weight's, and a scale is only read when both sides are int8.
        foreach (var (name, shape) in shapes.Where(p => files.Names.Contains(p.Key) && Expected(p.Key)))
            if (!files.Info(name).Shape.SequenceEqual(shape))
                throw new WrenException($"{folder}: tensor '{name}' has shape [{string.Join(", ", files.Info(name).Shape)}] " +
                                        $"but the model expects [{string.Join(", ", shape)}] (from config.json)");
        // An int8 weight's scales are read whatever the target precision (dequantized for fp32/bf16): check them in every case.
        foreach (var weight in files.Names.Where(n => shapes.ContainsKey(n) && StoredInt8(files, n)))
        {
            var info = files.Info(weight + ScaleSuffix);
            long[] expected = [shapes[weight][0], Kernels.MatVecInt8.Blocks(shapes[weight][^1])];
            if (info.DType != "F32" || !info.Shape.SequenceEqual(expected))
                throw new WrenException($"{folder}: tensor '{weight + ScaleSuffix}' is {info.DType} [{string.Join(", ", info.Shape)}] " +
                                        $"but the int8 weight beside it needs F32 [{string.Join(", ", expected)}] block scales " +
                                        "(docs/precision.md)");
        }
    }

    static bool StoredInt8(CheckpointFiles files, string weight) => files.Names.Contains(weight) && files.Info(weight).DType == "I8";

    const string ScaleSuffix = "_scale";

    static bool IsScale(string name) => name.EndsWith(".weight" + ScaleSuffix, StringComparison.Ordinal);

    /// <summary>
    /// One parameter from the files: copied as stored, quantized (int8 target, float source) or dequantized (int8
    /// source, other target).
    /// </summary>
    static void Fill(CheckpointFiles files, string name, Tensor target, Tensor? targetScale, bool storedInt8)
    {
        using var _ = no_grad();
        if (targetScale is not null && storedInt8)
        {
            files.CopyInto(name, target);
            files.CopyInto(name + ScaleSuffix, targetScale);
        }
        else if (targetScale is not null || storedInt8)
        {
            using var source = files.Read(name);
            if (targetScale is not null)
            {
                Kernels.MatVecInt8.QuantizeInto(source, target, targetScale);
            }
            else
            {
                using var scale = files.Read(name + ScaleSuffix);
                using var full = Linear.Dequantize(source, scale);
                target.copy_(full);
            }
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
    /// The model's config.json, marked when its matrices are int8: <c>"quantization_config": {"quant_method":
    /// "wren_q8_0", "bits": 8, "group_size": 32, "symmetric": true, "scale_dtype": "float32"}</c> (the key Hugging Face
    /// uses for quantized checkpoints). Each int8 matrix <c>NAME.weight</c> (I8 [out, in]) then has
    /// <c>NAME.weight_scale</c> (F32 [out, ⌈in/32⌉]) beside it; see docs/precision.md.
    /// </summary>
    static JsonObject ConfigWithPrecision(HybridForCausalLM model)
    {
        var json = (JsonObject)JsonNode.Parse(model.Config.ToJson())!;
        json.Remove(QuantizationKey);
        if (model.Placement.Weights == WeightPrecision.Int8)
            json[QuantizationKey] = new JsonObject
            {
                ["quant_method"] = "wren_q8_0", ["bits"] = 8, ["group_size"] = Kernels.MatVecInt8.BlockSize,
                ["symmetric"] = true, ["scale_dtype"] = "float32",
            };
        return json;
    }

    const string QuantizationKey = "quantization_config";

    /// <summary>
    /// A <c>quantization_config</c> in config.json must describe the one int8 layout Wren writes (<see cref="ConfigWithPrecision"/>):
    /// another method (GPTQ, AWQ, bitsandbytes, …) or other settings would be read wrongly, so they are refused by name.
    /// </summary>
    static void CheckQuantization(string folder)
    {
        if (JsonNode.Parse(File.ReadAllText(Path.Combine(folder, ConfigFile)))?[QuantizationKey] is not { } node) return;
        var expected = new Dictionary<string, string>
        {
            ["quant_method"] = "wren_q8_0", ["bits"] = "8", ["group_size"] = $"{Kernels.MatVecInt8.BlockSize}", ["symmetric"] = "true",
            ["scale_dtype"] = "float32",
        };
        if (node is not JsonObject settings)
            throw new WrenException($"{folder}: config.json's {QuantizationKey} must be an object");
        foreach (var (key, value) in settings)
        {
            string text = value is JsonValue v && v.TryGetValue(out string? str) ? str : value?.ToJsonString() ?? "null";
            if (!expected.TryGetValue(key, out var want))
                throw new WrenException($"{folder}: config.json's {QuantizationKey} has '{key}', which Wren's int8 layout " +
                                        "(wren_q8_0, docs/precision.md) does not have");
            if (text != want)
                throw new WrenException($"{folder}: config.json's {QuantizationKey}.{key} is {text}; Wren reads only its own int8 " +
                                        $"layout ({key} = {want}, docs/precision.md)");
        }
    }
}
