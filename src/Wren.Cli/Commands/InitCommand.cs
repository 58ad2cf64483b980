using System.CommandLine;
using Wren.Checkpoints;
using Wren.Models;
using Wren.Modules;

namespace Wren.Cli.Commands;

/// <summary><c>wren init</c>: a randomly initialized model (reference initializations) saved as an HF folder.</summary>
internal static class InitCommand
{
    public static Command Create()
    {
        var command = new Command("init", "Create a randomly initialized model from a config.json, saved as a Hugging Face folder");
        var config = new Option<string>("--config")
        {
            Description = "model config (Nemotron-Flash config.json format) or a preset name " +
                          "(flash-tiny, flash-300m, llama-300m, flash-1b, flash-3b)",
            Required = true,
        };
        var output = new Option<string>("--out") { Description = "output folder", Required = true };
        var seed = new Option<long>("--seed") { Description = "initialization seed", DefaultValueFactory = _ => 0 };
        var shard = new Option<long>("--max-shard-mb")
        {
            Description = "split weights into shards of at most this many MB (0 = one file)",
            DefaultValueFactory = _ => 0,
        };
        command.Add(config); command.Add(output); command.Add(seed); command.Add(shard);
        var common = new CommonOptions(command);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            var cfg = HybridConfig.Load(result.GetValue(config)!);
            using var model = new HybridForCausalLM(cfg, new Placement(TorchSharp.torch.ScalarType.Float32, device));
            Initialization.Apply(model, result.GetValue(seed));
            string folder = result.GetValue(output)!;
            var precision = common.Precision(result);
            using var packed = precision == WeightPrecision.Float32 ? null : WeightPacking.Pack(model, precision);
            (packed ?? model).SavePretrained(folder, maxShardBytes: result.GetValue(shard) * 1_000_000);
            var footprint = ModelFootprint.Of(cfg);
            Console.WriteLine($"initialized {footprint.Parameters:N0} parameters ({string.Join(" ", cfg.LayerTypes)}) → {folder}");
            return 0;
        });
        return command;
    }
}
