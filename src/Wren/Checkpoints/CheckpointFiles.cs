using System.Text.Json.Nodes;
using TorchSharp;

namespace Wren.Checkpoints;

/// <summary>
/// The weights of a model folder: one <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> (<c>{"metadata": …, "weight_map": {name: file}}</c>).
/// </summary>
internal sealed class CheckpointFiles : IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    readonly List<SafeTensorsFile> files;
    readonly Dictionary<string, SafeTensorsFile> byTensor;

    CheckpointFiles(List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> byTensor)
    {
        this.files = files;
        this.byTensor = byTensor;
    }

    public IReadOnlyCollection<string> Names => byTensor.Keys;

    public SafeTensorInfo Info(string name) => byTensor[name].Info(name);

    public void CopyInto(string name, TorchSharp.torch.Tensor target) => byTensor[name].CopyInto(name, target);

    /// <summary>A new CPU tensor with the stored dtype.</summary>
    public TorchSharp.torch.Tensor Read(string name) => byTensor[name].Read(name);

    public static CheckpointFiles Open(string folder)
    {
        string index = Path.Combine(folder, IndexFile), single = Path.Combine(folder, SingleFile);
        if (File.Exists(index)) return OpenSharded(folder, index);
        if (File.Exists(single))
        {
            var file = SafeTensorsFile.Open(single);
            return new CheckpointFiles([file], file.Tensors.Keys.ToDictionary(n => n, _ => file));
        }
        throw new WrenException($"{folder}: no {SingleFile} or {IndexFile} found");
    }

    static CheckpointFiles OpenSharded(string folder, string indexPath)
    {
        if (StrictJson.ParseObject(File.ReadAllText(indexPath), indexPath)["weight_map"] is not JsonObject weightMap)
            throw new WrenException($"{indexPath}: no \"weight_map\" object");
        var opened = new Dictionary<string, SafeTensorsFile>();
        var byTensor = new Dictionary<string, SafeTensorsFile>();
        try
        {
            foreach (var (name, node) in weightMap)
            {
                string? shard = node is JsonValue v && v.TryGetValue(out string? s) ? s : null;
                if (shard is null || shard.Contains('/') || shard.Contains('\\'))
                    throw new WrenException($"{indexPath}: weight_map['{name}'] must be a file name in the folder");
                if (!opened.TryGetValue(shard, out var file))
                    opened[shard] = file = SafeTensorsFile.Open(Path.Combine(folder, shard));
                if (!file.Tensors.ContainsKey(name))
                    throw new WrenException($"{indexPath}: '{name}' is mapped to {shard}, which does not contain it");
                byTensor[name] = file;
            }
            foreach (var (shard, file) in opened)
                foreach (var name in file.Tensors.Keys.Where(n => !byTensor.ContainsKey(n)))
                    throw new WrenException($"{indexPath}: {shard} holds '{name}', which the weight_map does not list");
        }
        catch
        {
            foreach (var file in opened.Values) file.Dispose();
            throw;
        }
        return new CheckpointFiles([.. opened.Values], byTensor);
    }

    public void Dispose()
    {
        foreach (var file in files) file.Dispose();
    }
}
