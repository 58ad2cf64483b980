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

    /// <summary>The body of <see cref="HybridForCausalLM.FromPretrained"/>, the one public load entry.</summary>
    internal static HybridForCausalLM Load(string folder, ScalarType dtype, Device? device)
    {
        if (File.Exists(folder))
            throw new WrenException($"{folder} is a file; give the model folder that holds it (config.json and model.safetensors)");
        if (!Directory.Exists(folder)) throw new WrenException($"model folder not found: {folder}");
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new WrenException($"models load as float32, bfloat16 or float16, not {dtype}");
        var config = HybridConfig.Load(Path.Combine(folder, ConfigFile));
        using var files = CheckpointFiles.Open(folder);
        CheckMatches(folder, config, files);
        var model = new HybridForCausalLM(config, new Placement(dtype, device ?? CPU));
        try
        {
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in parameters) files.CopyInto(name, parameter);
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
    /// Checks names and shapes against a model built on the meta device (nothing allocated), so a config can never make a
    /// load allocate more than the weight files hold.
    /// </summary>
    static void CheckMatches(string folder, HybridConfig config, CheckpointFiles files)
    {
        using var meta = new HybridForCausalLM(config, new Placement(ScalarType.Float32, new Device("meta")));
        var shapes = meta.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var tolerated = config.TieWordEmbeddings ? new HashSet<string> { "lm_head.weight" } : [];
        var missing = shapes.Keys.Where(n => !files.Names.Contains(n)).ToList();
        // Rotary tables are recomputed; some exporters still write the non-persistent buffer.
        var unexpected = files.Names.Where(n => !shapes.ContainsKey(n) && !tolerated.Contains(n)
                                                && !n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new WrenException($"{folder}: the checkpoint does not match config.json: " +
                (missing.Count > 0 ? $"missing {missing.Count} tensor(s): {Sample(missing)}. " : "") +
                (unexpected.Count > 0 ? $"unexpected {unexpected.Count} tensor(s): {Sample(unexpected)}." : ""));
        foreach (var (name, shape) in shapes)
            if (!files.Info(name).Shape.SequenceEqual(shape))
                throw new WrenException($"{folder}: tensor '{name}' has shape [{string.Join(", ", files.Info(name).Shape)}] " +
                                        $"but the model expects [{string.Join(", ", shape)}] (from config.json)");
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
        AtomicFile.WriteAllText(Path.Combine(folder, ConfigFile), model.Config.ToJson());
        var tensors = model.named_parameters()
            .Select(p => (p.name, tensor: dtype is { } t && p.parameter.dtype != t ? p.parameter.detach().to(t) : p.parameter.detach()))
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
}
