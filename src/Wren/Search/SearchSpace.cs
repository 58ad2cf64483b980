using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Checkpoints;
using Wren.Models;
using Wren.Operators;
using Wren.Training;

namespace Wren.Search;

/// <summary>How candidates are timed: decode <see cref="DecodeTokens"/> tokens after <see cref="Prompt"/> at <see cref="Batch"/>, against a
/// target.</summary>
public sealed record LatencySettings
{
    /// <summary>The latency budget in milliseconds (aging-evolution mode); null in multi-objective mode.</summary>
    public double? TargetMs { get; init; }
    public int Batch { get; init; } = 1;
    public int Prompt { get; init; }
    public int DecodeTokens { get; init; } = 1024;
    /// <summary>A latency table (wren profile lut build); when null, the search builds one for the space and keeps it beside the
    /// study.</summary>
    public string? Table { get; init; }
}

/// <summary>The short-training proxy: how long each candidate trains, or <c>synthetic</c> (a fixed function of the architecture, for dry
/// runs of a search setup).</summary>
public sealed record ProxySettings
{
    public string Fitness { get; init; } = "train";
    public long Steps { get; init; } = 60;
    public int BatchSize { get; init; } = 8;
    public int SeqLen { get; init; } = 128;
    public double LearningRate { get; init; } = 2e-3;
    public long WarmupSteps { get; init; } = 10;
    public int EvalWindows { get; init; } = 32;
    /// <summary>Synthetic fitness only: seconds each evaluation pretends to take.</summary>
    public double SyntheticSeconds { get; init; }

    public TrainingOptions Training(long seed, double stepsFactor = 1) => new()
    {
        Steps = (long)Math.Round(Steps * stepsFactor), BatchSize = BatchSize, SeqLen = SeqLen, LearningRate = LearningRate,
        WarmupSteps = WarmupSteps, EvalWindows = EvalWindows, Seed = seed, EvalEvery = TrainingOptions.Never,
        CheckpointEvery = TrainingOptions.Never, LogEvery = Math.Max(1, Steps / 10), KeepCheckpoints = 1,
    };
}

/// <summary>Aging evolution settings (Nemotron-Flash paper, evolutionary search).</summary>
public sealed record EvolutionSettings
{
    public int Population { get; init; } = 8;
    public int Sample { get; init; } = 3;
    public int ChildrenPerCycle { get; init; } = 4;
    public int Cycles { get; init; } = 5;
    public long Seed { get; init; }
    /// <summary>Keep the (loss, latency) Pareto front instead of a fixed latency target; width becomes a searched factor.</summary>
    public bool MultiObjective { get; init; }
}

/// <summary>
/// The search space as data (a JSON file users edit): three stages, each repeating one block of at most two mixer
/// types in a ratio, each mixer followed by 0–2 FFNs; blocks per stage free up to a total operator count; the width
/// set by the latency target. Also the proxy, latency and evolution settings and the seeded known designs.
/// </summary>
public sealed record SearchSpace
{
    public string Name { get; init; } = "search";
    /// <summary>Base model config (preset or path): head sizes, norms, meta tokens; layers and width are the search's.</summary>
    public string Template { get; init; } = "flash-quick";
    public int Stages { get; init; } = 3;
    public List<string> Mixers { get; init; } = ["deltanet", "m2", "a"];
    public List<string> Ratios { get; init; } = ["0:1", "1:1", "1:2", "1:3"];
    public List<int> FfnPerMixer { get; init; } = [0, 1, 2];
    public int MaxOperators { get; init; } = 30;
    public int MaxBlocksPerStage { get; init; } = 8;
    public List<int> Widths { get; init; } = [1024, 1280, 1536, 1792, 2048, 2304, 2560];
    /// <summary>Window of <c>"swa"</c> mixers (sliding-window attention).</summary>
    public int SlidingWindow { get; init; } = 512;
    public LatencySettings Latency { get; init; } = new();
    public ProxySettings Proxy { get; init; } = new();
    public EvolutionSettings Evolution { get; init; } = new();
    /// <summary>Known designs that seed the population, e.g. <c>"deltanet+m2 1:1 ffn1 x3 | …"</c> (see <see
    /// cref="Architecture.Parse"/>).</summary>
    public List<string> Seeds { get; init; } = [];

    /// <summary>Mixer names a space may use: every registered operator's <see cref="OperatorSpec.SearchNames"/>.</summary>
    public static IEnumerable<string> KnownMixers => OperatorRegistry.SearchNames;

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static SearchSpace Parse(string json, string source)
    {
        SearchSpace? space;
        try { space = JsonSerializer.Deserialize<SearchSpace>(json, Json); }
        catch (JsonException e) { throw new WrenException($"{source}: invalid search space ({StrictJson.Explain(e)})", e); }
        if (space is null) throw new WrenException($"{source}: empty search space");
        space.Validate(source);
        return space;
    }

