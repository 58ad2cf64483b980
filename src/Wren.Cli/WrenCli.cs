using System.CommandLine;
using Spectre.Console;
using Wren.Cli.Commands;

namespace Wren.Cli;

/// <summary>The command tree; tests run argument arrays through <see cref="RunAsync"/>.</summary>
public static class WrenCli
{
    public static RootCommand Build() => new("Wren: design, train, measure and serve latency-optimal hybrid small language models")
    {
        QuickstartCommand.Create(),
        InitCommand.Create(),
        InspectCommand.Create(),
        GenerateCommand.Create(),
        LogitsCommand.Create(),
        EvalCommand.Create(),
        ProfileCommand.Create(),
        AccuracyCommand.Create(),
        ConvertCommand.Create(),
        DataCommands.CreateTokenizer(),
        DataCommands.CreateData(),
        TrainCommand.Create(),
        ExperimentCommand.Create(),
        SearchCommands.Create(),
        ScalingCommand.Create(),
        ServeCommand.Create(),
    };

    /// <summary>Exit codes: 0 success, 1 bad arguments (System.CommandLine), 2 bad input (a clear message), 130 cancelled
    /// (Ctrl-C).</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        try
        {
            return await Build().Parse(args).InvokeAsync(new() { EnableDefaultExceptionHandler = false });
        }
        catch (WrenException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException e)
        {
            error.WriteLine(e is ResumableCancellation ? e.Message : "cancelled");
            return 130;
        }
    }
}
