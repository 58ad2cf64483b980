namespace Wren.Templating;

/// <summary>
/// The Jinja2 environment options that change what a template renders (names as in <c>jinja2.Environment</c>).
/// </summary>
/// <remarks>
/// Hugging Face <c>transformers</c> renders chat templates with <c>trim_blocks=True, lstrip_blocks=True</c>
/// (<see cref="HuggingFaceChat"/>); lm-evaluation-harness renders task fields with <c>undefined=StrictUndefined,
/// keep_trailing_newline=True</c> (<see cref="LmEvaluationHarness"/>); <see cref="Default"/> is a plain
/// <c>jinja2.Environment()</c>.
/// </remarks>
public sealed record JinjaSettings
{
    /// <summary>The first newline after a block tag (<c>%}</c>) or comment (<c>#}</c>) is removed.</summary>
    public bool TrimBlocks { get; init; }

    /// <summary>Spaces and tabs from the start of a line up to a block tag or comment are removed.</summary>
    public bool LstripBlocks { get; init; }

    /// <summary>A single newline at the end of the template is kept (Jinja drops it by default).</summary>
    public bool KeepTrailingNewline { get; init; }

    /// <summary>Using an undefined value for anything but <c>is defined</c> or <c>default</c> is an error.</summary>
    public bool StrictUndefined { get; init; }

    /// <summary>The clock <c>strftime_now(format)</c> reads (local time, as transformers' <c>datetime.now()</c>).</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    public static JinjaSettings Default { get; } = new();

    public static JinjaSettings HuggingFaceChat { get; } = new() { TrimBlocks = true, LstripBlocks = true };

    public static JinjaSettings LmEvaluationHarness { get; } = new() { StrictUndefined = true, KeepTrailingNewline = true };
}
