using System.CommandLine;
namespace Wren.Cli.Commands;
internal static class InspectCommand
{
    public static Command Create() => new("inspect", "todo");
}
