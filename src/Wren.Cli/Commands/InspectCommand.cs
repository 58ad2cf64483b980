using System.CommandLine;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Models;
using Wren.Runtime;

namespace Wren.Cli.Commands;

/// <summary><c>wren inspect</c>: what a model is and what it costs, without loading its weights.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var command = new Command("inspect",
                                  "Summarize a model folder or config: layers, parameters per layer type, weight and cache bytes");
        var path = new Argument<string>("model") { Description = "model folder, config.json or preset name" };
        var context = new Option<int>("--context")
        {
            Description = "context length for the cache estimate",
            DefaultValueFactory = _ => 8192,
        };
        command.Add(path); command.Add(context);
        command.SetAction(result =>
        {
            WrenRuntime.Initialize();
            string target = result.GetValue(path)!;
            var config = HybridConfig.Load(target);
            var footprint = ModelFootprint.Of(config);
            int ctx = result.GetValue(context);
            var console = AnsiConsole.Console;
            console.MarkupLine($"[bold]{Markup.Escape(target)}[/]");
            console.WriteLine($"layers ({config.NumLayers}): {string.Join(" ", config.LayerTypes)}");
            console.WriteLine($"hidden {config.HiddenSize}, vocab {config.VocabSize}, heads {config.NumAttentionHeads}/{config.KvHeads} " +
                              $"kv, FFN {config.FfnSize} ({config.MlpHiddenAct})" +
                              $"{(config.MixerLayersHaveFfn ? ", FFN in every mixer layer" : "")}, meta tokens {config.NumMemoryTokens}" +
                              (config.SlidingWindow is { } w
                                  ? $", sliding window {w} (global: {string.Join(",", config.GlobalAttnIdx ?? [])})"
                                  : "") +
                              $", rope {(config.Rope ? config.RopeType ?? "default" : "off")}, tied {config.TieWordEmbeddings}");
            var table = new Table().AddColumns("layer type", "layers", "parameters", "share");
            foreach (var row in footprint.PerLayerType)
                table.AddRow(row.LayerType, row.Layers.ToString(), row.Parameters.ToString("N0"),
                             $"{100.0 * row.Parameters / footprint.Parameters:F1} %");
            table.AddRow("embeddings + lm_head", "", footprint.EmbeddingParameters.ToString("N0"),
                         $"{100.0 * footprint.EmbeddingParameters / footprint.Parameters:F1} %");
            table.AddRow("[bold]total[/]", config.NumLayers.ToString(), $"[bold]{footprint.Parameters:N0}[/]", "100 %");
            console.Write(table);
            long count = footprint.Parameters;
            console.WriteLine($"parameters: {(count >= 1e8 ? $"{count / 1e9:0.000}B" : $"{count / 1e6:0.00}M")}");
            long Packed(Modules.WeightPrecision p) => ModelFootprint.Of(config, TorchSharp.torch.ScalarType.Float32, p).WeightBytes;
            console.WriteLine($"weights: {Formats.Bytes(footprint.WeightBytes)} fp32, {Formats.Bytes(footprint.WeightBytes / 2)} bf16, " +
                              $"{Formats.Bytes(Packed(Modules.WeightPrecision.Int8))} int8, " +
                              $"{Formats.Bytes(Packed(Modules.WeightPrecision.Q4))} q4, " +
                              $"{Formats.Bytes(Packed(Modules.WeightPrecision.Q4K))} q4k");
            console.WriteLine($"decode cache per sequence (fp32): {Formats.Bytes(footprint.CacheBytes(1, 1))} at 1 token, " +
                              $"{Formats.Bytes(footprint.CacheBytes(1, ctx))} at {ctx} tokens; " +
                              $"grows {footprint.CacheBytesPerToken:N0} B/token");
            return 0;
        });
        return command;
    }
}
