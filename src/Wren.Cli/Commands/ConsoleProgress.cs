using Spectre.Console;

namespace Wren.Cli.Commands;

/// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> would post them to the thread pool).</summary>
internal sealed class Callback<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>Progress shown in a Spectre status line, reported synchronously on the measuring thread.</summary>
internal sealed class StatusProgress(StatusContext status) : IProgress<string>
{
    public void Report(string value) => status.Status(Markup.Escape(value));
}
