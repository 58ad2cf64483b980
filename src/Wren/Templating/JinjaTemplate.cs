using System.Text;

namespace Wren.Templating;

/// <summary>
/// The subset of Jinja2 that Hugging Face chat templates and lm-evaluation-harness task templates use, written here
/// because no Jinja engine is available as a .NET package on the registry this project builds from (the template engines
/// there, Fluid, DotLiquid, Scriban, Handlebars, are other languages).
/// </summary>
/// <remarks>
/// <para>Context values are plain .NET values: <c>string</c>, <c>bool</c>, <c>long</c>/<c>int</c>, <c>double</c>, <c>null</c>,
/// <c>IReadOnlyList&lt;object?&gt;</c> and <c>IReadOnlyDictionary&lt;string, object?&gt;</c> (a <c>System.Text.Json.JsonElement</c>
/// is accepted too and read as the matching value). Unsupported syntax is a <see cref="WrenException"/> naming the line
/// and column when parsing; <c>raise_exception('…')</c> in a template is a <see cref="WrenException"/> with that text.</para>
/// <para>Supported: <c>{{ }}</c>, <c>{% if/elif/else %}</c>, <c>{% for %}</c> (tuple targets, inline <c>if</c> filter,
/// <c>else</c>, <c>loop.*</c>, <c>break</c>/<c>continue</c>), <c>{% set %}</c> (names, tuples, <c>namespace</c> attributes,
/// blocks), <c>{% macro %}</c> and <c>{% call %}</c>, <c>{% generation %}</c>, comments, <c>-</c>/<c>+</c> whitespace control, trim_blocks,
/// lstrip_blocks; literals (strings with Python escapes, numbers, lists, tuples, dicts), arithmetic, <c>~</c>,
/// comparison chains, <c>in</c>/<c>not in</c>, <c>and/or/not</c>, <c>x if c else y</c>, attribute/index/slice access,
/// calls with keyword arguments; the filters, tests, globals and methods in <see cref="JinjaBuiltins"/>.
/// Not supported (a parse error): template inheritance and inclusion (<c>extends</c>, <c>block</c>, <c>include</c>,
/// <c>import</c>), <c>filter</c>, <c>with</c>, <c>raw</c>, recursive loops, <c>caller</c> arguments, <c>*args</c> in calls, and
/// filters or tests not in the list. String <c>%</c> formatting is a runtime error.</para>
/// <para>A parsed template is immutable: <see cref="Render"/> may run on several threads at once.</para>
/// </remarks>
public sealed class JinjaTemplate
{
    readonly List<Stmt> body;
    readonly JinjaSettings settings;

    JinjaTemplate(List<Stmt> body, JinjaSettings settings)
    {
        this.body = body;
        this.settings = settings;
    }

    /// <summary>Parses a template. Errors: <see cref="WrenException"/> with line, column and the unsupported construct.</summary>
    public static JinjaTemplate Parse(string source) => Parse(source, JinjaSettings.Default);

    /// <summary>Parses a template with the given environment options (e.g. <see cref="JinjaSettings.HuggingFaceChat"/>).
    /// Errors: <see cref="WrenException"/> "template line L, column C: …".</summary>
    public static JinjaTemplate Parse(string source, JinjaSettings settings) => Parse(source, settings, null);

    /// <summary>Parses a template whose literal texts (template data between tags and string constants, after whitespace
    /// control) are rewritten by <paramref name="literal"/>: what <see cref="ChatTemplate"/> uses to mark the control tokens a
    /// template writes itself. Errors: as <see cref="Parse(string, JinjaSettings)"/>.</summary>
    public static JinjaTemplate Parse(string source, JinjaSettings settings, Func<string, string>? literal)
    {
        ArgumentNullException.ThrowIfNull(source);
        string normalized = JinjaLexer.Normalize(source, settings);
        try
        {
            return new JinjaTemplate(JinjaParser.Parse(JinjaLexer.Tokenize(normalized, settings), normalized, literal), settings);
        }
        catch (JinjaSyntaxException e)
        {
            var (line, column) = JinjaLexer.Position(normalized, e.Offset);
            throw new WrenException($"template line {line}, column {column}: {e.Message}");
        }
    }

    /// <summary>Renders with the given variables (undefined names render as empty and are falsy, as in Jinja; with
    /// <see cref="JinjaSettings.StrictUndefined"/> using one is an error). Errors: <see cref="WrenException"/>
    /// "template line L, column C: …" for runtime errors, or the message of <c>raise_exception</c>.</summary>
    public string Render(IReadOnlyDictionary<string, object?> context)
    {
        var globals = new Scope(null, settings.StrictUndefined);
        foreach (var (name, value) in JinjaBuiltins.Globals(settings.Clock)) globals.Set(name, value);
        var scope = globals.Child();
        foreach (var (name, value) in context)
        {
            try
            {
                scope.Set(name, Py.FromDotNet(value));
            }
            catch (JinjaRuntimeException e)
            {
                throw new WrenException($"template variable '{name}': {e.Message}");
            }
        }
        var output = new StringBuilder();
        Stmt.RenderAll(body, scope, output);
        return output.ToString();
    }
}
