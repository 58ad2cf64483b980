using System.CommandLine;
using System.Text.Json;
using TorchSharp;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Inference;
using Wren.Interop;
using Wren.Models;

namespace Wren.Cli.Commands;

/// <summary><c>wren logits</c>: float32 logits [B][T][V] for exactly the given tokens, as .npy or nested JSON.</summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var command = new Command("logits", "Compute logits for token ids (exactness check against other implementations)");
        var model = new Option<string>("--model") { Description = "model folder (config.json + safetensors)", Required = true };
        var tokens = new Option<string>("--tokens")
        {
            Description = "file holding a JSON list of equal-length lists of token ids (B × T), e.g. [[1, 2, 3]]",
            Required = true,
        };
        var output = new Option<string>("--out") { Description = "output file: .npy or .json", Required = true };
        var prefill = new Option<int?>("--prefill")
        {
            Description = "run the first N tokens in parallel, then decode the rest one at a time through the caches",
        };
        command.Add(model); command.Add(tokens); command.Add(output); command.Add(prefill);
        var common = new CommonOptions(command);
        command.SetAction(result =>
        {
            string outPath = result.GetValue(output)!;
            string extension = Path.GetExtension(outPath).ToLowerInvariant();
            if (extension is not (".npy" or ".json")) throw new WrenException($"--out must end in .npy or .json, got '{outPath}'");
            var device = common.Initialize(result);
            using var lm = HybridForCausalLM.FromPretrained(result.GetValue(model)!, common.Precision(result), device);
            using var ids = Scoring.ReadTokens(result.GetValue(tokens)!, lm.Config.VocabSize).to(device);
            using var logits = Scoring.Logits(lm, ids, result.GetValue(prefill)).cpu();
            var shape = logits.shape;
            var data = logits.data<float>().ToArray();
            if (extension == ".npy") Npy.WriteFloat32(outPath, data, shape);
            else AtomicFile.WriteAllText(outPath, JsonSerializer.Serialize(Nest(data, shape)));
            Console.Error.WriteLine($"wrote logits [{string.Join(", ", shape)}] to {outPath}");
            return 0;
        });
        return command;
    }

    static float[][][] Nest(float[] data, long[] shape)
    {
        int B = (int)shape[0], T = (int)shape[1], V = (int)shape[2];
        return Enumerable.Range(0, B).Select(b =>
            Enumerable.Range(0, T).Select(t => data.AsSpan((b * T + t) * V, V).ToArray()).ToArray()).ToArray();
    }
}
