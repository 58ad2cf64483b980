using System.Globalization;

namespace Wren.Bench;

/// <summary>The benchmarks' <c>--name value</c> options and <c>--flag</c> switches.</summary>
static class BenchArgs
{
    /// <summary>The value after <paramref name="name"/> in <paramref name="args"/>, or <paramref name="fallback"/> when absent.</summary>
    public static string Get(string[] args, string name, string fallback) =>
        Array.IndexOf(args, name) is var i && i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;

    /// <summary>The integer after <paramref name="name"/>, or <paramref name="fallback"/>; errors name the option.</summary>
    public static int Int(string[] args, string name, int fallback) =>
        Get(args, name, fallback.ToString(CultureInfo.InvariantCulture)) is var text
        && int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value
            : throw new ArgumentException($"{name} expects an integer, got '{text}'");

    /// <summary>The number after <paramref name="name"/>, or <paramref name="fallback"/>; errors name the option.</summary>
    public static double Number(string[] args, string name, double fallback) =>
        Get(args, name, fallback.ToString(CultureInfo.InvariantCulture)) is var text
        && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && double.IsFinite(value) ? value
            : throw new ArgumentException($"{name} expects a number, got '{text}'");

    /// <summary>
    /// Refuses what the command does not take, before anything runs: an unknown option (a misspelling, or <c>--name=value</c>),
    /// a valued option without its value, a value after a switch, a stray word. Errors: <see cref="BenchUsageException"/>.
    /// </summary>
    /// <param name="valued">Options that take a value.</param>
    /// <param name="switches">Options that take none.</param>
    public static void Check(string command, string[] args, IReadOnlyCollection<string> valued, IReadOnlyCollection<string> switches)
    {
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (valued.Contains(arg))
            {
                if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    throw new BenchUsageException($"{arg} needs a value");
                i++;
            }
            else if (!switches.Contains(arg))
                throw new BenchUsageException(arg.StartsWith("--", StringComparison.Ordinal)
                    ? $"{command} does not take {arg}" + (arg.Split('=', 2) is [var name, _]
                        ? switches.Contains(name) ? $" (write '{name}')" : valued.Contains(name) ? $" (write '{name} VALUE')" : ""
                        : "")
                    : i > 0 && switches.Contains(args[i - 1]) ? $"{args[i - 1]} takes no value, got '{arg}'"
                    : $"unexpected '{arg}'");
        }
    }
}

/// <summary>A command line the benchmark does not take (bad syntax: exit code 1).</summary>
sealed class BenchUsageException(string message) : Exception(message);
