using System.CommandLine;
namespace Wren.Cli.Commands;
internal static class GenerateCommand
{
    public static Command Create() => new("generate", "todo");
}
