using System.Diagnostics;
using TorchSharp;
using Wren.Models;
using Wren.Profiling;
using Wren.Training;
using static TorchSharp.torch;

namespace Wren.Bench;

/// <summary>
/// Training throughput of a ~20M-parameter Flash-pattern hybrid at sequence length 512: tokens/s and model FLOP
/// utilization = 6 · params · tokens/s ÷ the fp32 matmul FLOP/s measured in this run, with the step split into
/// forward (per layer type), backward and optimizer, and the peak resident memory.
/// </summary>
public static class TrainBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback) => BenchArgs.Get(args, name, fallback);
        int batch = BenchArgs.Int(args, "--batch", 8), seqLen = BenchArgs.Int(args, "--seq-len", 512);
        int steps = BenchArgs.Int(args, "--steps", 5);
        int hidden = BenchArgs.Int(args, "--hidden", 512), vocab = BenchArgs.Int(args, "--vocab", 8192);
        var config = HybridConfig.Load(Arg("--config", "flash-quick")) with { HiddenSize = hidden, VocabSize = vocab };

        double peak = DeviceFacts.MatmulFlops();
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, 0);
        model.train();
        var parameters = model.parameters().ToList();
        long count = ModelFootprint.Of(config).Parameters;
        using var optimizer = optim.AdamW(parameters, 1e-3, 0.9, 0.95, 1e-8, 0.1);
        var generator = new Generator(1);
        var timings = new LayerTimings(config.NumLayers);
        double forward = 0, backward = 0, update = 0;
        int measured = 0;
        for (int step = -2; step < steps; step++)   // two warm-up steps
        {
            using var scope = NewDisposeScope();
            var tokens = randint(0, vocab, [batch, seqLen + 1], generator: generator);
            var clock = Stopwatch.StartNew();
            Tensor logits;
            using (step >= 0 ? model.Observe(timings) : null)
                logits = model.forward(new LMInput(tokens.narrow(1, 0, seqLen))).Logits;
            var loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens.narrow(1, 1, seqLen).reshape(-1));
            double f = clock.Elapsed.TotalSeconds;
            optimizer.zero_grad();
            loss.backward();
            double b = clock.Elapsed.TotalSeconds - f;
            nn.utils.clip_grad_norm_(parameters, 1.0);
            optimizer.step();
            double u = clock.Elapsed.TotalSeconds - f - b;
            if (step < 0) continue;
            forward += f; backward += b; update += u; measured++;
        }
        peak = Math.Max(peak, DeviceFacts.MatmulFlops());   // measured before and after: the higher is this machine's peak right now
        double stepSeconds = (forward + backward + update) / measured;
        double tokensPerSecond = batch * seqLen / stepSeconds;
        double mfu = 6.0 * count * tokensPerSecond / peak;
        Console.WriteLine($"# training, fp32, {Wren.Runtime.WrenRuntime.Describe()}");
        Console.WriteLine($"# model: {string.Join(" ", config.LayerTypes)}, hidden {hidden}, vocab {vocab}: {count / 1e6:F1}M " +
                          $"parameters; batch {batch} × {seqLen} tokens; {measured} measured steps after 2 warm-up");
        Console.WriteLine($"| tokens/s | step s | fp32 matmul peak (2048³, this run) | model FLOP/s (6·N·tokens/s) | MFU | peak RSS |");
        Console.WriteLine("|---|---|---|---|---|---|");
        Console.WriteLine($"| {tokensPerSecond:F0} | {stepSeconds:F2} | {peak / 1e9:F0} GFLOP/s | " +
                          $"{6.0 * count * tokensPerSecond / 1e9:F0} GFLOP/s | {mfu * 100:F1} % | " +
                          $"{LatencyProfiler.PeakResidentBytes() / 1e9:F2} GB |");
        Console.WriteLine();
        Console.WriteLine("| where the step goes | s/step | share |");
        Console.WriteLine("|---|---|---|");
        double total = forward + backward + update;
        var byType = config.LayerTypes.Select((type, i) => (type, seconds: timings.Seconds[i])).GroupBy(x => x.type).Select(g =>
            (g.Key, Seconds: g.Sum(x => x.seconds)));
        double layers = timings.Seconds.Sum();
        foreach (var (type, seconds) in byType)
            Console.WriteLine($"| forward: {type} layers | {seconds / measured:F3} | {seconds / total * 100:F1} % |");
        Console.WriteLine($"| forward: embedding, meta tokens, final norm, lm_head, loss | {(forward - layers) / measured:F3} | " +
                          $"{(forward - layers) / total * 100:F1} % |");
        Console.WriteLine($"| backward | {backward / measured:F3} | {backward / total * 100:F1} % |");
        Console.WriteLine($"| clip + AdamW step | {update / measured:F3} | {update / total * 100:F1} % |");
        return 0;
    }
}
