namespace Wren.Search;

/// <summary>Scores one trial: its proxy loss (lower is better).</summary>
public interface ITrialEvaluator
{
    double Evaluate(Trial trial, CancellationToken cancellation);
}
