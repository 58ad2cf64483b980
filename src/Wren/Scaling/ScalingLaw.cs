using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.Optimization;

namespace Wren.Scaling;

/// <summary>One observation of the depth–width study: depth D, width W and the loss (or perplexity) reached.</summary>
public sealed record ScalingPoint(int Depth, int Width, double Loss);

/// <summary>
/// The depth–width law of the method (§1): L(D, W) = L0 + a·D^(−α) + b·W^(−β). For fixed exponents the law is linear
/// in (L0, a, b), so the fit solves that least-squares problem exactly and searches only the two exponents,
/// (a log grid, then Nelder–Mead from MathNet.Numerics), which converges where a five-parameter Levenberg–Marquardt
/// start often does not.
/// </summary>
public sealed record ScalingLaw(double L0, double A, double Alpha, double B, double Beta, double RmsError)
{
    public double Predict(int depth, int width) => L0 + A * Math.Pow(depth, -Alpha) + B * Math.Pow(width, -Beta);

    public override string ToString() => $"L(D, W) = {L0:G4} + {A:G4}·D^(−{Alpha:G3}) + {B:G4}·W^(−{Beta:G3})";

    /// <summary>Exponents below this make x^(−e) ≈ 1 − e·ln x, where L0 and the coefficient trade off without bound (a degenerate
    /// fit).</summary>
    public const double MinExponent = 0.05;

    public static ScalingLaw Fit(IReadOnlyList<ScalingPoint> points)
    {
        if (points.Count < 5) throw new WrenException($"fitting L(D, W) needs at least 5 points (5 parameters), got {points.Count}");
        if (points.Select(p => p.Depth).Distinct().Count() < 2 || points.Select(p => p.Width).Distinct().Count() < 2)
            throw new WrenException("fitting L(D, W) needs at least two depths and two widths");
        // For fixed exponents: least squares in (L0, a, b) with all three ≥ 0 (a loss floor is not negative, more depth
        // or width never hurts): the best of the subsets of terms whose free solution has no negative coefficient.
        (double L0, double A, double B, double Sse) Linear(double alpha, double beta)
        {
            var target = Vector<double>.Build.Dense(points.Count, i => points[i].Loss);
            Func<ScalingPoint, double>[] terms = [_ => 1.0, p => Math.Pow(p.Depth, -alpha), p => Math.Pow(p.Width, -beta)];
            (double L0, double A, double B, double Sse)? best = null;
            for (int subset = 1; subset < 8; subset++)
            {
                var used = Enumerable.Range(0, 3).Where(t => (subset >> t & 1) == 1).ToList();
                var design = Matrix<double>.Build.Dense(points.Count, used.Count, (i, j) => terms[used[j]](points[i]));
                var solution = design.Svd().Solve(target);
                if (solution.Any(c => c < 0)) continue;
                var coefficients = new double[3];
                for (int j = 0; j < used.Count; j++) coefficients[used[j]] = solution[j];
                double sse = (design * solution - target).PointwisePower(2).Sum();
                if (best is null || sse < best.Value.Sse) best = (coefficients[0], coefficients[1], coefficients[2], sse);
            }
            return best ?? (0, 0, 0, target.PointwisePower(2).Sum());
        }
        double Objective(double alpha, double beta) =>
            alpha is < MinExponent or > 10 || beta is < MinExponent or > 10 ? double.MaxValue : Linear(alpha, beta).Sse;

        var grid = Enumerable.Range(0, 31).Select(i => MinExponent * Math.Pow(3.0 / MinExponent, i / 30.0)).ToArray();
        var (bestAlpha, bestBeta) = grid.SelectMany(a => grid.Select(b => (a, b))).MinBy(p => Objective(p.a, p.b));
        var refined = NelderMeadSimplex.Minimum(
            ObjectiveFunction.Value(v => Objective(v[0], v[1])),
            Vector<double>.Build.Dense([bestAlpha, bestBeta]),
            Vector<double>.Build.Dense([bestAlpha * 0.2, bestBeta * 0.2]), 1e-12, 5000);
        double alpha = refined.MinimizingPoint[0], beta = refined.MinimizingPoint[1];
        if (Objective(alpha, beta) > Objective(bestAlpha, bestBeta)) (alpha, beta) = (bestAlpha, bestBeta);
        var (l0, a, b, sse) = Linear(alpha, beta);
        return new ScalingLaw(l0, a, alpha, b, beta, Math.Sqrt(sse / points.Count));
    }
}
