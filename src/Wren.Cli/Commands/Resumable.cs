using System.CommandLine;

namespace Wren.Cli.Commands;

/// <summary>A Ctrl-C during a resumable command; its message names the exact command that continues the work.</summary>
internal sealed class ResumableCancellation(string message) : OperationCanceledException(message);

/// <summary>Runs a long, resumable piece of work and turns a cancellation into one that says how to resume.</summary>
internal static class Resumable
{
    /// <summary>Runs <paramref name="body"/>; on cancellation throws a <see cref="ResumableCancellation"/> naming <paramref
    /// name="resume"/>.</summary>
    public static T Run<T>(string resume, Func<T> body)
    {
        try { return body(); }
        catch (OperationCanceledException e) when (e is not ResumableCancellation)
        {
            throw new ResumableCancellation($"cancelled; to resume, run: {resume}");
        }
    }

    /// <summary>The command as it was typed (<c>wren</c> and every token, quoted where needed).</summary>
    public static string SameCommand(ParseResult result) => Command(result.Tokens.Select(t => t.Value));

    /// <summary><c>wren</c> and the given arguments, quoted for a POSIX shell where needed.</summary>
    public static string Command(IEnumerable<string> arguments) => string.Join(" ", arguments.Prepend("wren").Select(Quote));

    static string Quote(string argument) =>
        argument.Length > 0 && argument.All(c => char.IsLetterOrDigit(c)
            || "-_./:=@,+".Contains(c)) ? argument : $"'{argument.Replace("'", "'\\''")}'";
}
