using Wren.Bench;
using Wren.Profiling;
using Wren.Runtime;

WrenRuntime.Initialize(threads: Environment.GetEnvironmentVariable("WREN_THREADS") is { } t ? int.Parse(t) : 0);
return args.FirstOrDefault() switch
{
    "decode" => DecodeBenchmark.Run(args.Skip(1).ToArray()),
    "train" => TrainBenchmark.Run(args.Skip(1).ToArray()),
    "eval" => EvalBenchmark.Run(args.Skip(1).ToArray()),
    "device" => PrintDevice(),
    _ => Usage(),
};

static int PrintDevice()
{
    var facts = DeviceFacts.Measure();
    Console.WriteLine($"copy bandwidth (read + write, all cores): {facts.CopyBytesPerSecond / 1e9:F1} GB/s");
    Console.WriteLine($"fp32 matmul 2048³ (libtorch):             {facts.MatmulFlopsPerSecond / 1e9:F0} GFLOP/s");
    Console.WriteLine($"fp32 matrix–vector 14336×4096, Wren:      {facts.MatVecBytesPerSecond / 1e9:F1} GB/s of weights");
    Console.WriteLine($"fp32 matrix–vector 14336×4096, libtorch:  {facts.LibtorchMatVecBytesPerSecond / 1e9:F1} GB/s of weights");
    return 0;
}

static int Usage()
{
    Console.Error.WriteLine("usage: Wren.Bench decode [--contexts 512,2048,8192] [--tokens N] [--repeats N] [--models flash-300m,llama-300m]\n" +
                            "       Wren.Bench train [--batch 8] [--seq-len 512] [--steps 5] [--hidden 512] [--vocab 8192]   (training tokens/s and MFU)\n" +
                            "       Wren.Bench eval [--model flash-300m] [--batches 1,2,4,8,16] [--repeats 3] [--limit N]\n" +
                            "                  (four-choice items/s per batch size)\n" +
                            "       Wren.Bench device      (copy bandwidth, matmul and matrix–vector throughput)");
    return 1;
}
