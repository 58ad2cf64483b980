using Wren.Evaluation;

namespace Wren.Tests.Evaluation;

/// <summary>The harness's aggregations (lm_eval/api/metrics.py) on values worked out by hand.</summary>
public class MetricsTests
{
    [Fact]
    public void Aggregations_match_hand_computed_values()
    {
        // mean_stderr of {1, 1, 0, 0}: mean 0.5, sample variance 4·0.25/3 = 1/3, stderr √(1/3)/2.
        Assert.Equal(Math.Sqrt(1.0 / 3) / 2, Metrics.MeanStandardError([1, 1, 0, 0])!.Value, 12);
        Assert.Null(Metrics.MeanStandardError([1]));
        Assert.Equal(Math.Exp(2), Metrics.Perplexity([-1, -3]), 12);
        // Two documents: log-likelihoods −2 and −4 over 1 and 3 words: exp(6 / 4).
        Assert.Equal(Math.Exp(1.5), Metrics.WeightedPerplexity([(-2, 1), (-4, 3)]), 12);
        Assert.Equal(1.5 / Math.Log(2), Metrics.BitsPerByte([(-2, 1), (-4, 3)]), 12);
        Assert.Equal(2, Metrics.ArgMax([0.5, 1, 3, 3]));   // the first of equal maxima, as numpy
        Assert.Equal(0, Metrics.BootstrapStandardError(Metrics.Perplexity, [-2, -2, -2], iterations: 2000)!.Value, 12);
        double spread = Metrics.BootstrapStandardError(Metrics.Perplexity, [-1, -2, -3, -4], iterations: 2000)!.Value;
        Assert.InRange(spread, 1, 20);
    }
}
