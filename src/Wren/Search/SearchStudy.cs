using System.Text;
using System.Text.Json;
using TorchSharp;
using Wren.Data;
using Wren.Distributed;
using Wren.Models;
using Wren.Profiling;

namespace Wren.Search;

/// <summary>What <c>wren search run</c> asks for: the space, where the study lives, the data and how to evaluate.</summary>
/// <param name="Study">Study name; null: the space's name.</param>
/// <param name="Storage">SQLite file or postgresql:// URI; null: <c>.wren/search/&lt;study&gt;.db</c>.</param>
/// <param name="Table">Latency table; null: the space's, else the study's own, else one measured here and kept with the study.</param>
/// <param name="UntilCycle">Stop after this cycle (1-based, as shown to people); null runs to the end.</param>
/// <param name="LocalWorker">Evaluate trials in this process too (else only propose and wait for workers).</param>
/// <param name="MeasureFront">Re-measure the real latency of up to this many front trials at the end.</param>
public sealed record SearchRunOptions(SearchSpace Space, string Data, string? Study = null, string? Storage = null, string? Table = null,
                                      int? UntilCycle = null, bool LocalWorker = true, int MeasureFront = 6);

/// <summary>An open study: its store (owned), record, space and the local folder for its artifacts.</summary>
public sealed class StudyHandle(StudyStore store, Study study, SearchSpace space, string folder) : IDisposable
{
    public StudyStore Store { get; } = store;
    public Study Study { get; } = study;
    public SearchSpace Space { get; } = space;
    public string Folder { get; } = folder;

    public void Dispose() => Store.Dispose();
}

/// <summary>
/// The search as library calls, one per command: <see cref="Run"/> (propose, evaluate, evolve, report),
/// <see cref="OpenExisting"/> for workers and reports, <see cref="Evaluation"/> for whoever trains trials.
/// </summary>
public static class SearchStudy
{
    /// <summary>The default storage of a study: a SQLite file under <c>.wren/search</c>.</summary>
    public static string DefaultStorage(string study) => Path.Combine(".wren", "search", study + ".db");

