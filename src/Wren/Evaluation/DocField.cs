using System.Globalization;
using Wren.Templating;

namespace Wren.Evaluation;

/// <summary>A <c>!function name</c> value in a task file.</summary>
public sealed record FunctionReference(string Name);

/// <summary>
/// One of a task's <c>doc_to_text</c>, <c>doc_to_target</c>, <c>doc_to_choice</c> values, in every form the harness accepts
/// (lm_eval/api/task.py, <c>ConfigurableTask.doc_to_*</c>): an integer, a list, a dict (its values), a field name of the
/// document, a Jinja template, or a built-in function (<see cref="BuiltInFunctions"/>).
/// </summary>
public sealed class DocField
{
    readonly object? literal;
    readonly string? source;
    readonly JinjaTemplate? template;
    readonly Func<IReadOnlyDictionary<string, object?>, object?>? function;

    /// <summary>The value as written in the task file (a string, number, list, dict or <see cref="FunctionReference"/>).</summary>
    public object? Declared { get; }

    DocField(object? declared, object? literal, string? source, JinjaTemplate? template,
             Func<IReadOnlyDictionary<string, object?>, object?>? function)
    {
        Declared = declared;
        this.literal = literal;
        this.source = source;
        this.template = template;
        this.function = function;
    }

    /// <summary>Reads a task-file value; <paramref name="where"/> ("task piqa: doc_to_text") prefixes errors.</summary>
    public static DocField From(object? value, string where) => value switch
    {
        string s => new DocField(s, null, s, IsPlainText(s) ? null : ParseTemplate(s, where), null),
        long or int => new DocField(value, Convert.ToInt64(value, CultureInfo.InvariantCulture), null, null, null),
        List<object?> list => new DocField(value, list, null, null, null),
        Dictionary<string, object?> dict => new DocField(value, dict.Values.ToList(), null, null, null),
        FunctionReference f when BuiltInFunctions.DocFunctions.TryGetValue(f.Name, out var fn) => new DocField(value, null, null, null, fn),
        FunctionReference f => throw new WrenException(
            $"{where}: !function {f.Name} is Python code, which Wren does not run; " +
            $"use a template, a field name or a built-in function ({string.Join(", ", BuiltInFunctions.DocFunctions.Keys)})"),
        _ => throw new WrenException($"{where}: expected a template, a field name, an integer or a list, got {Describe(value)}"),
    };

    /// <summary>Text without Jinja delimiters (or carriage returns, which Jinja rewrites) renders as itself.</summary>
    static bool IsPlainText(string s) => !s.Contains('{') && !s.Contains('\r');

    static JinjaTemplate ParseTemplate(string text, string where)
    {
        try { return JinjaTemplate.Parse(text, JinjaSettings.LmEvaluationHarness); }
        catch (WrenException e) { throw new WrenException($"{where}: {e.Message}", e); }
    }

    static string Describe(object? value) => value is null ? "nothing" : value.GetType().Name;

    /// <summary>
    /// The raw value for <paramref name="doc"/>: a field's value when the string names a field, else the rendered template
    /// (<c>Rendered</c> = true); literals and function results as they are.
    /// </summary>
    public (object? Value, bool Rendered) Raw(IReadOnlyDictionary<string, object?> doc, string where)
    {
        if (function is not null) return (function(doc), false);
        if (source is null) return (literal, false);
        if (doc.TryGetValue(source, out var field)) return (field, false);
        if (template is null) return (source, true);
        try { return (template.Render(doc), true); }
        catch (WrenException e) { throw new WrenException($"{where}: {e.Message}", e); }
    }

    /// <summary>A rendered string that is all digits, when the task has choices, is an index (the harness's literal_eval).</summary>
    public static bool IsIndex(string text) => text.Length > 0 && text.All(char.IsAsciiDigit);
}
