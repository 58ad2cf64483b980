using Wren;
using Wren.Bench;
using Wren.Runtime;

WrenRuntime.Initialize(threads: Environment.GetEnvironmentVariable("WREN_THREADS") is { } t ? int.Parse(t) : 0);
// Each command's options: those that take a value, then the switches. A command line with anything else is refused
// (load-one, the child process of load, takes a folder and a precision).
var commands = new Dictionary<string, (Func<string[], int> Run, string[]? Valued, string[] Switches)>
{
    ["decode"] = (DecodeBenchmark.Run, ["--contexts", "--tokens", "--repeats", "--models", "--dtype", "--busy", "--prefill",
                                        "--llama-bench", "--gguf"], ["--unfused"]),
    ["train"] = (TrainBenchmark.Run, ["--batch", "--seq-len", "--steps", "--hidden", "--vocab", "--config"], []),
    ["load"] = (LoadBenchmark.Run, ["--model", "--dir", "--dtype"], []),
    ["load-one"] = (LoadBenchmark.One, null, []),
    ["eval"] = (EvalBenchmark.Run, ["--model", "--batches", "--repeats", "--limit"], []),
    ["device"] = (DeviceBenchmark.Run, ["--rounds", "--rows", "--cols"], []),
    ["matmul"] = (MatMulBenchmark.Run, ["--shapes", "--inputs", "--rounds"], []),
    ["serve"] = (ServeBenchmark.Run, ServeBenchmark.Valued, ["--ignore-eos"]),
    ["throughput"] = (ThroughputBenchmark.Run, ["--models", "--contexts", "--max-memory-gb", "--tokens", "--repeats"], []),
};
if (args.Length == 0 || !commands.TryGetValue(args[0], out var command)) return Usage();
var rest = args.Skip(1).ToArray();
try
{
    if (command.Valued is { } valued) BenchArgs.Check(args[0], rest, valued, command.Switches);
    return command.Run(rest);
}
catch (BenchUsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}; see 'Wren.Bench' for usage");   // bad syntax: one line, exit 1
    return 1;
}
catch (Exception e) when (e is ArgumentException or FormatException or OverflowException or InvalidOperationException
                           or FileNotFoundException or WrenException)
{
    Console.Error.WriteLine($"error: {e.Message}");   // bad options, or a llama-bench that failed: one line, exit 2
    return 2;
}

static int Usage()
{
    Console.Error.WriteLine("""
        usage: Wren.Bench decode [--contexts 512,2048,8192] [--tokens N] [--repeats N] [--models flash-300m,llama-300m]
                                 [--dtype float32|bfloat16|int8|all] [--busy N]   (busy-core slowdown)
                                 [--unfused]   (also time the decode with the fused layer form off, alternately)
                                 [--prefill N]   (N-token prefill tokens/s and GFLOP/s against the FMA peak)
                                 [--llama-bench PATH --gguf llama-300m:float32=F.gguf[,…]]   (llama.cpp's rows beside)
               Wren.Bench load [--model flash-1b] [--dir D] [--dtype all]   (load time and peak memory per precision)
               Wren.Bench train [--batch 8] [--seq-len 512] [--steps 5] [--hidden 512] [--vocab 8192]   (training tokens/s and MFU)
               Wren.Bench serve [--dataset random|prefix-repetition|multi-turn] [--num-prompts 32] [--seed 0]
                                [--request-rate inf|R[,R…]] [--max-concurrency N[,N…]] [--slo ttft=MS,tpot=MS,e2el=MS]
                                [--out FILE.json] [--json-schema FILE] [--ignore-eos]
                                [--random-input-len 256] [--random-output-len 128] [--random-range-ratio 0]
                                [--prefix-repetition-prefix-len 1024] [--prefix-repetition-suffix-len 256]
                                [--prefix-repetition-num-prefixes 4] [--prefix-repetition-output-len 128]
                                [--multi-turn-turns 4] [--multi-turn-input-len 256] [--multi-turn-output-len 64]
                                in-process wren server: [--model flash-300m] [--max-batch 64] [--max-memory-gb G]
                                                        [--chunk 64] [--max-batched-tokens 80]
                                                        [--prefix-cache-mb 512] [--prefix-block 128]
                                any OpenAI-compatible server instead: [--target URL] [--target-model NAME]
                                (vllm bench serve's metrics over loopback HTTP: TTFT, TPOT, ITL, E2EL, throughput, goodput)
               Wren.Bench throughput [--models flash-300m,llama-300m] [--contexts 2048,8192,32768] [--max-memory-gb 6]
                                     [--tokens 16] [--repeats 3]
                                (decode tokens/s with the most streams that fit the budget, per input length)
               Wren.Bench eval [--model flash-300m] [--batches 1,2,4,8,16] [--repeats 3] [--limit N]
                               (four-choice items/s per batch size)
               Wren.Bench device [--rounds 12] [--rows 14336] [--cols 4096]
                                 (copy bandwidth and matrix–vector GB/s per precision, alternately; matmul)
               Wren.Bench matmul [--shapes 4096x1024,1024x4096] [--inputs 1,4,16,32,64,128,512] [--rounds 9]
                                 (fp32 projections, Wren vs libtorch GEMM alternately; GFLOP/s and share of the FMA peak)
        """);
    return 1;
}
