namespace Wren.Templating;

/// <summary>
/// The subset of Jinja2 that Hugging Face chat templates and lm-evaluation-harness task templates use, written here
/// because no Jinja engine is available as a .NET package on the registry this project builds from.
/// </summary>
/// <remarks>
/// Context values are plain .NET values: <c>string</c>, <c>bool</c>, <c>long</c>/<c>int</c>, <c>double</c>, <c>null</c>,
/// <c>IReadOnlyList&lt;object?&gt;</c> and <c>IReadOnlyDictionary&lt;string, object?&gt;</c> (a <c>System.Text.Json.JsonElement</c>
/// is accepted too and read as the matching value). Unsupported syntax is a <see cref="WrenException"/> naming the line
/// and column when parsing; <c>raise_exception('…')</c> in a template is a <see cref="WrenException"/> with that text.
/// </remarks>
public sealed class JinjaTemplate
{
    JinjaTemplate() { }

    /// <summary>Parses a template. Errors: <see cref="WrenException"/> with line, column and the unsupported construct.</summary>
    public static JinjaTemplate Parse(string source) => throw new NotImplementedException("being written: issue 11 part 3");

    /// <summary>Renders with the given variables (undefined names render as empty and are falsy, as in Jinja).</summary>
    public string Render(IReadOnlyDictionary<string, object?> context) => throw new NotImplementedException();
}
