using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using Wren.Checkpoints;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Training;

/// <summary>Where a run is: optimizer steps done (= batches drawn ÷ accumulation), tokens seen, wall time so far, and the number
/// of ranks (MPI world size) that wrote it.</summary>
public sealed record TrainerState(long Step, long TokensSeen, double Seconds, int WorldSize = 1);

/// <summary>
/// A resumable checkpoint folder <c>checkpoints/step-000123/</c>: the HF model folder (config.json + model.safetensors),
/// the optimizer state, the torch generator state and <c>trainer-state.json</c>. The folder is written under a
/// temporary name and renamed into place, so a crash leaves either the whole checkpoint or none of it.
/// </summary>
internal static class TrainingCheckpoint
{
    public const string Folder = "checkpoints";
    const string StateFile = "trainer-state.json", OptimizerFile = "optimizer.bin", GeneratorFile = "rng.safetensors";
    const string TempSuffix = ".wren-tmp";

    public static string PathFor(string run, long step) => Path.Combine(run, Folder, $"step-{step:D8}");

    public static string Save(string run, HybridForCausalLM model, OptimizerHelper optimizer, TrainerState state, string? tokenizerJson,
                              int keep)
    {
        string final = PathFor(run, state.Step), temp = final + TempSuffix;
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        model.SavePretrained(temp);
        optimizer.save_state_dict(Path.Combine(temp, OptimizerFile));
        SafeTensorsFile.Write(Path.Combine(temp, GeneratorFile), [("torch_cpu", torch.get_rng_state())]);
        if (tokenizerJson is not null) File.Copy(tokenizerJson, Path.Combine(temp, "tokenizer.json"));
        File.WriteAllText(Path.Combine(temp, StateFile), JsonSerializer.Serialize(state, TrainingOptions.Json));
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(temp, final);
        foreach (var old in List(run).SkipLast(keep)) Directory.Delete(old.Path, recursive: true);
        return final;
    }

    /// <summary>Complete checkpoints of a run, oldest first (half-written temporaries are not checkpoints).</summary>
    public static IReadOnlyList<(string Path, long Step)> List(string run)
    {
        string folder = Path.Combine(run, Folder);
        if (!Directory.Exists(folder)) return [];
        return Directory.GetDirectories(folder, "step-*")
            .Select(d => (Path: d, Step: long.TryParse(System.IO.Path.GetFileName(d)["step-".Length..], out var s) ? s : -1))
            .Where(c => c.Step >= 0 && File.Exists(System.IO.Path.Combine(c.Path, StateFile)))
            .OrderBy(c => c.Step).ToList();
    }

    /// <summary>Deletes checkpoints a crash left half-written; call only from the process that owns the run.</summary>
    public static void RemovePartial(string run)
    {
        string folder = Path.Combine(run, Folder);
        if (!Directory.Exists(folder)) return;
        foreach (var partial in Directory.GetDirectories(folder, "*" + TempSuffix)) Directory.Delete(partial, recursive: true);
    }

    /// <summary>Loads the model of a checkpoint (for training: fp32, train mode).</summary>
    public static HybridForCausalLM LoadModel(string checkpoint)
    {
        var model = HybridForCausalLM.FromPretrained(checkpoint);
        model.train();
        return model;
    }

    /// <summary>Restores the optimizer and generator states and returns the trainer state.</summary>
    public static TrainerState Restore(string checkpoint, OptimizerHelper optimizer)
    {
        string statePath = Path.Combine(checkpoint, StateFile);
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath), TrainingOptions.Json)
                    ?? throw new WrenException($"{statePath}: empty");
        }
        catch (JsonException e) { throw new WrenException($"{statePath}: invalid ({e.Message})", e); }
        string optimizerPath = Path.Combine(checkpoint, OptimizerFile);
        if (!File.Exists(optimizerPath)) throw new WrenException($"{checkpoint}: {OptimizerFile} is missing; the checkpoint cannot " +
                                                                 $"resume training");
        optimizer.load_state_dict(optimizerPath);
        using var generator = SafeTensorsFile.Open(Path.Combine(checkpoint, GeneratorFile));
        using var rng = generator.Read("torch_cpu");
        torch.set_rng_state(rng);
        return state;
    }
}
