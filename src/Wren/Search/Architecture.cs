namespace Wren.Search;

/// <summary>
/// One stage: a block of two mixer types in ratio <see cref="FirstShare"/>:<see cref="SecondShare"/> (0:1 = the second
/// alone), each mixer followed by <see cref="Ffns"/> FFNs, repeated <see cref="Blocks"/> times.
/// </summary>
public sealed record StageGene(string First, string Second, int FirstShare, int SecondShare, int Ffns, int Blocks)
{
    public string Ratio => $"{FirstShare}:{SecondShare}";

    /// <summary>One block's layer types, the first-type mixers spread among the second-type ones.</summary>
    public IEnumerable<string> Block()
    {
        for (int i = 0; i < FirstShare + SecondShare; i++)
        {
            // Spread the first-type mixers evenly, starting the block: position i is first-type when ⌈(i+1)·a/(a+b)⌉ steps up.
            int n = FirstShare + SecondShare;
            bool first = ((i + 1) * FirstShare + n - 1) / n > (i * FirstShare + n - 1) / n;
            yield return first ? First : Second;
            for (int f = 0; f < Ffns; f++) yield return Operators.Ffn.Spec.Name;
        }
    }

    /// <summary>Equal genes get equal text: a 0:1 stage has no first type (written as the second).</summary>
    public StageGene Canonical() => FirstShare == 0 ? this with { First = Second } : this;

    public override string ToString() =>
        (FirstShare == 0 ? Second : $"{First}+{Second}") + $" {Ratio} ffn{Ffns} x{Blocks}";
}

/// <summary>A searched architecture: its stages and, in multi-objective mode, its width (0 = set by the latency rule).</summary>
public sealed record Architecture(IReadOnlyList<StageGene> Stages, int Width = 0)
{
    /// <summary>The layer types (mixers as in the space, e.g. "swa"), stages in order, trimmed to the operator budget.</summary>
    public IReadOnlyList<string> Layers(SearchSpace space) =>
        Stages.SelectMany(stage => Enumerable.Repeat(0, stage.Blocks).SelectMany(_ => stage.Block())).Take(space.MaxOperators).ToList();

    /// <summary>Text form, e.g. <c>deltanet+m2 1:1 ffn1 x3 | m2 0:1 ffn2 x2 | a+m2 1:3 ffn1 x1 @256</c>; round-trips through <see
    /// cref="Parse"/>.</summary>
    public override string ToString() => string.Join(" | ", Stages.Select(s => s.ToString())) + (Width > 0 ? $" @{Width}" : "");

    public static Architecture Parse(string text, SearchSpace space)
    {
        int width = 0;
        string body = text.Trim();
        int at = body.LastIndexOf('@');
        if (at >= 0)
        {
            if (!int.TryParse(body[(at + 1)..].Trim(),
                              out width)) throw new WrenException($"architecture '{text}': width after '@' is not a number");
            body = body[..at];
        }
        var stages = body.Split('|').Select(s => ParseStage(s.Trim(), text, space)).ToList();
        if (stages.Count != space.Stages) throw new WrenException($"architecture '{text}' has {stages.Count} stage(s); the space has " +
                                                                  $"{space.Stages}");
        return new Architecture(stages, width);
    }

    static StageGene ParseStage(string stage, string text, SearchSpace space)
    {
        var parts = stage.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string Fail(string why) =>
            throw new WrenException($"architecture '{text}', stage '{stage}': {why} (expected e.g. 'deltanet+m2 1:1 ffn1 x3')");
        if (parts.Length != 4) Fail("four parts");
        var mixers = parts[0].Split('+');
        if (!SearchSpace.TryRatio(parts[1], out int a, out int b)) Fail($"bad ratio '{parts[1]}'");
        if (!parts[2].StartsWith("ffn") || !int.TryParse(parts[2][3..], out int ffns)) Fail($"bad FFN count '{parts[2]}'");
        if (!parts[3].StartsWith('x') || !int.TryParse(parts[3][1..], out int blocks) || blocks < 1) Fail($"bad block count '{parts[3]}'");
        if (mixers.Length is < 1 or > 2 || (a > 0) != (mixers.Length == 2)) Fail("two mixers with a ratio a:b (a > 0), or one with 0:1");
        foreach (var m in mixers)
            if (!SearchSpace.KnownMixers.Contains(m)) Fail($"unknown mixer '{m}'");
        return new StageGene(mixers[0], mixers[^1], a, b, ffns, blocks).Canonical();
    }

