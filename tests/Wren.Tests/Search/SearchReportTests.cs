using Wren.Search;

namespace Wren.Tests.Search;

/// <summary>The report's summary and its Markdown printer on hand-made trials.</summary>
public class SearchReportTests
{
    static readonly SearchSpace Quick = SearchSpace.Load("quick");

    static readonly SearchSpace Space = Quick with
    {
        Seeds = [],
        Evolution = new EvolutionSettings { Population = 2, Cycles = 1 },
        Latency = Quick.Latency with { TargetMs = 1200 },
    };

    static Trial Done(int number, int cycle, string architecture, double loss, double latency, string parent = "",
                      string mutation = "random") => new()
                      {
                          Number = number, Cycle = cycle, Architecture = architecture, ProxyLoss = loss, PredictedLatencyMs = latency,
                          Feasible = true, Status = "done", Width = 128, Parameters = 1_000_000, Parent = parent, Mutation = mutation,
                          Created = 0, Finished = 60_000, TrainSeconds = 30,
                      };

    const string A = "m2 0:1 ffn1 x1 | a 0:1 ffn0 x1 | deltanet 0:1 ffn0 x1", B = "deltanet 0:1 ffn1 x1 | a 0:1 ffn0 x1 | m2 0:1 ffn0 x1";

    [Fact]
    public void Table_cells_escape_the_stage_separator_and_cycles_count_from_one()
    {
        var trials = new[]
        {
            Done(0, -1, A, 5.0, 10), Done(1, -1, B, 4.0, 20), Done(2, 0, A.Replace("ffn1", "ffn2"), 3.0, 15, $"#0 {A}", "stage 1 ffn"),
        };
        var summary = SearchSummary.Of(trials, Space, "t");
        Assert.Equal([0, 1], summary.Trajectory.Select(c => c.Cycle));
        string markdown = SearchReport.Markdown(summary, Space, null);
        Assert.Contains("| #2 | `m2 0:1 ffn2 x1 \\| a 0:1 ffn0 x1 \\| deltanet 0:1 ffn0 x1` | 128 |", markdown);
        foreach (var row in markdown.Split('\n').Where(l => l.StartsWith("| #")))   // every trial row keeps its columns
            Assert.Equal(8, row.Replace("\\|", "").Count(c => c == '|'));
        Assert.Contains("| initial | 2 | 4.5000 | 4.0000 |", markdown);
        Assert.Contains("| 1 | 1 | 3.0000 | 3.0000 |", markdown);
        Assert.Contains($"found by mutating #0 {A} (stage 1 ffn).", markdown);
    }

    [Fact]
    public void A_winner_from_the_initial_population_says_so()
    {
        var summary = SearchSummary.Of([Done(0, -1, A, 3.0, 10, mutation: "seed"), Done(1, -1, B, 4.0, 20)], Space, "t");
        Assert.Equal("a seed design of the initial population", summary.Origin!.Text);
        Assert.DoesNotContain("found by mutating  (", SearchReport.Markdown(summary, Space, null));
    }

    [Fact]
    public void A_front_member_measured_over_the_target_is_flagged_and_the_winner_is_the_best_measured_feasible()
    {
        // A 1200 ms target; within 5 % of it (≤ 1260 ms) still meets it.
        var trials = new[]
        {
            Done(0, -1, A, 3.0, 1100) with { MeasuredLatencyMs = 1500 },              // best loss, but 25 % over when measured
            Done(1, -1, B, 4.0, 1000) with { MeasuredLatencyMs = 1250 },              // 4 % over: meets the target
            Done(2, 0, A.Replace("ffn1", "ffn2"), 3.5, 1300) with { Feasible = false },   // placed over the target by prediction
        };
        var summary = SearchSummary.Of(trials, Space, "t");
        Assert.Equal(1, summary.Winner!.Number);
        Assert.Equal(WinnerBasis.Measured, summary.Basis);
        Assert.Equal([false, true], summary.Measured.OrderBy(m => m.Trial.Number).Select(m => m.MeetsTarget));
        Assert.Equal(0.0, summary.Trajectory.Single(c => c.Cycle == 1).FeasibleShare);
        string markdown = SearchReport.Markdown(summary, Space, null);
        Assert.Contains("| #0 | `m2 0:1 ffn1 x1 \\| a 0:1 ffn0 x1 \\| deltanet 0:1 ffn0 x1` | 128 | 1100 | 1500 | -26.7 % | " +
                        "**NO: 25 % over the 1200 ms target** |", markdown);
        Assert.Contains("| #1 |", markdown);
        Assert.Contains("| initial | 2 | 3.5000 | 3.0000 | 100 % |", markdown);
        Assert.Contains("| 1 | 1 | 3.5000 | 3.0000 | 0 % |", markdown);

        var noneMeets = SearchSummary.Of(trials.Take(1).ToList(), Space, "t");
        Assert.Equal(WinnerBasis.PredictedOnlyNoneMeasuredFeasible, noneMeets.Basis);
        Assert.Contains("**Flag: no re-measured trial meets the target**", SearchReport.Markdown(noneMeets, Space, null));
    }
}
