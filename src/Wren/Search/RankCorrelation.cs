using MathNet.Numerics.Statistics;

namespace Wren.Search;

/// <summary>Rank agreement between two scorings of the same items (short- vs long-budget losses).</summary>
internal static class RankCorrelation
{
    /// <summary>Spearman's ρ (Pearson correlation of ranks, ties averaged), from MathNet.Numerics.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y) => Correlation.Spearman(x, y);

    /// <summary>
    /// Kendall's τ-b: (concordant − discordant) / √((n0 − ties in x)(n0 − ties in y)), n0 = n(n−1)/2.
    /// Written here: MathNet.Numerics has no Kendall correlation; the O(n²) pair count is plenty for searches.
    /// </summary>
    public static double Kendall(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException("x and y differ in length");
        long concordant = 0, discordant = 0, tiesX = 0, tiesY = 0, pairs = 0;
        for (int i = 0; i < x.Count; i++)
            for (int j = i + 1; j < x.Count; j++)
            {
                pairs++;
                int sx = Math.Sign(x[i] - x[j]), sy = Math.Sign(y[i] - y[j]);
                if (sx == 0) tiesX++;
                if (sy == 0) tiesY++;
                if (sx == 0 || sy == 0) continue;
                if (sx == sy) concordant++; else discordant++;
            }
        double denominator = Math.Sqrt((double)(pairs - tiesX) * (pairs - tiesY));
        return denominator == 0 ? double.NaN : (concordant - discordant) / denominator;
    }
}