    /// <summary>A uniformly random architecture of the space.</summary>
    public static Architecture Random(SearchSpace space, Random random)
    {
        var stages = Enumerable.Range(0, space.Stages).Select(_ =>
        {
            SearchSpace.TryRatio(space.Ratios[random.Next(space.Ratios.Count)], out int a, out int b);
            string second = space.Mixers[random.Next(space.Mixers.Count)];
            var others = space.Mixers.Where(m => m != second).ToList();
            string first = a == 0 || others.Count == 0 ? second : others[random.Next(others.Count)];
            if (a > 0 && others.Count == 0) (a, b) = (0, 1);
            return new StageGene(first, second, a, b, space.FfnPerMixer[random.Next(space.FfnPerMixer.Count)],
                                 1 + random.Next(space.MaxBlocksPerStage)).Canonical();
        }).ToList();
        int width = space.Evolution.MultiObjective ? space.Widths[random.Next(space.Widths.Count)] : 0;
        return new Architecture(stages, width);
    }

    /// <summary>The factors a mutation may change.</summary>
    public static readonly string[] Factors = ["operator", "ratio", "ffn", "blocks"];

    /// <summary>
    /// Changes exactly one factor of one stage (one operator, the mixer ratio, the FFN count or the block count), or the
    /// width in multi-objective mode, such that the layer sequence changes. Returns the child and what changed.
    /// </summary>
    public (Architecture Child, string Change) Mutate(SearchSpace space, Random random)
    {
        var layers = string.Join(" ", Layers(space));
        for (int attempt = 0; attempt < 200; attempt++)
        {
            var factors = space.Evolution.MultiObjective && space.Widths.Count > 1 ? [.. Factors, "width"] : Factors;
            string factor = factors[random.Next(factors.Length)];
            if (factor == "width")
            {
                var widths = space.Widths.Where(w => w != Width).ToList();
                int width = widths[random.Next(widths.Count)];
                return (this with { Width = width }, $"width {Width} → {width}");
            }
            int index = random.Next(Stages.Count);
            var stage = Stages[index];
            StageGene? changed = null;
            switch (factor)
            {
                case "operator":
                {
                    bool first = stage.FirstShare > 0 && random.Next(2) == 0;
                    string current = first ? stage.First : stage.Second, other = first ? stage.Second : stage.First;
                    var options = space.Mixers.Where(m => m != current && (stage.FirstShare == 0 || m != other)).ToList();
                    if (options.Count == 0) continue;
                    string pick = options[random.Next(options.Count)];
                    changed = first ? stage with { First = pick } : stage with { Second = pick };
                    break;
                }
                case "ratio":
                {
                    var options = space.Ratios.Where(r => r != stage.Ratio).ToList();
                    if (options.Count == 0) continue;
                    SearchSpace.TryRatio(options[random.Next(options.Count)], out int a, out int b);
                    string first = stage.First;
                    if (stage.FirstShare == 0 && a > 0)
                    {
                        var others = space.Mixers.Where(m => m != stage.Second).ToList();
                        if (others.Count == 0) continue;
                        first = others[random.Next(others.Count)];   // a new mixer type enters with the ratio; no other factor moves
                    }
                    changed = stage with { First = first, FirstShare = a, SecondShare = b };
                    break;
                }
                case "ffn":
                {
                    var options = space.FfnPerMixer.Where(f => f != stage.Ffns).ToList();
                    if (options.Count == 0) continue;
                    changed = stage with { Ffns = options[random.Next(options.Count)] };
                    break;
                }
                case "blocks":
                {
                    int blocks = stage.Blocks + (random.Next(2) == 0 ? -1 : 1);
                    if (blocks < 1 || blocks > space.MaxBlocksPerStage) continue;
                    changed = stage with { Blocks = blocks };
                    break;
                }
            }
            var stages = Stages.ToList();
            stages[index] = changed!.Canonical();
            var child = this with { Stages = stages };
            if (string.Join(" ", child.Layers(space)) != layers) return (child, $"stage {index + 1} {factor}: {stage} → {stages[index]}");
        }
        throw new WrenException($"no single-factor mutation of '{this}' changes its layers in this space");
    }
}
