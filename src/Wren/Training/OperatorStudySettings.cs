using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Evaluation;
using Wren.Models;
using Wren.Operators;

namespace Wren.Training;

/// <summary>Decode measurements of the operator study: latency at batch 1 and throughput at a memory budget.</summary>
public sealed record StudyLatency
{
    /// <summary>Prompt tokens before decoding (the paper: 8192).</summary>
    public int Context { get; init; } = 8192;
    /// <summary>Greedy tokens decoded per timed run.</summary>
    public int DecodeTokens { get; init; } = 8;
    /// <summary>Interleaved passes: each pass times every design once, in turn; the median over passes is reported.</summary>
    public int Passes { get; init; } = 5;
    /// <summary>Memory budget (GiB) for the throughput measure; 0 skips throughput.</summary>
    public double MemoryBudgetGib { get; init; } = 4;
    /// <summary>Largest batch tried for throughput.</summary>
    public int MaxBatch { get; init; } = 64;
}

/// <summary>
/// The operator study's settings (<c>configs/experiments/operators.json</c>): which designs, at which scale, trained how,
/// measured how. Every model has <see cref="Operators"/> layers, mixer and FFN alternating (the method's §2 setup).
/// </summary>
public sealed record OperatorStudySettings
{
    /// <summary>Model preset or config.json giving everything but the layer types, width and FFN size.</summary>
    public string Template { get; init; } = "flash-tiny";
    /// <summary>Layers per model: mixers and FFNs alternating (the paper: 24). Must be even.</summary>
    public int Operators { get; init; } = 24;
    /// <summary>Width of the reference design (the first one) whose parameter count every design matches.</summary>
    public int Width { get; init; } = 256;
    /// <summary>Parameter count to match instead of the reference design's.</summary>
    public long? TargetParameters { get; init; }
    /// <summary>Largest relative parameter gap allowed (0.02 = ±2 %).</summary>
    public double Tolerance { get; init; } = 0.02;
    /// <summary>Head dimension of attention and linear-attention heads; widths are multiples of it.</summary>
    public int HeadDim { get; init; } = 32;
    /// <summary>FFN size ÷ width: the nominal value and the range the solver may use to match parameters.</summary>
    public double FfnRatio { get; init; } = 3;
    public List<double> FfnRatioRange { get; init; } = [2, 4];
    /// <summary>FFN sizes are multiples of this (the released rule: 128; small studies need a finer step to match parameters).</summary>
    public int FfnMultiple { get; init; } = 128;
    /// <summary>Mamba2 head width instead of the template's. Mamba2 needs a multiple of 8 heads (the released norm groups),
    /// so its widths are multiples of 8·head ÷ expand; a smaller head lets small studies reach more widths.</summary>
    public int? Mamba2HeadDim { get; init; }
    /// <summary>Window of the "swa" design (the paper: 512).</summary>
    public int SlidingWindow { get; init; } = 512;
    /// <summary>Designs: one mixer name (pure model) or two joined by "+" (their layers alternate).</summary>
    public List<string> Designs { get; init; } = [];
    /// <summary>Seeds: each design is trained once per seed (initialization and data order).</summary>
    public List<long> Seeds { get; init; } = [0, 1];
    /// <summary>Training options shared by every run (the seed is replaced by each of <see cref="Seeds"/>).</summary>
    public TrainingOptions Training { get; init; } = new();
    /// <summary>Evaluation tasks (as <c>wren eval --tasks</c>); empty = none.</summary>
    public List<string> EvalTasks { get; init; } = [];
    public int? EvalLimit { get; init; }
    public StudyLatency Latency { get; init; } = new();

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        AllowDuplicateProperties = false,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>
    /// Reads and validates a settings file, or a built-in one by name (<c>operators</c>, <c>operators-small</c>: the files of
    /// <c>configs/experiments</c>); any fault is a one-line <see cref="WrenException"/> naming the source.
    /// </summary>
    public static OperatorStudySettings Load(string pathOrName)
    {
        string json;
        if (File.Exists(pathOrName)) json = File.ReadAllText(pathOrName);
        else
        {
            using var stream = typeof(OperatorStudySettings).Assembly.GetManifestResourceStream($"Wren.Experiments.{pathOrName}.json")
                ?? throw new WrenException($"experiment settings not found: '{pathOrName}' is neither a file nor a built-in one " +
                                           "(operators, operators-small)");
            json = new StreamReader(stream).ReadToEnd();
        }
        OperatorStudySettings? settings;
        try { settings = JsonSerializer.Deserialize<OperatorStudySettings>(json, Json); }
        catch (JsonException e) { throw new WrenException($"{pathOrName}: invalid experiment settings ({StrictJson.Explain(e)})", e); }
        (settings ?? throw new WrenException($"{pathOrName}: empty experiment settings")).Validate(pathOrName);
        return settings;
    }