    /// <summary>A search-space file, or a built-in one by name (<c>quick</c>, <c>default</c>, <c>all-operators</c>).</summary>
    public static SearchSpace Load(string pathOrName)
    {
        if (File.Exists(pathOrName)) return Parse(File.ReadAllText(pathOrName), pathOrName);
        using var stream = typeof(SearchSpace).Assembly.GetManifestResourceStream($"Wren.SearchSpaces.{pathOrName}.json")
            ?? throw new WrenException($"search space not found: '{pathOrName}' is neither a file nor a built-in space " +
                                        "(quick, default, all-operators)");
        return Parse(new StreamReader(stream).ReadToEnd(), $"search space {pathOrName}");
    }

    public void Validate(string source = "search space")
    {
        void Require(bool ok, string message) { if (!ok) throw new WrenException($"{source}: {message}"); }
        Require(Stages >= 1, "stages must be ≥ 1");
        Require(Mixers.Count >= 1, "give at least one mixer");
        foreach (var m in Mixers) Require(KnownMixers.Contains(m), $"unknown mixer '{m}' (known: {string.Join(", ", KnownMixers)})");
        Require(Ratios.Count >= 1, "give at least one ratio");
        foreach (var r in Ratios) Require(TryRatio(r, out _, out _), $"ratio '{r}' is not 'a:b' with a ≥ 0, b ≥ 1");
        Require(FfnPerMixer.Count >= 1 && FfnPerMixer.All(f => f is >= 0 and <= 4), "ffn_per_mixer values must be in 0…4");
        Require(MaxOperators >= 1 && MaxBlocksPerStage >= 1, "max_operators and max_blocks_per_stage must be ≥ 1");
        Require(Widths.Count >= 1 && Widths.All(w => w > 0), "give at least one positive width");
        Require(Evolution.Population >= 2 && Evolution.Sample >= 1 && Evolution.Sample <= Evolution.Population
            && Evolution.ChildrenPerCycle >= 1 && Evolution.Cycles >= 0,
                "evolution needs population ≥ 2, 1 ≤ sample ≤ population, children_per_cycle ≥ 1, cycles ≥ 0");
        Require(Evolution.MultiObjective || Latency.TargetMs is > 0, "set latency.target_ms, or evolution.multi_objective = true");
        Require(Proxy.Fitness is "train" or "synthetic", $"proxy.fitness must be 'train' or 'synthetic', not '{Proxy.Fitness}'");
        Require(Proxy.Steps >= 1 && Proxy.BatchSize >= 1 && Proxy.SeqLen >= 1, "proxy steps, batch size and sequence length must be ≥ 1");
        foreach (var seed in Seeds) Architecture.Parse(seed, this);
        var template = TemplateConfig();
        foreach (var width in Widths)   // every mixer fits the template's head sizes at every width
            foreach (var mixer in Mixers)
            {
                try { ConfigOf([mixer, Ffn.Spec.Name], width, template).Validate(); }
                catch (WrenException e) { throw new WrenException($"{source}: mixer '{mixer}' at width {width}: {e.Message}", e); }
            }
    }

    public static bool TryRatio(string ratio, out int first, out int second)
    {
        first = second = 0;
        var parts = ratio.Split(':');
        return parts.Length == 2 && int.TryParse(parts[0], out first) && int.TryParse(parts[1], out second) && first >= 0 && second >= 1
            && first <= second;
    }

    public HybridConfig TemplateConfig() => HybridConfig.Load(Template);

    /// <summary>The model config of an architecture at a width: layer types from the stages ("swa" → sliding-window "a").</summary>
    public HybridConfig Config(Architecture architecture, int width, HybridConfig? template = null) =>
        ConfigOf(architecture.Layers(this), width, template ?? TemplateConfig());

    /// <summary>The latency-table keys the layers of this space's architectures can have (FFN-only layers included).</summary>
    public IReadOnlyList<string> LatencyKeys()
    {
        var template = TemplateConfig();
        var config = ConfigOf([.. Mixers, Ffn.Spec.Name], template.HiddenSize, template);
        return Enumerable.Range(0, config.NumLayers).Select(i => OperatorRegistry.Of(config, i).LatencyKey(config, i)).Distinct().ToList();
    }

    /// <summary>Mixer names (and "f") → layer types; layers of a windowed mixer name get <see cref="SlidingWindow"/>, the rest stay
    /// global.</summary>
    HybridConfig ConfigOf(IReadOnlyList<string> mixers, int width, HybridConfig template)
    {
        var found = mixers.Select(OperatorRegistry.ForSearchName).ToList();
        var config = template.WithShape(mixers.Select((m, i) => found[i]?.Operator.Name ?? m).ToList(), width);
        return config.WithWindowOn(Enumerable.Range(0, mixers.Count).Where(i => found[i]?.Mixer.SlidingWindow == true).ToList(),
                                   SlidingWindow);
    }
}
