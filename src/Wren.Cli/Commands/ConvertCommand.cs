using System.CommandLine;
using Wren.Models;

namespace Wren.Cli.Commands;

/// <summary><c>wren convert</c>: a model folder with its weights stored in another precision (e.g. a quantized int8, q4 or q4k
/// folder).</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var command = new Command("convert", "Write a model folder with its weight matrices in float32, bfloat16, int8, q4 or q4k");
        var model = new Option<string>("--model") { Description = "source model folder", Required = true };
        var output = new Option<string>("--out") { Description = "output folder", Required = true };
        var shard = new Option<long>("--max-shard-mb") { Description = "split weights into shards of at most this many MB (0 = one file)" };
        command.Add(model); command.Add(output); command.Add(shard);
        var common = new CommonOptions(command);
        command.SetAction(result =>
        {
            common.Initialize(result);
            var precision = common.Precision(result);
            HybridForCausalLM.ConvertPretrained(result.GetValue(model)!, result.GetValue(output)!, precision,
                                                result.GetValue(shard) * 1_000_000);
            Console.WriteLine($"wrote {result.GetValue(output)} ({Modules.WeightPrecisions.Name(precision)} weights)");
            return 0;
        });
        return command;
    }
}