    public void Validate(string source = "experiment settings")
    {
        void Require(bool ok, string message) { if (!ok) throw new WrenException($"{source}: {message}"); }
        Require(Operators >= 2 && Operators % 2 == 0, $"operators must be even and ≥ 2 (mixer and FFN alternate), not {Operators}");
        Require(Width > 0 && HeadDim > 0 && Width % HeadDim == 0, $"width {Width} must be a positive multiple of head_dim {HeadDim}");
        Require(TargetParameters is null or > 0, "target_parameters must be positive");
        Require(Tolerance is > 0 and < 1, "tolerance must be in (0, 1)");
        Require(FfnRatioRange.Count == 2 && FfnRatioRange[0] > 0 && FfnRatioRange[0] <= FfnRatio && FfnRatio <= FfnRatioRange[1],
                "ffn_ratio_range must be [low, high] with 0 < low ≤ ffn_ratio ≤ high");
        Require(FfnMultiple > 0, "ffn_multiple must be positive");
        Require(Mamba2HeadDim is null or > 0, "mamba2_head_dim must be positive");
        Require(SlidingWindow > 0, "sliding_window must be positive");
        Require(Designs.Count >= 1, "give at least one design");
        Require(Designs.Distinct().Count() == Designs.Count, "designs must be distinct");
        foreach (var d in Designs)
        {
            try { StudyDesign.Mixers(d, Operators / 2); }
            catch (WrenException e) { throw new WrenException($"{source}: {e.Message}", e); }
        }
        Require(Seeds.Count >= 1 && Seeds.Distinct().Count() == Seeds.Count, "give at least one seed, each once");
        Require(Training.Steps > 0 || Training.Tokens > 0, "training needs steps or tokens");
        Require(EvalLimit is null or > 0, "eval_limit must be positive");
        Require(Latency.Context >= 0 && Latency.DecodeTokens >= 1 && Latency.Passes >= 1 && Latency.MaxBatch >= 1
            && Latency.MemoryBudgetGib >= 0,
                "latency needs context ≥ 0, decode_tokens, passes, max_batch ≥ 1, memory_budget_gib ≥ 0");
        if (EvalTasks.Count > 0) TaskFiles.Resolve(EvalTasks);
    }
}

/// <summary>A design of the study, solved: its name, model config (width and FFN size matched) and parameter count.</summary>
public sealed record StudyDesign(string Name, HybridConfig Config, long Parameters)
{
    /// <summary>
    /// The mixer layer types of a design: "m2" → 12 × m2; "deltanet+m2" → deltanet, m2, deltanet, … Names are search-space
    /// mixer names (a, swa, m2, deltanet, …) or registered mixer layer types (hymba). Unknown names are a one-line error.
    /// </summary>
    public static IReadOnlyList<string> Mixers(string design, int count)
    {
        var parts = design.Split('+');
        if (parts.Length > 2 || parts.Any(p => p.Length == 0)) throw new WrenException($"design '{design}' must be 'op' or 'op1+op2'");
        if (parts is [var first, var second] && first == second)
            throw new WrenException($"design '{design}' names {first} twice: write '{first}' for the pure model");
        foreach (var p in parts)
            if (OperatorRegistry.ForSearchName(p) is null && !(OperatorRegistry.IsKnown(p) && OperatorRegistry.Get(p).Create is not null))
                throw new WrenException($"design '{design}': unknown mixer '{p}' (known: {string.Join(", ", KnownMixers)})");
        return Enumerable.Range(0, count).Select(i => parts[i % parts.Length]).ToList();
    }

    /// <summary>Every name a design may use.</summary>
    public static IEnumerable<string> KnownMixers => OperatorRegistry.SearchNames
        .Concat(OperatorRegistry.All.Where(s => s.Create is not null && s.SearchNames.Count == 0).Select(s => s.Name)).Distinct();

    /// <summary>
    /// The config of a design at a width and FFN size: mixer and FFN alternating, no meta tokens; "swa" layers get the
    /// window, other attention layers stay global. The FFN ratio is (ffn + ½) ÷ width so that the Nemotron-Flash rule
    /// ⌊ratio·width⌋ rounded down to the FFN step gives exactly <paramref name="ffn"/>.
    /// </summary>
    public static HybridConfig ConfigOf(string design, HybridConfig template, int operators, int width, int ffn, int window)
    {
        var mixers = Mixers(design, operators / 2);
        var found = mixers.Select(OperatorRegistry.ForSearchName).ToList();
        var layers = mixers.SelectMany((m, i) => new[] { found[i]?.Operator.Name ?? m, Ffn.Spec.Name }).ToList();
        var shaped = (template with { FfnExpandRatio = (ffn + 0.5) / width, IntermediateSize = 0, NumMemoryTokens = 0 })
            .WithShape(layers, width);
        var windowed = Enumerable.Range(0, layers.Count).Where(i => i % 2 == 0 && found[i / 2]?.Mixer.SlidingWindow == true).ToList();
        var config = shaped.WithWindowOn(windowed, window);
        config.Validate(design);
        return config;
    }
}
