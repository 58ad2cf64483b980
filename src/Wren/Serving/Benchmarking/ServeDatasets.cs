namespace Wren.Serving.Benchmarking;

/// <summary>One chat message of a benchmark request.</summary>
/// <param name="Role"><c>user</c> or <c>assistant</c>.</param>
public sealed record BenchMessage(string Role, string Content);

/// <summary>One request: the whole conversation up to this turn (ending with a user message) and the tokens to ask for.</summary>
/// <param name="MaxTokens">The request's <c>max_tokens</c> (≥ 1).</param>
public sealed record BenchTurn(IReadOnlyList<BenchMessage> Messages, int MaxTokens)
{
    /// <summary>Characters of all message contents: the prompt's length in tokens for a byte tokenizer (ASCII text), before the
    /// chat template's own tokens.</summary>
    public int PromptCharacters => Messages.Sum(m => m.Content.Length);
}

/// <summary>Requests that go in order: a turn is sent when the one before it has finished. One turn outside multi-turn.</summary>
public sealed record BenchConversation(IReadOnlyList<BenchTurn> Turns);

/// <summary>The three datasets <c>bench serve</c> generates (<see cref="ServeDatasets.Generate"/>).</summary>
public enum ServeDatasetKind { Random, PrefixRepetition, MultiTurn }

/// <summary>
/// How to generate a benchmark dataset; lengths are in characters of random ASCII text (one token each for a byte tokenizer;
/// a subword tokenizer counts fewer, which the server's reported usage gives).
/// </summary>
/// <param name="NumPrompts">Requests (random, prefix-repetition) or conversations (multi-turn, <paramref name="Turns"/> requests
/// each).</param>
/// <param name="InputLength">Random: the prompt; multi-turn: each user message.</param>
/// <param name="OutputLength">Tokens asked for per request (random: the centre of the range); multi-turn: also the length of each
/// assistant reply put in the history.</param>
/// <param name="RangeRatio">Random and multi-turn: lengths are drawn uniformly from [⌊L·(1−r)⌋, ⌊L·(1+r)⌋] (vLLM's
/// <c>--random-range-ratio</c>), output at least 1.</param>
/// <param name="PrefixLength">Prefix-repetition: characters of each shared prefix.</param>
/// <param name="SuffixLength">Prefix-repetition: characters of the random suffix after it.</param>
/// <param name="NumPrefixes">Prefix-repetition: distinct prefixes, used in turn by the requests.</param>
/// <param name="Turns">Multi-turn: user turns per conversation.</param>
public sealed record ServeDatasetOptions(ServeDatasetKind Kind, int NumPrompts, int Seed = 0, int InputLength = 256, int OutputLength = 128,
                                         double RangeRatio = 0, int PrefixLength = 1024, int SuffixLength = 256, int NumPrefixes = 4,
                                         int Turns = 4)
{
    public void Validate()
    {
        if (NumPrompts < 1) throw new WrenException($"--num-prompts must be >= 1, got {NumPrompts}");
        if (InputLength < 1 || OutputLength < 1) throw new WrenException("input and output lengths must be >= 1");
        if (RangeRatio is < 0 or >= 1) throw new WrenException($"--random-range-ratio must be in [0, 1), got {RangeRatio}");
        if (PrefixLength < 0 || SuffixLength < 1) throw new WrenException("prefix length must be >= 0 and suffix length >= 1");
        if (NumPrefixes < 1) throw new WrenException($"--prefix-repetition-num-prefixes must be >= 1, got {NumPrefixes}");
        if (Turns < 1) throw new WrenException($"--multi-turn-turns must be >= 1, got {Turns}");
    }

    /// <summary>
    /// <c>random</c>, <c>prefix-repetition</c> or <c>multi-turn</c>; a one-line error naming the choices otherwise.
    /// </summary>
    public static ServeDatasetKind ParseKind(string name) => name switch
    {
        "random" => ServeDatasetKind.Random,
        "prefix-repetition" => ServeDatasetKind.PrefixRepetition,
        "multi-turn" => ServeDatasetKind.MultiTurn,
        _ => throw new WrenException($"--dataset must be random, prefix-repetition or multi-turn, got '{name}'"),
    };
}

/// <summary>
/// Benchmark datasets generated locally from a seed, so every run and every server gets the same requests (the shapes of vLLM's
/// <c>bench serve</c> random and prefix-repetition datasets; multi-turn as its multi-turn chat benchmark, with fixed assistant
/// replies so that turn k+1's prompt extends turn k's exactly and a prefix cache can reuse it).
/// </summary>
public static class ServeDatasets
{
    /// <summary>The conversations of <paramref name="options"/>: the same for the same options and seed.</summary>
    public static IReadOnlyList<BenchConversation> Generate(ServeDatasetOptions options)
    {
        options.Validate();
        var random = new Random(options.Seed);
        return options.Kind switch
        {
            ServeDatasetKind.Random => Enumerable.Range(0, options.NumPrompts).Select(_ => Single(
                RandomText(random, Drawn(random, options.InputLength, options.RangeRatio, 1)),
                Drawn(random, options.OutputLength, options.RangeRatio, 1))).ToList(),
            ServeDatasetKind.PrefixRepetition => PrefixRepetition(random, options),
            _ => Enumerable.Range(0, options.NumPrompts).Select(_ => MultiTurn(random, options)).ToList(),
        };
    }

    static BenchConversation Single(string prompt, int maxTokens) => new([new BenchTurn([new BenchMessage("user", prompt)], maxTokens)]);

    static List<BenchConversation> PrefixRepetition(Random random, ServeDatasetOptions options)
    {
        var prefixes = Enumerable.Range(0, options.NumPrefixes).Select(_ => RandomText(random, options.PrefixLength)).ToArray();
        var requests = Enumerable.Range(0, options.NumPrompts)
            .Select(i => Single(prefixes[i % prefixes.Length] + RandomText(random, options.SuffixLength), options.OutputLength)).ToArray();
        random.Shuffle(requests);
        return [.. requests];
    }

    static BenchConversation MultiTurn(Random random, ServeDatasetOptions options)
    {
        var history = new List<BenchMessage>();
        var turns = new List<BenchTurn>();
        for (int t = 0; t < options.Turns; t++)
        {
            history.Add(new BenchMessage("user", RandomText(random, Drawn(random, options.InputLength, options.RangeRatio, 1))));
            turns.Add(new BenchTurn([.. history], options.OutputLength));
            history.Add(new BenchMessage("assistant", RandomText(random, options.OutputLength)));
        }
        return new BenchConversation(turns);
    }

    /// <summary>A length drawn uniformly from [⌊L·(1−r)⌋, ⌊L·(1+r)⌋], at least <paramref name="least"/> (vLLM's random
    /// dataset).</summary>
    static int Drawn(Random random, int length, double ratio, int least)
    {
        int low = Math.Max(least, (int)(length * (1 - ratio))), high = Math.Max(low, (int)(length * (1 + ratio)));
        return random.Next(low, high + 1);
    }

    /// <summary>Exactly <paramref name="length"/> characters of lowercase words of 1–8 letters separated by single spaces.</summary>
    internal static string RandomText(Random random, int length)
    {
        var text = new char[length];
        int word = 0, target = random.Next(1, 9);
        for (int i = 0; i < length; i++)
        {
            if (word == target && i < length - 1)
            {
                text[i] = ' ';
                word = 0;
                target = random.Next(1, 9);
                continue;
            }
            text[i] = (char)('a' + random.Next(26));
            word++;
        }
        return new string(text);
    }
}
