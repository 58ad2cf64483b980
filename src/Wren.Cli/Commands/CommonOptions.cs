using System.CommandLine;
using TorchSharp;
using Wren.Modules;
using Wren.Runtime;

namespace Wren.Cli.Commands;

/// <summary>Options shared by every command that runs a model.</summary>
internal sealed class CommonOptions
{
    public Option<string> Device { get; } = new("--device") { Description = "cpu or cuda[:N]", DefaultValueFactory = _ => "cpu" };
    public Option<int> Threads { get; } = new("--threads")
    {
        Description = $"intra-op CPU threads, 0 (one per core) to {WrenRuntime.MaxThreads}",
        DefaultValueFactory = _ => 0,
    };
    public Option<string> DType { get; } = new("--dtype")
    {
        Description = "weights in float32, bfloat16, int8, q4 or q4k (activations and states stay float32)",
        DefaultValueFactory = _ => "float32",
    };

    public CommonOptions(Command command, bool withDType = true)
    {
        DType.AcceptOnlyFromAmong("float32", "bfloat16", "int8", "q4", "q4k");
        Threads.Validators.Add(result =>
        {
            int threads = result.GetValueOrDefault<int>();
            if (threads is < 0 or > WrenRuntime.MaxThreads)
                result.AddError($"--threads must be 0 (one per core) to {WrenRuntime.MaxThreads}, got {threads}");
        });
        command.Add(Device);
        command.Add(Threads);
        if (withDType) command.Add(DType);
    }

    /// <summary>A zero or negative value of each option is a syntax error naming it ("--steps must be positive, got -5").</summary>
    public static void MustBePositive(params Option[] options)
    {
        foreach (var option in options)
            option.Validators.Add(result =>
            {
                foreach (var token in result.Tokens)
                    if (double.TryParse(token.Value, System.Globalization.CultureInfo.InvariantCulture, out double value) && value <= 0)
                        result.AddError($"{option.Name} must be positive, got {token.Value}");
            });
    }

    public torch.Device Initialize(ParseResult result) =>
        WrenRuntime.Initialize(result.GetValue(Device)!, result.GetValue(Threads));

    /// <summary>How the model's weight matrices are stored (<c>--dtype</c>).</summary>
    public WeightPrecision Precision(ParseResult result) => WeightPrecisions.Parse(result.GetValue(DType)!);
}
