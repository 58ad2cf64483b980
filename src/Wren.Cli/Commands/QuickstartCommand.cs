using System.CommandLine;
using Spectre.Console;
using Wren.Checkpoints;
using Wren.Inference;
using Wren.Models;
using Wren.Modules;
using Wren.Tokenization;

namespace Wren.Cli.Commands;

/// <summary>
/// <c>wren quickstart</c>: the end-to-end path on an embedded default — build a Flash-pattern hybrid, save it as an
/// HF folder, reload it, check prefill+decode against the full forward, and stream generated tokens with timings.
/// </summary>
internal static class QuickstartCommand
{
    public static Command Create()
    {
        var command = new Command("quickstart", "Run the end-to-end path on the embedded default model (init → save → load → check → generate)");
        var config = new Option<string>("--config") { Description = "preset or config.json", DefaultValueFactory = _ => "flash-tiny" };
        var output = new Option<string>("--out") { Description = "where to write the model folder", DefaultValueFactory = _ => Path.Combine(".wren", "quickstart") };
        command.Add(config); command.Add(output);
        var common = new CommonOptions(command, withDType: false);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            var console = AnsiConsole.Console;
            var cfg = HybridConfig.Load(result.GetValue(config)!);
            string folder = result.GetValue(output)!;
            console.MarkupLine($"[bold]1. init[/] {Markup.Escape(string.Join(" ", cfg.LayerTypes))}");
            using (var fresh = new HybridForCausalLM(cfg, new Placement(TorchSharp.torch.ScalarType.Float32, device)))
            {
                Initialization.Apply(fresh, seed: 0);
                Checkpoint.Save(fresh, folder);
            }
            var footprint = ModelFootprint.Of(cfg);
            console.WriteLine($"   {footprint.Parameters:N0} parameters, {InspectCommand.Bytes(footprint.WeightBytes)} of fp32 weights → {folder}");

            console.MarkupLine("[bold]2. load and check[/] prefill + token-by-token decode against the full forward");
            using var model = Checkpoint.Load(folder, device: device);
            using var tokens = TorchSharp.torch.randint(0, cfg.VocabSize, [2, 24], device: device);
            using var full = Scoring.Logits(model, tokens);
            using var stepped = Scoring.Logits(model, tokens, prefill: 8);
            double diff = (full - stepped).abs().max().item<float>();
            console.WriteLine($"   max |full − prefill/decode| = {diff:E2} over {full.NumberOfElements:N0} logits");
            if (diff > 1e-4 * Math.Max(1, full.abs().max().item<float>())) throw new WrenException("prefill + decode disagrees with the full forward");

            console.MarkupLine("[bold]3. generate[/] (random weights: expect noise, at full speed)");
            var generator = new TextGenerator(model, TokenizerLoader.ForModel(folder, cfg));
            var ids = new[] { Enumerable.Range(1, 16).ToArray(), Enumerable.Range(40, 5).ToArray() };
            int produced = 0;
            foreach (var _ in generator.GenerateIds(ids, new SamplingOptions { MaxNewTokens = 64, Seed = 1, TopK = 50 })) produced++;
            var stats = generator.LastStats;
            console.WriteLine($"   batch of 2 ragged prompts: {stats.PromptTokens} prompt tokens at {stats.PrefillTokensPerSecond:F0} tokens/s, " +
                              $"{produced} generated at {stats.DecodeTokensPerSecond:F0} tokens/s");
            console.MarkupLine("[green]quickstart ok[/] — next: [bold]wren inspect[/], [bold]wren generate --model[/] " + Markup.Escape(folder));
            return 0;
        });
        return command;
    }
}
