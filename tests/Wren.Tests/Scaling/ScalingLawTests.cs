using Wren.Profiling;
using Wren.Scaling;
using Wren.Search;

namespace Wren.Tests.Scaling;

public class ScalingLawTests
{
    [Fact]
    public void The_fit_recovers_known_parameters_from_synthetic_data()
    {
        var truth = new ScalingLaw(2.1, 1.8, 0.7, 40.0, 0.9, 0);
        var points = (from d in new[] { 2, 4, 6, 8, 12 }
                      from w in new[] { 64, 128, 192, 256 }
                      select new ScalingPoint(d, w, truth.Predict(d, w))).ToList();
        var fit = ScalingLaw.Fit(points);
        Assert.Equal(truth.L0, fit.L0, 3);
        Assert.Equal(truth.A, fit.A, 2);
        Assert.Equal(truth.Alpha, fit.Alpha, 3);
        Assert.Equal(truth.B, fit.B, 1);
        Assert.Equal(truth.Beta, fit.Beta, 3);
        Assert.True(fit.RmsError < 1e-6);

        // With noise, extrapolation to larger shapes stays close.
        var random = new Random(3);
        var noisy = points.Where(p => p.Depth <= 8 && p.Width <= 192)
                          .Select(p => p with { Loss = p.Loss * (1 + 0.002 * (random.NextDouble() - 0.5)) }).ToList();
        var extrapolating = ScalingLaw.Fit(noisy);
        foreach (var held in points.Where(p => p.Depth > 8 || p.Width > 192))
            Assert.InRange(Math.Abs(extrapolating.Predict(held.Depth, held.Width) - held.Loss) / held.Loss, 0, 0.02);
        Assert.Throws<WrenException>(() => ScalingLaw.Fit(points.Take(4).ToList()));
    }

    [Fact]
    public void Noisy_non_monotone_data_gives_a_bounded_fit_not_a_degenerate_one()
    {
        // A real 100-step sweep (docs/search.md): perplexities too early in training to fall monotonically.
        double[,] ppl = { { 600.84, 484.50, 428.84 }, { 493.37, 473.74, 438.13 }, { 469.44, 491.43, 437.02 } };
        int[] widths = [128, 192, 256];
        var points = (from d in Enumerable.Range(0, 3)
                      from w in Enumerable.Range(0, 3)
                      select new ScalingPoint(d + 1, widths[w], ppl[d, w])).ToList();
        var fit = ScalingLaw.Fit(points);
        Assert.True(fit.A >= 0 && fit.B >= 0, fit.ToString());
        Assert.True(fit.Alpha >= ScalingLaw.MinExponent && fit.Beta >= ScalingLaw.MinExponent, fit.ToString());
        Assert.InRange(fit.L0, 0, 600);
    }

    [Fact]
    public void Rank_correlations_match_hand_computed_values()
    {
        double[] x = [1, 2, 3, 4, 5], y = [3, 1, 2, 5, 4];
        Assert.Equal(0.6, RankCorrelation.Spearman(x, y), 12);   // 1 − 6·Σd²/(n(n²−1)) = 1 − 48/120
        Assert.Equal(0.4, RankCorrelation.Kendall(x, y), 12);    // (7 concordant − 3 discordant) / 10
        Assert.Equal(5 / Math.Sqrt(30), RankCorrelation.Kendall([1, 2, 2, 3], [1, 3, 2, 4]), 12);   // τ-b with one tie in x
        Assert.Equal(-1, RankCorrelation.Kendall(x, x.Select(v => -v).ToArray()), 12);
    }
}

[Collection("cli")]
public class DepthWidthSweepTests
{
    [Fact]
    public void The_sweep_trains_times_fits_and_resumes_from_its_results()
    {
        var (data, _) = Wren.Tests.Data.Corpus.Prepared();
        string folder = TestSupport.TempDir();
        string[] args = ["scaling", "sweep", "--config", "flash-quick", "--pattern", "a f", "--depths", "1,2,3", "--widths", "64,128,192",
                         "--data", data, "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--decode-tokens", "4", "--out", folder,
                         "--budget-ms", "1000"];
        var (code, error) = TestSupport.Cli(args);
        Assert.True(code == 0, error);
        var points = DepthWidthSweep.Load(Path.Combine(folder, "sweep.json"));
        Assert.Equal(9, points.Count);
        Assert.All(points, p => { Assert.True(p.ValPerplexity > 1); Assert.True(p.DecodeMsPerToken > 0); });
        // Interleaved with one reference (issue 13): every shape is a ratio, put at the median reference step of the session.
        double level = Measurement.Of(points.Select(p => p.ReferenceMs!.Value).ToList()).Median;
        Assert.All(points, p => Assert.Equal(p.DecodeRatio!.Value * level, p.DecodeMsPerToken, 9));
        Assert.True(File.Exists(Path.Combine(folder, "frontier.png")));
        string report = File.ReadAllText(Path.Combine(folder, "report.md"));
        Assert.Contains("held out", report);
        Assert.Contains("For a budget of 1000.00 ms/token: depth", report);
        var written = File.GetLastWriteTimeUtc(Path.Combine(folder, "sweep.json"));
        Assert.Equal(0, TestSupport.Cli(args).Code);   // every point is already there: nothing retrained
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(folder, "sweep.json")));
        Assert.Equal(0, TestSupport.Cli([.. args, "--remeasure-latency"]).Code);   // timings again, losses kept
        var retimed = DepthWidthSweep.Load(Path.Combine(folder, "sweep.json"));
        Assert.Equal(points.Select(p => (p.Depth, p.Width, p.ValLoss)), retimed.Select(p => (p.Depth, p.Width, p.ValLoss)));
        Assert.NotEqual(written, File.GetLastWriteTimeUtc(Path.Combine(folder, "sweep.json")));
    }
}
