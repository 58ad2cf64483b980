using Wren.Evaluation;
using Wren.Models;
using Wren.Profiling;
using Wren.Tokenization;

namespace Wren.Bench;

/// <summary>
/// Evaluation throughput: items per second of a 4-choice task (the shipped tiny ARC-Easy items, byte tokens) on a
/// random-weight model, per batch size, measured interleaved (every repeat runs every batch size in turn) with an empty
/// request cache each time, after one warm-up item; the median over repeats and the ratio to batch 1.
/// </summary>
public static class EvalBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        string preset = Arg("--model", "flash-300m");
        var batches = Arg("--batches", "1,2,4,8,16").Split(',').Select(int.Parse).ToArray();
        int repeats = BenchArgs.Int(args, "--repeats", 3);
        int? limit = Arg("--limit", "") is { Length: > 0 } ? BenchArgs.Int(args, "--limit", 0) : null;

        var config = HybridConfig.Load(preset);
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, 0);
        model.eval();
        var tokenizer = new ByteTokenizer(config.VocabSize);
        var task = TaskFiles.Resolve(["tiny/tiny_arc_easy"])[0];
        var seconds = batches.ToDictionary(b => b, _ => new List<double>());
        int items = 0;
        Evaluator.Run(model, tokenizer, new EvalOptions([task], Limit: 1));   // warm-up
        for (int r = 0; r < repeats; r++)
            foreach (int batch in batches)
            {
                var report = Evaluator.Run(model, tokenizer, new EvalOptions([task], Limit: limit, BatchSize: batch));
                seconds[batch].Add(report.Seconds);
                items = report.Tasks[0].Documents;
            }
        Console.WriteLine($"# eval throughput, {preset} (random weights, fp32), {items} four-choice items (tiny ARC-Easy, byte tokens), " +
                          $"median of {repeats} interleaved repeats; {Wren.Runtime.WrenRuntime.Describe()}");
        Console.WriteLine("| batch size | items/s | requests/s | × batch 1 |");
        Console.WriteLine("|---:|---:|---:|---:|");
        double baseline = items / Median(seconds[batches[0]]);
        foreach (int batch in batches)
        {
            double perSecond = items / Median(seconds[batch]);
            Console.WriteLine($"| {batch} | {perSecond:F2} | {perSecond * 4:F1} | {perSecond / baseline:F2} |");
        }
        return 0;
    }

    static double Median(List<double> values) => Measurement.Of(values).Median;
}
