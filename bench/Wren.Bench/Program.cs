using Wren.Bench;
using Wren.Runtime;

WrenRuntime.Initialize(threads: Environment.GetEnvironmentVariable("WREN_THREADS") is { } t ? int.Parse(t) : 0);
return args.FirstOrDefault() switch
{
    "decode" => DecodeBenchmark.Run(args.Skip(1).ToArray()),
    "train" => TrainBenchmark.Run(args.Skip(1).ToArray()),
    "load" => LoadBenchmark.Run(args.Skip(1).ToArray()),
    "load-one" => LoadBenchmark.One(args.Skip(1).ToArray()),
    "eval" => EvalBenchmark.Run(args.Skip(1).ToArray()),
    "device" => DeviceBenchmark.Run(args.Skip(1).ToArray()),
    "serve" => ServeBenchmark.Run(args.Skip(1).ToArray()),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: Wren.Bench decode [--contexts 512,2048,8192] [--tokens N] [--repeats N] [--models flash-300m,llama-300m]
                                 [--dtype float32|bfloat16|int8|all] [--busy N]   (busy-core slowdown)
                                 [--unfused]   (also time the decode with the fused layer form off, alternately)
               Wren.Bench load [--model flash-1b] [--dir D] [--dtype all]   (load time and peak memory per precision)
               Wren.Bench train [--batch 8] [--seq-len 512] [--steps 5] [--hidden 512] [--vocab 8192]   (training tokens/s and MFU)
               Wren.Bench serve [--models flash-300m,llama-300m] [--streams 1,4,16,64] [--prompt 256]
                                [--new 128] [--shared 1024] [--requests 2] [--chunk 128] [--max-memory-gb G]
                                [--max-batched-tokens 256] [--json-schema FILE]
                                (HTTP serving: tokens/s, TTFT, ITL)
               Wren.Bench eval [--model flash-300m] [--batches 1,2,4,8,16] [--repeats 3] [--limit N]
                               (four-choice items/s per batch size)
               Wren.Bench device [--rounds 12] [--rows 14336] [--cols 4096]
                                 (copy bandwidth and matrix–vector GB/s per precision, alternately; matmul)
        """);
    return 1;
}