    /// <summary>The study folder for local artifacts (latency table, report, scratch runs): beside a SQLite file, else under
    /// .wren/search.</summary>
    public static string LocalFolder(string storage, string study) =>
        storage.Contains("://") ? Path.Combine(".wren", "search", study)
            : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(storage.Replace("sqlite:", "")))!, study);

    /// <summary>Opens the store and an existing study; a missing study is a <see cref="WrenException"/> listing the others.</summary>
    public static StudyHandle OpenExisting(string study, string? storage = null)
    {
        storage ??= DefaultStorage(study);
        if (!storage.Contains("://") && storage.Replace("sqlite:", "") is var file && !File.Exists(file))
            throw new WrenException($"no study '{study}': {file} does not exist; start one with wren search run");   // nor create it
        var store = StudyStore.Open(storage);
        try
        {
            var found = store.GetStudy(study) ?? throw new WrenException(
                $"no study '{study}' in {store.Location} (studies: {string.Join(", ", store.Studies())}); start one with wren search run");
            return new StudyHandle(store, found, SearchSpace.Parse(found.Space, $"study {study}"), LocalFolder(storage, study));
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Rank 0's open study on every rank of <paramref name="group"/> (broadcast as JSON): rank 0 passes the handle it opened,
    /// the other ranks null, so only rank 0 talks to the store.
    /// </summary>
    public static (Study Study, SearchSpace Space, string Folder) Share(ProcessGroup group, StudyHandle? handle)
    {
        if (group.IsRoot)
        {
            ArgumentNullException.ThrowIfNull(handle);
            if (group.Size > 1)
            {
                group.Broadcast(JsonSerializer.SerializeToUtf8Bytes(handle.Study), "sharing the study");
                group.Broadcast(Encoding.UTF8.GetBytes(handle.Folder), "sharing the study folder");
            }
            return (handle.Study, handle.Space, handle.Folder);
        }
        var study = JsonSerializer.Deserialize<Study>(group.Broadcast(null, "sharing the study"))!;
        string folder = Encoding.UTF8.GetString(group.Broadcast(null, "sharing the study folder"));
        return (study, SearchSpace.Parse(study.Space, $"study {study.Name}"), folder);
    }

    /// <summary>The space's template fitted to the dataset's tokenizer (when the proxy trains and the data is here).</summary>
    public static HybridConfig Template(SearchSpace space, string data)
    {
        var template = space.TemplateConfig();
        if (space.Proxy.Fitness == "synthetic" || !File.Exists(Path.Combine(data, DataManifest.FileName))) return template;
        return DataManifest.Load(data).ModelConfig(template);
    }

    /// <summary>The space's trial evaluator and the dataset it trains on (null for synthetic fitness); dispose the dataset. With a
    /// <paramref name="group"/> of several ranks the proxy trains each trial across them.</summary>
    public static (ITrialEvaluator Evaluator, TokenDataset? Dataset) Evaluation(SearchSpace space, string data, string scratch,
                                                                                double stepsFactor = 1, ProcessGroup? group = null)
    {
        if (space.Proxy.Fitness == "synthetic") return (new SyntheticFitness(space), null);
        var dataset = TokenDataset.Open(data);
        return (new ProxyTrainer(space, dataset, scratch, stepsFactor, group), dataset);
    }

    /// <summary>Runs (or resumes) a study to <see cref="SearchRunOptions.UntilCycle"/>, measures the front and writes the report.</summary>
    public static SearchReport.Outcome Run(SearchRunOptions options, torch.Device device, IProgress<string>? progress = null,
                                           CancellationToken cancellation = default)
    {
        var space = options.Space;
        string name = options.Study ?? space.Name, storage = options.Storage ?? DefaultStorage(name);
        string data = Path.GetFullPath(options.Data);
        using var store = StudyStore.Open(storage);
        store.CreateStudy(name, space.ToJson(), data);
        string folder = LocalFolder(storage, name);
        var template = Template(space, data);
        var predictor = LatencyTableFor(space, template, options.Table, folder, device, progress);
        var placer = new CandidatePlacer(space,
                                         c => predictor.PredictDecode(c, space.Latency.Batch, space.Latency.Prompt,
                                                                      space.Latency.DecodeTokens) * 1e3,
                                         template);
        var (evaluator, dataset) = Evaluation(space, data, Path.Combine(folder, "scratch"));
        using (dataset)
        {
            var worker = options.LocalWorker ? new SearchWorker(store, name, evaluator) : null;
            var driver = new SearchDriver(store, name, space, new AgingEvolution(space, placer), worker);
            progress?.Report($"study {name} in {store.Location}: {space.Evolution.Population} + {space.Evolution.Cycles} × " +
                             $"{space.Evolution.ChildrenPerCycle} trials");
            var trials = driver.Run(options.UntilCycle - 1, progress, cancellation);
            MeasureFront(store, name, space, template, predictor, options.MeasureFront, progress);
            return SearchReport.Write(store.Trials(name), space, template, name, folder);
        }
    }

    /// <summary>The predictor: the given table, the space's, the study's own, or a new one measured here for the space's operators
    /// and widths.</summary>
    static LatencyTable LatencyTableFor(SearchSpace space, HybridConfig template, string? path, string folder, torch.Device device,
                                        IProgress<string>? progress)
    {
        string file = path ?? space.Latency.Table ?? Path.Combine(folder, "latency-table.json");
        if (File.Exists(file))
        {
            var loaded = LatencyTable.Load(file);
            loaded.EnsureDevice(DeviceIdentity.Current(device));
            return loaded;
        }
        progress?.Report("measuring a latency table for this space");
        int context = space.Latency.Prompt + space.Latency.DecodeTokens;
        var keys = space.LatencyKeys();
        // Enough architectures for the presence and mixer-change terms too (FittedCosts.Fit: twice its 2 · keys + 2 columns).
        var table = LatencyTable.Build(template, keys, space.Widths, [space.Latency.Batch], [Math.Max(16, space.Latency.Prompt), context],
                                       DeviceIdentity.Current(device), new InterleaveOptions { Passes = 9 },
                                       fitArchitectures: Math.Max(16, 4 * keys.Count + 4), progress: progress);
        Directory.CreateDirectory(folder);
        table.Save(file);
        progress?.Report($"latency table saved to {file}");
        return table;
    }

    /// <summary>Rounds of the front's measurement (median kept): one measurement of a 12-layer design moved by up to 15 %.</summary>
    const int FrontRounds = 3;

    /// <summary>
    /// The front's latency measured for real (random weights; the same decode the predictor models), interleaved with the
    /// table's reference so it is in the table's units (<see cref="LatencyTable.Measure"/>); then the predicted-feasible
    /// trials in order of proxy loss until one meets the target when measured (at most <paramref name="count"/> more), so
    /// the report's winner is the best design whose measured latency meets the target. The seeded designs (the pure-operator
    /// baselines) are measured too, so the report compares the winner with them by measured latency.
    /// </summary>
    static void MeasureFront(StudyStore store, string study, SearchSpace space, HybridConfig template, LatencyTable table, int count,
                             IProgress<string>? progress)
    {
        int context = space.Latency.Prompt + space.Latency.DecodeTokens / 2;
        void Measure(IReadOnlyList<Trial> trials)
        {
            var configs = trials.Select(t => space.Config(Architecture.Parse(t.Architecture, space), t.Width, template)).ToList();
            var steps = table.Measure(configs, space.Latency.Batch, context, new InterleaveOptions { Rounds = FrontRounds }, progress);
            for (int i = 0; i < trials.Count; i++)
            {
                double ms = steps[i].Seconds * space.Latency.DecodeTokens * 1e3;
                double raw = steps[i].RawSeconds * space.Latency.DecodeTokens * 1e3;
                progress?.Report($"trial #{trials[i].Number}: predicted {trials[i].PredictedLatencyMs:F0} ms, measured {ms:F0} ms " +
                                 $"at the table's machine speed ({raw:F0} ms at this moment's)");
                store.SetMeasuredLatency(trials[i].Id, ms);
            }
        }
        var done = store.Trials(study).Where(t => t.Status == "done" && t.ProxyLoss is not null).ToList();
        var seeds = space.Seeds.Select(s => Architecture.Parse(s, space).ToString()).ToHashSet();
        Measure(Common.Pareto.Front(done, t => t.ProxyLoss!.Value, t => t.PredictedLatencyMs).OrderBy(t => t.ProxyLoss).Take(count)
                    .Concat(done.Where(t => t.Cycle < 0 && seeds.Contains(t.Architecture)))   // the baselines, measured too
                    .DistinctBy(t => t.Id).Where(t => t.MeasuredLatencyMs is null).ToList());
        int extra = 0;
        foreach (var candidate in done.Where(t => t.Feasible).OrderBy(t => t.ProxyLoss))
        {
            var trial = store.Trials(study).First(t => t.Id == candidate.Id);
            if (trial.MeasuredLatencyMs is null)
            {
                if (extra++ == count) break;
                Measure([trial]);
                trial = store.Trials(study).First(t => t.Id == candidate.Id);
            }
            if (SearchSummary.MeetsTarget(trial.MeasuredLatencyMs!.Value, space)) break;
        }
    }
}
