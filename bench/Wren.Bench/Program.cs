using Wren.Bench;
using Wren.Runtime;

WrenRuntime.Initialize(threads: Environment.GetEnvironmentVariable("WREN_THREADS") is { } t ? int.Parse(t) : 0);
return args.FirstOrDefault() switch
{
    "decode" => DecodeBenchmark.Run(args.Skip(1).ToArray()),
    "machine" => MachineBenchmark.Run(),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: Wren.Bench decode [--contexts 512,2048,8192] [--tokens N] [--repeats N] [--models flash-300m,llama-300m]\n" +
                            "       Wren.Bench machine      (copy bandwidth, matmul and matrix-vector throughput)");
    return 1;
}
