using Wren.Models;
using Wren.Training;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Training;

/// <summary>The operator study's pure parts: design parsing, settings checks, the Pareto frontier and ranks.</summary>
public class OperatorStudyTests
{
    [Fact]
    public void A_two_operator_design_alternates_its_mixers_and_unknown_names_are_refused()
    {
        Assert.Equal(["deltanet", "m2", "deltanet", "m2", "deltanet"], StudyDesign.Mixers("deltanet+m2", 5));
        Assert.Equal(["hymba", "hymba"], StudyDesign.Mixers("hymba", 2));
        Assert.Contains("unknown mixer 'nope'", Assert.Throws<WrenException>(() => StudyDesign.Mixers("a+nope", 4)).Message);
        Assert.Contains("'op' or 'op1+op2'", Assert.Throws<WrenException>(() => StudyDesign.Mixers("a+m2+gla", 4)).Message);
        Assert.Contains("names a twice", Assert.Throws<WrenException>(() => StudyDesign.Mixers("a+a", 4)).Message);
    }

    [Fact]
    public void The_frontier_keeps_points_no_other_beats_in_both_and_ranks_share_ties()
    {
        // (latency, perplexity): (3, 6) is beaten by (2, 5); the two (2, 5) tie and both stay.
        var points = new List<(double, double)> { (1, 10), (2, 5), (3, 6), (0.5, 20), (2, 5) };
        Assert.Equal([0, 1, 3, 4], OperatorStudyReport.Frontier(points).Order());
        Assert.Equal([3, 1, 3, 2], OperatorStudyReport.Ranks([3.0, 1.0, 3.0, 2.0]));
    }

    [Theory]
    [InlineData("operators")]
    [InlineData("operators-small")]
    public void Built_in_settings_load_and_name_only_known_designs(string name)
    {
        var settings = OperatorStudySettings.Load(name);
        Assert.Equal(15, settings.Designs.Count);
        foreach (var design in settings.Designs) Assert.NotEmpty(StudyDesign.Mixers(design, settings.Operators / 2));
    }

    [Theory]
    [InlineData("operators")]
    [InlineData("operators-small")]
    public void Every_design_is_solved_to_the_reference_parameter_count_counted_on_the_built_model(string name)
    {
        var settings = OperatorStudySettings.Load(name);
        var template = HybridConfig.Load(settings.Template);
        long target = OperatorStudy.Target(settings, template);
        foreach (var design in settings.Designs)
        {
            var solved = OperatorStudy.Solve(design, settings, template, target);
            using var model = new HybridForCausalLM(solved.Config);
            long built = model.parameters().Sum(p => p.numel());
            Assert.Equal(built, solved.Parameters);
            Assert.InRange((built - target) / (double)target, -settings.Tolerance, settings.Tolerance);
            Assert.Equal(settings.Operators, solved.Config.NumLayers);
            Assert.Equal(0, solved.Config.FfnSize % settings.FfnMultiple);
        }
    }

    [Fact]
    public void A_tolerance_no_shape_can_meet_names_the_closest_shape()
    {
        var settings = OperatorStudySettings.Load("operators-small") with { Tolerance = 1e-9 };
        var template = HybridConfig.Load(settings.Template);
        var error = Assert.Throws<WrenException>(() => OperatorStudy.Solve("mamba1", settings, template, 123_457));
        Assert.Contains("design 'mamba1': closest shape (width", error.Message);
    }

    [Theory]
    [InlineData("{\"operators\": 24, \"colour\": 1}", "unknown key 'colour'")]
    [InlineData("{\"operators\": 24, \"operators\": 12}", "a key is repeated")]
    [InlineData("{\"width\": \"wide\"}", "wrong type of value at $.width")]
    [InlineData("{\"operators\": 7, \"designs\": [\"a\"]}", "operators must be even")]
    [InlineData("{\"designs\": [\"a\", \"a\"]}", "designs must be distinct")]
    [InlineData("{\"designs\": [\"a+x\"]}", "unknown mixer 'x'")]
    [InlineData("{\"designs\": [\"a\"], \"width\": 100, \"head_dim\": 32}", "multiple of head_dim")]
    [InlineData("{\"designs\": [\"a\"], \"ffn_multiple\": 0}", "ffn_multiple must be positive")]
    public void Bad_settings_are_one_line_errors_naming_the_file(string json, string expected)
    {
        var file = Path.Combine(TempDir(), "study.json");
        File.WriteAllText(file, json);
        var error = Assert.Throws<WrenException>(() => OperatorStudySettings.Load(file));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith(file, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }
}
