using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Common;

namespace Wren.Training;

/// <summary>
/// One design over its seeds: shape, parameters (and the relative gap to the target), validation perplexity and accuracy
/// (mean, standard deviation over seeds, min–max), decode latency, throughput, frontier membership, and its rank and relative
/// perplexity gap to the best design here and in the paper (ranks among the designs both have).
/// </summary>
public sealed record StudySummary(string Design, string Layers, int Width, int Ffn, long Parameters, double ParameterGap,
                                  double PplMean, double PplStd, double PplMin, double PplMax, double? AccMean, double? AccStd,
                                  double LatencyMs, double LatencyMinMs, double LatencyMaxMs, int? Batch, double? TokensPerSecond,
                                  bool OnFrontier, int Rank, double Gap, double? PaperPpl, double? PaperAcc, int? PaperRank,
                                  double? PaperGap);

/// <summary>One of the paper's conclusions, checked on this study: the claim, the verdict and the numbers behind it.</summary>
public sealed record StudyConclusion(string Claim, string Verdict, string Evidence);

/// <summary>The operator study's outcome: every number (runs, latency, throughput), the summaries, the frontier and the
/// conclusions; <see cref="ToMarkdown"/> prints the table beside the paper's, <see cref="Plot"/> the PPL–latency scatter.</summary>
public sealed record OperatorStudyReport(OperatorStudySettings Settings, string Data, long TargetParameters,
                                         IReadOnlyList<StudySummary> Summaries, IReadOnlyList<StudyRun> Runs,
                                         IReadOnlyList<StudyLatencyResult> Latency, IReadOnlyList<StudyThroughput> Throughput,
                                         double? RankCorrelation, IReadOnlyList<StudyConclusion> Conclusions)
{
    /// <summary>The paper's 500M-parameter, 100B-token results (Wiki PPL, commonsense accuracy %), §2 of the method reference.</summary>
    public static readonly IReadOnlyDictionary<string, (double Ppl, double Acc)> Paper = new Dictionary<string, (double, double)>
    {
        ["a"] = (24.44, 48.02), ["gla"] = (25.16, 46.82), ["deltanet"] = (23.87, 47.83), ["gdn"] = (23.80, 47.96),
        ["m2"] = (24.36, 47.72), ["a+m2"] = (23.52, 48.07), ["deltanet+m2"] = (23.37, 48.03), ["gdn+m2"] = (23.37, 48.03),
        ["deltanet+a"] = (24.32, 47.48), ["gla+m2"] = (24.04, 47.99),
    };

    /// <summary>
    /// Indices of the points no other point beats in both coordinates (both minimized; ties kept): the Pareto frontier of
    /// (latency, perplexity).
    /// </summary>
    public static IReadOnlyList<int> Frontier(IReadOnlyList<(double Latency, double Ppl)> points) =>
        Pareto.Front(Enumerable.Range(0, points.Count).ToList(), i => points[i].Latency, i => points[i].Ppl).ToList();

    /// <summary>Ranks 1…n by ascending value (ties share the lowest rank).</summary>
    public static int[] Ranks(IReadOnlyList<double> values) => values.Select(v => values.Count(w => w < v) + 1).ToArray();

    public static OperatorStudyReport Create(OperatorStudySettings settings, string data, IReadOnlyList<StudyDesign> designs,
                                             IReadOnlyList<StudyRun> runs, IReadOnlyList<StudyLatencyResult> latency,
                                             IReadOnlyList<StudyThroughput> throughput)
    {
        long target = designs.Count == 0 ? 0 : settings.TargetParameters ?? designs[0].Parameters;
        var rows = designs.Select(d =>
        {
            var mine = runs.Where(r => r.Design == d.Name).ToList();
            var ppl = mine.Select(r => r.ValPerplexity).ToList();
            var acc = mine.Where(r => r.Accuracy is not null).Select(r => r.Accuracy!.Value).ToList();
            var lat = latency.First(l => l.Design == d.Name);
            var tp = throughput.FirstOrDefault(t => t.Design == d.Name);
            return (d, ppl, acc, lat, tp);
        }).ToList();
        var means = rows.Select(r => r.ppl.Average()).ToList();
        var frontier = Frontier(rows.Select((r, i) => (r.lat.MedianMs, means[i])).ToList());
        var ranks = Ranks(means);
        var common = rows.Select((r, i) => i).Where(i => Paper.ContainsKey(rows[i].d.Name)).ToList();
        var commonRanks = Ranks(common.Select(i => means[i]).ToList());
        var paperRanks = Ranks(common.Select(i => Paper[rows[i].d.Name].Ppl).ToList());
        double paperBest = common.Count == 0 ? 0 : common.Min(i => Paper[rows[i].d.Name].Ppl);
        double best = means.Min();
        var summaries = rows.Select((r, i) =>
        {
            int at = common.IndexOf(i);
            var paper = Paper.TryGetValue(r.d.Name, out var p) ? p : ((double, double)?)null;
            return new StudySummary(r.d.Name, Pattern(r.d), r.d.Config.HiddenSize, r.d.Config.FfnSize, r.d.Parameters,
                (r.d.Parameters - target) / (double)target, means[i], Std(r.ppl), r.ppl.Min(), r.ppl.Max(),
                r.acc.Count > 0 ? r.acc.Average() : null, r.acc.Count > 0 ? Std(r.acc) : null,
                r.lat.MedianMs, r.lat.MinMs, r.lat.MaxMs, r.tp?.Batch, r.tp?.TokensPerSecond, frontier.Contains(i),
                at >= 0 ? commonRanks[at] : ranks[i], means[i] / best - 1, paper?.Item1, paper?.Item2 / 100,
                at >= 0 ? paperRanks[at] : null, paper is { } q ? q.Item1 / paperBest - 1 : null);
        }).ToList();
        double? rho = common.Count >= 3 ? Spearman(commonRanks, paperRanks) : null;
        return new OperatorStudyReport(settings, data, target, summaries, runs, latency, throughput, rho, Conclude(summaries));
    }

    static string Pattern(StudyDesign d)
    {
        var types = d.Config.LayerTypes;
        int period = d.Name.Contains('+') ? 4 : 2;
        return $"({string.Join(" ", types.Take(period))}) × {types.Count / period}";
    }

    static double Std(IReadOnlyList<double> values)
    {
        if (values.Count < 2) return 0;
        double mean = values.Average();
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }

    static double Spearman(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        double ma = a.Average(), mb = b.Average();
        double cov = a.Zip(b).Sum(x => (x.First - ma) * (x.Second - mb));
        double va = a.Sum(x => (x - ma) * (x - ma)), vb = b.Sum(x => (x - mb) * (x - mb));
        return va == 0 || vb == 0 ? 0 : cov / Math.Sqrt(va * vb);
    }

    const string CannotJudge = "cannot be judged";

    /// <summary>The paper's three conclusions (method reference §2) checked on the summaries; "beyond the seed spread" means the
    /// min–max ranges over seeds do not overlap.</summary>
    public static IReadOnlyList<StudyConclusion> Conclude(IReadOnlyList<StudySummary> rows)
    {
        StudySummary? Find(string name) => rows.FirstOrDefault(r => r.Design == name);
        string Ppl(StudySummary r) => $"{r.Design} PPL {r.PplMean:F2} ({r.PplMin:F2}–{r.PplMax:F2})";
        var list = new List<StudyConclusion>();
        const string first = "DeltaNet and Gated DeltaNet lie on the PPL–latency frontier";
        if (Find("deltanet") is { } dn && Find("gdn") is { } gdn)
        {
            int on = (dn.OnFrontier ? 1 : 0) + (gdn.OnFrontier ? 1 : 0);
            list.Add(new(first, on == 2 ? "holds" : on == 1 ? "holds in part" : "does not hold",
                $"deltanet {(dn.OnFrontier ? "on" : "off")} the frontier, gdn {(gdn.OnFrontier ? "on" : "off")}; frontier: " +
                string.Join(", ", rows.Where(r => r.OnFrontier).OrderBy(r => r.LatencyMs).Select(r => r.Design))));
        }
        else list.Add(new(first, CannotJudge, "needs designs deltanet and gdn"));
        const string second = "DeltaNet + Mamba2 beats DeltaNet alone and Mamba2 alone";
        if (Find("deltanet+m2") is { } hy && Find("deltanet") is { } d1 && Find("m2") is { } m2)
        {
            bool means = hy.PplMean < d1.PplMean && hy.PplMean < m2.PplMean;
            bool beyond = hy.PplMax < d1.PplMin && hy.PplMax < m2.PplMin;
            string verdict = !means ? "does not hold"
                : beyond ? "holds (beyond the seed spread)" : "holds on the means, inside the seed spread";
            list.Add(new(second, verdict,
                         $"{Ppl(hy)}; {Ppl(d1)}; {Ppl(m2)}"));
        }
        else list.Add(new(second, CannotJudge, "needs designs deltanet+m2, deltanet and m2"));
        const string third = "Inside a hybrid, DeltaNet ≈ Gated DeltaNet, and DeltaNet is cheaper";
        if (Find("deltanet+m2") is { } a && Find("gdn+m2") is { } b)
        {
            bool overlap = a.PplMin <= b.PplMax && b.PplMin <= a.PplMax;
            bool cheaper = a.LatencyMs < b.LatencyMs;
            string verdict = overlap && cheaper ? "holds" : overlap ? "holds in part (≈ in PPL, not cheaper)"
                : cheaper ? "holds in part (cheaper, but PPL differs beyond the seed spread)" : "does not hold";
            list.Add(new(third, verdict, $"{Ppl(a)}; {Ppl(b)}; latency {a.LatencyMs:F2} vs {b.LatencyMs:F2} ms/token"));
        }
        else list.Add(new(third, CannotJudge, "needs designs deltanet+m2 and gdn+m2"));
        return list;
    }

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public string ToMarkdown()
    {
        var s = Settings;
        var t = s.Training;
        var lines = new List<string>
        {
            "# Experiment: operators", "",
            $"{s.Operators} operators per model (mixer and FFN alternating), {TargetParameters:N0} parameters each " +
            $"(±{s.Tolerance:0.#%}; " +
            $"width and FFN size solved per design), template `{s.Template}`, head dim {s.HeadDim}; data `{Data}`; " +
            $"{(t.Steps > 0 ? $"{t.Steps} steps" : $"{t.Tokens:N0} tokens")} × {t.BatchSize}×{t.SeqLen} tokens, {t.Schedule} LR " +
            $"{t.LearningRate:G3}, seeds {string.Join(", ", s.Seeds)} (same data order and schedule for every design). " +
            $"Latency: batch 1, decode after a {s.Latency.Context}-token prompt, median of {s.Latency.Passes} interleaved passes. " +
            (s.Latency.MemoryBudgetGib > 0 ? $"Throughput: largest batch within {s.Latency.MemoryBudgetGib:G} GiB."
                : "Throughput: skipped."),
            "",
            "| design | layers | width | FFN | parameters (gap) | val PPL mean ± std (min–max) | rank | gap to best | " +
            "acc mean ± std | decode ms/token (min–max) | tokens/s at budget (batch) | frontier | paper PPL | paper rank | paper gap |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        };
        foreach (var r in Summaries)
            lines.Add($"| {r.Design} | {r.Layers} | {r.Width} | {r.Ffn} | {r.Parameters / 1e6:F3}M ({r.ParameterGap:+0.0%;-0.0%}) | " +
                      $"{r.PplMean:F2} ± {r.PplStd:F2} ({r.PplMin:F2}–{r.PplMax:F2}) | {r.Rank} | {r.Gap:+0.0%;-0.0%} | " +
                      (r.AccMean is { } acc ? $"{acc:P1} ± {r.AccStd:P1}" : "—") + " | " +
                      $"{r.LatencyMs:F2} ({r.LatencyMinMs:F2}–{r.LatencyMaxMs:F2}) | " +
                      (r.TokensPerSecond is { } tps ? $"{tps:F0} ({r.Batch})" : "—") + $" | {(r.OnFrontier ? "yes" : "")} | " +
                      (r.PaperPpl is { } pp ? $"{pp:F2} | {r.PaperRank} | {r.PaperGap:+0.0%;-0.0%}" : "— | — | —") + " |");
        lines.AddRange([
            "",
            "Ranks are by mean validation PPL, among the designs the paper also has (others: among all designs here); gaps are " +
            "relative to the best design. Paper: 500M parameters, 100B tokens, Wiki PPL (method reference §2)." +
            (RankCorrelation is { } rho ? $" Spearman rank correlation with the paper: {rho:F2}." : ""),
            "", "## The paper's conclusions here", "",
            "| claim | verdict | evidence |", "|---|---|---|",
        ]);
        lines.AddRange(Conclusions.Select(c => $"| {c.Claim} | {c.Verdict} | {c.Evidence} |"));
        return string.Join("\n", lines) + "\n";
    }

    /// <summary>Mean validation PPL against decode latency, one labelled point per design, the frontier drawn (PNG + SVG).</summary>
    public string[] Plot(string pathWithoutExtension)
    {
        var plot = new ScottPlot.Plot();
        var points = plot.Add.ScatterPoints(Summaries.Select(r => r.LatencyMs).ToArray(), Summaries.Select(r => r.PplMean).ToArray());
        points.LegendText = "design (mean over seeds)";
        points.MarkerSize = 9;
        var bars = plot.Add.ErrorBar(Summaries.Select(r => r.LatencyMs).ToList(), Summaries.Select(r => r.PplMean).ToList(),
                                     Summaries.Select(r => r.PplStd).ToList());
        bars.LegendText = "± std over seeds";
        var front = Summaries.Where(r => r.OnFrontier).OrderBy(r => r.LatencyMs).ToList();
        var line = plot.Add.ScatterLine(front.Select(r => r.LatencyMs).ToArray(), front.Select(r => r.PplMean).ToArray());
        line.LegendText = "frontier";
        foreach (var r in Summaries) plot.Add.Text(r.Design, r.LatencyMs, r.PplMean).LabelFontSize = 10;
        plot.Title($"Operators at {TargetParameters / 1e6:F2}M parameters: validation PPL vs decode latency");
        plot.Axes.Bottom.Label.Text = $"decode ms/token (batch 1, {Settings.Latency.Context}-token context)";
        plot.Axes.Left.Label.Text = "validation perplexity";
        plot.ShowLegend();
        return Charts.Save(plot, pathWithoutExtension);
    }
}
