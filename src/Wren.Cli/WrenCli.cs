using System.CommandLine;
using System.CommandLine.Parsing;
using Spectre.Console;
using Wren.Cli.Commands;

namespace Wren.Cli;

/// <summary>The command tree; tests run argument arrays through <see cref="RunAsync"/>.</summary>
public static partial class WrenCli
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

    /// <summary>Exit codes: 0 success, 1 bad arguments (one line, with a suggestion), 2 bad input or files (a clear message),
    /// 130 cancelled (Ctrl-C).</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        // Output that goes to a file or a pipe is not wrapped (Spectre.Console assumes 80 columns when it cannot ask a terminal).
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 4096;   // longer than any path (PATH_MAX)
        try
        {
            var parse = Build().Parse(args);
            if (SyntaxError(parse) is { } message)
            {
                error.WriteLine($"error: {message}");
                return 1;
            }
            return await parse.InvokeAsync(new() { EnableDefaultExceptionHandler = false });
        }
        catch (WrenException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");   // a file that cannot be read or written: bad input, not a crash
            return 2;
        }
        catch (OperationCanceledException e)
        {
            error.WriteLine(e is ResumableCancellation ? e.Message : "cancelled");
            return 130;
        }
    }

    /// <summary>
    /// The first problem with the command line as one line: an unknown option (also one a file argument swallowed, such as
    /// <c>--vocab</c>) with the closest known option, or System.CommandLine's own message (missing or invalid values).
    /// A command group given without a subcommand keeps System.CommandLine's help instead.
    /// </summary>
    static string? SyntaxError(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        string help = $"see 'wren {string.Join(' ', Path(parse.CommandResult))} --help'".Replace("wren  ", "wren ");
        var swallowed = parse.CommandResult.Children.OfType<ArgumentResult>().SelectMany(a => a.Tokens)
            .Select(t => t.Value).Where(v => v.StartsWith("--", StringComparison.Ordinal) && !File.Exists(v) && !Directory.Exists(v));
        if (parse.UnmatchedTokens.Concat(swallowed).FirstOrDefault(t => t.StartsWith('-')) is { } unknown)
        {
            var known = Options(parse.CommandResult).ToList();
            return $"unknown option '{unknown}'" + (Closest(unknown, known) is { } near ? $" (did you mean {near}?)" : "") + $"; {help}";
        }
        if (parse.UnmatchedTokens.FirstOrDefault() is { } extra) return $"unexpected argument '{extra}'; {help}";
        if (parse.Errors.Count == 0 || (command.Subcommands.Count > 0 && command.Action is null)) return null;
        return $"{Describe(parse.Errors[0]).TrimEnd('.')}; {help}";
    }

    /// <summary>A parse error in the user's terms: "--seed expects a non-negative integer, got 'abc'" instead of the .NET type
    /// name, and a list of allowed values on one line.</summary>
    static string Describe(ParseError error)
    {
        var option = (error.SymbolResult as OptionResult ?? error.SymbolResult?.Parent as OptionResult)?.Option;
        if (option is null) return error.Message.ReplaceLineEndings(" ");
        var type = option.ValueType.IsArray ? option.ValueType.GetElementType()! : option.ValueType;
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (CannotParse().Match(error.Message) is { Success: true } bad)
        {
            string expected = Type.GetTypeCode(type) switch
            {
                TypeCode.Byte or TypeCode.UInt16 or TypeCode.UInt32 or TypeCode.UInt64 => "a non-negative integer",
                TypeCode.SByte or TypeCode.Int16 or TypeCode.Int32 or TypeCode.Int64 => "an integer",
                TypeCode.Single or TypeCode.Double or TypeCode.Decimal => "a number",
                TypeCode.Boolean => "true or false",
                _ => $"a {type.Name.ToLowerInvariant()}",
            };
            return $"{option.Name} expects {expected}, got '{bad.Groups[1].Value}'";
        }
        if (NotAmong().Match(error.Message) is { Success: true } among)
        {
            var allowed = among.Groups[2].Value.Split('\n', StringSplitOptions.TrimEntries);
            return $"{option.Name} must be one of {string.Join(", ", allowed)}, got '{among.Groups[1].Value}'";
        }
        return error.Message.ReplaceLineEndings(" ");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^Cannot parse argument '(.*)' for option '.*' as expected type")]
    private static partial System.Text.RegularExpressions.Regex CannotParse();

    [System.Text.RegularExpressions.GeneratedRegex(@"^Argument '(.*)' not recognized\. Must be one of:\s*(.*)$",
                                                   System.Text.RegularExpressions.RegexOptions.Singleline)]
    private static partial System.Text.RegularExpressions.Regex NotAmong();

    static IEnumerable<string> Path(SymbolResult? result)
    {
        var names = new List<string>();
        for (var r = result as CommandResult; r is not null && r.Parent is not null; r = r.Parent as CommandResult)
            names.Insert(0, r.Command.Name);
        return names;
    }

    static IEnumerable<string> Options(CommandResult result) =>
        result.Command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal));

    /// <summary>
    /// The option a mistyped one most likely meant: the only option it is a prefix of, else the nearest within two edits
    /// (Levenshtein distance, written here: System.CommandLine's own typo correction is not public).
    /// </summary>
    static string? Closest(string typed, IReadOnlyList<string> options)
    {
        var extending = options.Where(o => o.StartsWith(typed, StringComparison.Ordinal)).ToList();
        if (extending.Count == 1) return extending[0];
        return options.Select(o => (Option: o, Distance: Distance(typed, o))).Where(x => x.Distance <= 2)
            .OrderBy(x => x.Distance).Select(x => x.Option).FirstOrDefault();
    }

    static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            previous = current;
        }
        return previous[b.Length];
    }
}
