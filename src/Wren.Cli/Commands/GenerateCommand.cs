using System.CommandLine;
using Wren.Checkpoints;
using Wren.Constraints;
using Wren.Inference;
using Wren.Models;
using Wren.Tokenization;

namespace Wren.Cli.Commands;

/// <summary><c>wren generate</c>: streams text, then prints prefill and decode speed.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var command = new Command("generate", "Generate text from a model folder, streaming token by token");
        var model = new Option<string>("--model") { Description = "model folder", Required = true };
        var prompt = new Option<string[]>("--prompt")
        {
            Description = "prompt text; repeat for a batch",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 128 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8 };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens (0 = off)", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "nucleus sampling mass (1 = off)", DefaultValueFactory = _ => 1.0 };
        var penalty = new Option<double>("--repetition-penalty")
        {
            Description = "penalty on repeated tokens (1 = off)",
            DefaultValueFactory = _ => 1.0,
        };
        var seed = new Option<ulong?>("--seed") { Description = "sampling seed" };
        var stop = new Option<string[]>("--stop") { Description = "stop string; repeatable" };
        var stopToken = new Option<int[]>("--stop-token")
        {
            Description = "stop token id; repeatable (the tokenizer's end-of-text id is always one)",
        };
        var jsonSchema = new Option<string?>("--json-schema")
        {
            Description = "constrain the output to JSON valid against this JSON Schema file",
        };
        var grammar = new Option<string?>("--grammar")
        {
            Description = "constrain the output to this GBNF grammar file (llama.cpp's format)",
        };
        foreach (var o in new Option[] { model, prompt, maxNew, temperature, topK, topP, penalty, seed, stop, stopToken, jsonSchema,
                                         grammar })
            command.Add(o);
        CommonOptions.MustBePositive(maxNew);
        var common = new CommonOptions(command);
        command.SetAction(result =>
        {
            var device = common.Initialize(result);
            string folder = result.GetValue(model)!;
            using var lm = HybridForCausalLM.FromPretrained(folder, common.Precision(result), device);
            var tokenizer = TokenizerLoader.ForModel(folder, lm.Config);
            var stopIds = (result.GetValue(stopToken) ?? []).ToList();
            if (tokenizer.EndOfTextId is { } eot) stopIds.Add(eot);
            var options = new SamplingOptions
            {
                MaxNewTokens = result.GetValue(maxNew), Temperature = result.GetValue(temperature), TopK = result.GetValue(topK),
                TopP = result.GetValue(topP), RepetitionPenalty = result.GetValue(penalty), Seed = result.GetValue(seed),
                StopStrings = result.GetValue(stop) ?? [], StopTokenIds = stopIds,
                Grammar = GrammarFiles.Load(result.GetValue(jsonSchema), result.GetValue(grammar)),
            };
            var prompts = result.GetValue(prompt)!;
            var generator = new TextGenerator(lm, tokenizer);
            var completions = prompts.Select(_ => new System.Text.StringBuilder()).ToArray();
            var stream = generator.Generate(prompts, options);   // checks the options before anything is printed
            if (prompts.Length == 1) Console.Write(prompts[0]);
            foreach (var token in stream)
            {
                if (prompts.Length == 1) { Console.Write(token.Text); Console.Out.Flush(); }
                else completions[token.Row].Append(token.Text);
            }
            if (prompts.Length == 1) Console.WriteLine();
            else for (int b = 0; b < prompts.Length; b++) Console.WriteLine($"[{b}] {prompts[b]}{completions[b]}");
            var stats = generator.LastStats;
            Console.Error.WriteLine($"tokenizer: {tokenizer.Name}");
            Console.Error.WriteLine($"prefill: {stats.PromptTokens} tokens in {stats.PrefillSeconds * 1000:F0} ms " +
                                    $"({stats.PrefillTokensPerSecond:F1} tokens/s); " +
                                    $"decode: {stats.GeneratedTokens} tokens in {stats.DecodeSeconds * 1000:F0} ms " +
                                    $"({stats.DecodeTokensPerSecond:F1} tokens/s)");
            return 0;
        });
        return command;
    }
}
