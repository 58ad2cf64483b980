using Wren.Templating;

namespace Wren.Tests.Templating;

public class JinjaTemplateTests
{
    public static TheoryData<string> ReferenceCases => TemplatingFixtures.Names("");

    /// <summary>Every fixture case renders exactly what Jinja2 3.1 rendered with the same settings, or fails with its message.</summary>
    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void Renders_what_Jinja2_renders(string name)
    {
        var c = TemplatingFixtures.Get(name);
        var template = JinjaTemplate.Parse(c.Template, c.Settings);
        var context = TemplatingFixtures.Context(c.Variables);
        if (c.Error is null)
        {
            Assert.Equal(c.Expected, template.Render(context));
            return;
        }
        var e = Assert.Throws<WrenException>(() => template.Render(context));
        Assert.EndsWith(c.Error, e.Message);
    }

    [Fact]
    public void Raise_exception_is_a_WrenException_with_exactly_the_message()
    {
        var template = JinjaTemplate.Parse("{{ raise_exception('Roles must alternate: ' ~ n) }}");
        var e = Assert.Throws<WrenException>(() => template.Render(new Dictionary<string, object?> { ["n"] = 3 }));
        Assert.Equal("Roles must alternate: 3", e.Message);
    }

    [Fact]
    public void The_one_argument_Parse_uses_default_settings()
    {
        // Jinja's defaults: no trim_blocks, no lstrip_blocks, the template's final newline dropped.
        var template = JinjaTemplate.Parse("  {% if true %}\nx{% endif %}\n");
        Assert.Equal("  \nx", template.Render(new Dictionary<string, object?>()));
    }

    [Fact]
    public void Context_accepts_dotnet_collections_and_numbers()
    {
        var template = JinjaTemplate.Parse("{{ xs | join(',') }} {{ d.k }} {{ n + 1 }} {{ f / 2 }} {{ xs[1:] }}");
        var context = new Dictionary<string, object?>
        {
            ["xs"] = new[] { 1, 2, 3 },
            ["d"] = new Dictionary<string, string> { ["k"] = "v" },
            ["n"] = 41,
            ["f"] = 1.5f,
        };
        Assert.Equal("1,2,3 v 42 0.75 [2, 3]", template.Render(context));
    }

    [Theory]
    [InlineData("{% include 'other.jinja' %}", "template line 1, column 4: unsupported Jinja tag '{% include %}'")]
    [InlineData("a\n{% extends 'base' %}", "template line 2, column 4: unsupported Jinja tag '{% extends %}'")]
    [InlineData("{% filter upper %}x{% endfilter %}", "template line 1, column 4: unsupported Jinja tag '{% filter %}'")]
    [InlineData("{% call(x) m() %}{% endcall %}", "template line 1, column 8: unsupported Jinja construct: arguments for caller()")]
    [InlineData("line 1\n  {{ x | frobnicate }}", "template line 2, column 10: unknown filter 'frobnicate'")]
    [InlineData("{{ x is shiny }}", "template line 1, column 9: unknown test 'shiny'")]
    [InlineData("{% for x in xs recursive %}{% endfor %}", "template line 1, column 16: unsupported Jinja construct: recursive for loops")]
    [InlineData("{{ f(*args) }}", "template line 1, column 6: unsupported Jinja construct: *args/**kwargs in a call")]
    [InlineData("{% frobnicate %}", "template line 1, column 4: unknown tag '{% frobnicate %}'")]
    [InlineData("{% if x %}\nyes",
        "template line 2, column 4: unexpected end of template; expected '{% elif %}' or '{% else %}' or '{% endif %}'")]
    [InlineData("{% endfor %}", "template line 1, column 4: unexpected '{% endfor %}'")]
    [InlineData("{{ 'open }}", "template line 1, column 4: unterminated string literal")]
    [InlineData("x\n\n   {{ a + }}", "template line 3, column 11: unexpected end of output tag '}}'")]
    [InlineData("{{ a ", "template line 1, column 1: missing end of output tag '}}'")]
    [InlineData("{# never closed", "template line 1, column 1: missing end of comment tag '#}'")]
    [InlineData("{{ a ? b }}", "template line 1, column 6: unexpected character '?'")]
    [InlineData("{{ (a }}", "template line 1, column 7: unexpected '}'")]
    [InlineData("{% set x | upper %}a{% endset %}", "template line 1, column 10: unsupported Jinja construct: filters on a block set")]
    public void Unsupported_or_broken_syntax_names_line_column_and_construct(string source, string message)
    {
        var e = Assert.Throws<WrenException>(() => JinjaTemplate.Parse(source));
        Assert.StartsWith(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("ok\n{{ 1 + 'a' }}", "template line 2, column 1: unsupported operand type(s) for +: 'int' and 'str'")]
    [InlineData("{{ 'a' + {} }}", "template line 1, column 1: can only concatenate str (not \"dict\") to str")]
    [InlineData("{{ '%s' % 'x' }}", "template line 1, column 1: unsupported operand type(s) for %: 'str' and 'str'")]
    [InlineData("{% for x in 5 %}{% endfor %}", "template line 1, column 1: 'int' object is not iterable")]
    [InlineData("{% set a, b = [1] %}", "template line 1, column 1: cannot unpack 1 values into 2 names")]
    [InlineData("{% set s = 'x' %}{% set s.a = 1 %}", "template line 1, column 18: cannot assign attribute on non-namespace object 's'")]
    [InlineData("{{ 1 // 0 }}", "template line 1, column 1: division by zero")]
    public void Runtime_errors_name_the_statement(string source, string message)
    {
        var e = Assert.Throws<WrenException>(() => JinjaTemplate.Parse(source).Render(new Dictionary<string, object?>()));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Strict_undefined_fails_only_on_use()
    {
        var template = JinjaTemplate.Parse("{{ x is defined }} {{ x | default('d') }}", JinjaSettings.LmEvaluationHarness);
        Assert.Equal("False d", template.Render(new Dictionary<string, object?>()));
        var strict = JinjaTemplate.Parse("{% if x %}y{% endif %}", JinjaSettings.LmEvaluationHarness);
        Assert.EndsWith("'x' is undefined", Assert.Throws<WrenException>(() => strict.Render(new Dictionary<string, object?>())).Message);
    }

    [Fact]
    public void Generation_block_renders_its_body()
    {
        // transformers' AssistantTracker extension: {% generation %} only marks the assistant's text.
        var template = JinjaTemplate.Parse("a{% generation %}{{ x }}{% endgeneration %}b", JinjaSettings.HuggingFaceChat);
        Assert.Equal("aXb", template.Render(new Dictionary<string, object?> { ["x"] = "X" }));
    }
}
