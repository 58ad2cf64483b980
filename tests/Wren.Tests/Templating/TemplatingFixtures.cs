using System.Text.Json;
using Wren.Templating;

namespace Wren.Tests.Templating;

/// <summary>tests/fixtures/templating/cases.json: templates, variables and what Jinja2 itself rendered (generate.py).</summary>
internal static class TemplatingFixtures
{
    public sealed record Case(string Name, JinjaSettings Settings, string Template, JsonElement Variables, string? Expected, string? Error);

    static readonly Lazy<IReadOnlyList<Case>> All = new(Load);

    public static IReadOnlyList<Case> Cases => All.Value;

    public static Case Get(string name) => Cases.Single(c => c.Name == name);

    public static TheoryData<string> Names(string prefix) =>
        new(Cases.Where(c => c.Name.StartsWith(prefix, StringComparison.Ordinal)).Select(c => c.Name));

    public static Dictionary<string, object?> Context(JsonElement variables) =>
        variables.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value);

    /// <summary>The clock generate.py rendered with: 2024-07-06 09:05:03 (local time here is UTC).</summary>
    public sealed class FixedClock : TimeProvider
    {
        public static FixedClock Instance { get; } = new();

        public override DateTimeOffset GetUtcNow() => new(2024, 7, 6, 9, 5, 3, TimeSpan.Zero);

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }

    static IReadOnlyList<Case> Load()
    {
        string path = Path.Combine(TestSupport.RepoRoot, "tests", "fixtures", "templating", "cases.json");
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("name").GetString()!,
            c.GetProperty("settings").GetString() switch
            {
                "hf" => JinjaSettings.HuggingFaceChat with { Clock = FixedClock.Instance },
                "lm-eval" => JinjaSettings.LmEvaluationHarness,
                _ => JinjaSettings.Default,
            },
            c.GetProperty("template").GetString()!,
            c.GetProperty("variables").Clone(),
            c.TryGetProperty("expected", out var expected) ? expected.GetString() : null,
            c.TryGetProperty("error", out var error) ? error.GetString() : null)).ToList();
    }
}
