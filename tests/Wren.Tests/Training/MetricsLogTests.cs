using Wren.Training;

namespace Wren.Tests.Training;

/// <summary>A diverged run's metrics are still written (issue 10): perplexity exp(loss) is +∞ in double past loss ≈ 709.78.</summary>
public class MetricsLogTests
{
    [Fact]
    public void Non_finite_validation_values_are_written_and_read_back()
    {
        string run = TestSupport.TempDir();
        var log = new MetricsLog(run, resumeStep: 0);
        log.Add(new MetricsEntry { Step = 1, Tokens = 64, ValLoss = 710, ValPpl = Math.Exp(710) });
        log.Add(new MetricsEntry { Step = 2, Tokens = 128, ValLoss = double.NaN, ValPpl = double.NaN });
        var read = MetricsLog.Read(Path.Combine(run, MetricsLog.FileName));
        Assert.Equal(2, read.Count);
        Assert.Equal(710, read[0].ValLoss);
        Assert.Equal(double.PositiveInfinity, read[0].ValPpl);
        Assert.True(double.IsNaN(read[1].ValLoss!.Value) && double.IsNaN(read[1].ValPpl!.Value));
    }
}
