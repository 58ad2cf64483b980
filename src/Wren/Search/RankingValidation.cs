using System.Text.Json;
using Wren.Common;

namespace Wren.Search;

/// <summary>One retrained trial: its proxy loss and its loss at the longer budget.</summary>
public sealed record RetrainedTrial(int Number, string Architecture, int Width, double ShortLoss, double LongLoss);

/// <summary>The ranking validation of a study: retrained trials, the budgets and the rank correlations of their losses.</summary>
public sealed record RankingValidationReport(string Study, double Factor, long ProxySteps, long LongSteps,
                                             IReadOnlyList<RetrainedTrial> Trials,
                                             double Spearman, double Kendall)
{
    /// <summary>The Markdown report; table cells escape <c>|</c>.</summary>
    public string ToMarkdown()
    {
        var lines = new List<string>
        {
            $"# Ranking validation: {Study}", "",
            $"{Trials.Count} trials retrained at {Factor}× the proxy budget ({ProxySteps} → {LongSteps} steps).", "",
            "| trial | architecture | width | short-budget loss | long-budget loss |", "|---|---|---|---|---|",
        };
        lines.AddRange(Trials.OrderBy(r => r.LongLoss)
            .Select(r => $"| #{r.Number} | `{r.Architecture.Replace("|", "\\|")}` | {r.Width} | {r.ShortLoss:F4} | {r.LongLoss:F4} |"));
        lines.AddRange(["", $"Spearman ρ = {Spearman:F3}, Kendall τ = {Kendall:F3} (the method reports Spearman 0.888 between 10B- and " +
                            "100B-token proxies)."]);
        return string.Join("\n", lines) + "\n";
    }
}

/// <summary>
/// Does the short proxy rank architectures as a longer budget would (Nemotron-Flash paper, evolutionary search)? Retrains the best trials
/// and a random sample of the others for <c>factor</c>× the proxy budget and correlates the two losses. Each retrained result is kept
/// in <c>validation.json</c> at once, so an interrupted validation continues where it stopped.
/// </summary>
public static class RankingValidation
{
    public static RankingValidationReport Run(StudyHandle handle, ITrialEvaluator longBudget, int top, int random, double factor, int seed,
                                              IProgress<string>? progress = null, CancellationToken cancellation = default)
    {
        string name = handle.Study.Name;
        var done = handle.Store.Trials(name).Where(t => t.Status == "done" && t.ProxyLoss is not null).OrderBy(t => t.ProxyLoss).ToList();
        var shuffle = new Random(seed);
        var chosen = done.Take(top).Concat(done.Skip(top).OrderBy(_ => shuffle.Next()).Take(random)).ToList();
        if (chosen.Count < 3) throw new WrenException($"study '{name}' has {done.Count} finished trial(s); validation needs at least 3");
        string path = Path.Combine(handle.Folder, "validation.json");
        Directory.CreateDirectory(handle.Folder);
        var results = File.Exists(path) ? JsonSerializer.Deserialize<List<RetrainedTrial>>(File.ReadAllText(path))! : [];
        foreach (var trial in chosen.Where(t => results.All(r => r.Number != t.Number)))
        {
            progress?.Report($"retraining trial #{trial.Number} for {factor}× the proxy budget");
            results.Add(new RetrainedTrial(trial.Number, trial.Architecture, trial.Width, trial.ProxyLoss!.Value,
                                           longBudget.Evaluate(trial, cancellation)));
            AtomicFile.WriteAllText(path, JsonSerializer.Serialize(results));
        }
        var used = results.Where(r => chosen.Any(t => t.Number == r.Number)).ToList();
        var shortLosses = used.Select(r => r.ShortLoss).ToList();
        var longLosses = used.Select(r => r.LongLoss).ToList();
        long steps = handle.Space.Proxy.Steps;
        var report = new RankingValidationReport(name, factor, steps, (long)Math.Round(steps * factor), used,
                                                 RankCorrelation.Spearman(shortLosses, longLosses), RankCorrelation.Kendall(shortLosses,
                                                     longLosses));
        AtomicFile.WriteAllText(Path.Combine(handle.Folder, "validation.md"), report.ToMarkdown());
        return report;
    }
}
