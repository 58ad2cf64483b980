using System.CommandLine;
namespace Wren.Cli.Commands;
internal static class InitCommand
{
    public static Command Create() => new("init", "todo");
}
