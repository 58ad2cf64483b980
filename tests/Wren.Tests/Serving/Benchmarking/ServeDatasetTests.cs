using Wren.Models;
using Wren.Serving;
using Wren.Serving.Benchmarking;

namespace Wren.Tests.Serving.Benchmarking;

/// <summary>The serve benchmark's generated datasets: their shapes, lengths and reproducibility.</summary>
public class ServeDatasetTests
{
    static IReadOnlyList<BenchConversation> Generate(ServeDatasetOptions options) => ServeDatasets.Generate(options);

    [Fact]
    public void Random_lengths_fall_in_the_range_ratio_window_and_a_seed_repeats_them()
    {
        var options = new ServeDatasetOptions(ServeDatasetKind.Random, 200, Seed: 3, InputLength: 100, OutputLength: 10, RangeRatio: 0.5);
        var data = Generate(options);
        Assert.Equal(200, data.Count);
        Assert.All(data, c => Assert.Single(c.Turns));
        var turns = data.Select(c => c.Turns[0]).ToList();
        Assert.All(turns, t => Assert.InRange(t.PromptCharacters, 50, 150));   // ⌊100·0.5⌋ … ⌊100·1.5⌋
        Assert.All(turns, t => Assert.InRange(t.MaxTokens, 5, 15));
        Assert.True(turns.Select(t => t.PromptCharacters).Distinct().Count() > 20);
        Assert.Equal(200, turns.Select(t => t.Messages[0].Content).Distinct().Count());
        Assert.Equal(turns, Generate(options).Select(c => c.Turns[0]), new TurnComparer());
        Assert.NotEqual(turns[0].Messages[0].Content, Generate(options with { Seed = 4 })[0].Turns[0].Messages[0].Content);
    }

    [Fact]
    public void Random_with_ratio_zero_has_exact_lengths_of_words()
    {
        var data = Generate(new ServeDatasetOptions(ServeDatasetKind.Random, 5, InputLength: 64, OutputLength: 7));
        Assert.All(data, c => Assert.Equal((64, 7), (c.Turns[0].PromptCharacters, c.Turns[0].MaxTokens)));
        var text = data[0].Turns[0].Messages[0].Content;
        Assert.Matches("^[a-z]+( [a-z]+)*$", text);
        Assert.All(text.Split(' '), w => Assert.InRange(w.Length, 1, 8));
    }

    [Fact]
    public void Prefix_repetition_shares_each_prefix_among_its_requests()
    {
        var data = Generate(new ServeDatasetOptions(ServeDatasetKind.PrefixRepetition, 10, PrefixLength: 20, SuffixLength: 5,
                                                    NumPrefixes: 2, OutputLength: 3));
        var prompts = data.Select(c => c.Turns.Single().Messages.Single().Content).ToList();
        Assert.All(prompts, p => Assert.Equal(25, p.Length));
        Assert.All(data, c => Assert.Equal(3, c.Turns[0].MaxTokens));
        var groups = prompts.GroupBy(p => p[..20]).ToList();
        Assert.Equal(2, groups.Count);
        Assert.All(groups, g => Assert.Equal(5, g.Count()));
        Assert.Equal(10, prompts.Distinct().Count());                      // the suffixes differ
    }

    [Fact]
    public void Multi_turn_extends_the_conversation_turn_by_turn()
    {
        var data = Generate(new ServeDatasetOptions(ServeDatasetKind.MultiTurn, 2, InputLength: 30, OutputLength: 12, Turns: 3));
        Assert.Equal(2, data.Count);
        foreach (var conversation in data)
        {
            Assert.Equal(3, conversation.Turns.Count);
            for (int k = 0; k < 3; k++)
            {
                var messages = conversation.Turns[k].Messages;
                Assert.Equal(2 * k + 1, messages.Count);                    // u1 a1 … uk
                Assert.Equal(Enumerable.Range(0, 2 * k + 1).Select(i => i % 2 == 0 ? "user" : "assistant"), messages.Select(m => m.Role));
                Assert.All(messages, m => Assert.Equal(m.Role == "user" ? 30 : 12, m.Content.Length));
                Assert.Equal(12, conversation.Turns[k].MaxTokens);
                Assert.Equal(30 * (k + 1) + 12 * k, conversation.Turns[k].PromptCharacters);
                if (k > 0) Assert.Equal(conversation.Turns[k - 1].Messages, messages.Take(2 * k - 1));
            }
        }
        Assert.NotEqual(data[0].Turns[0].Messages[0], data[1].Turns[0].Messages[0]);
    }

    [Fact]
    public void Bad_options_are_refused_in_one_line()
    {
        Assert.Throws<WrenException>(() => Generate(new ServeDatasetOptions(ServeDatasetKind.Random, 0)));
        Assert.Throws<WrenException>(() => Generate(new ServeDatasetOptions(ServeDatasetKind.Random, 1, RangeRatio: 1)));
        Assert.Throws<WrenException>(() => ServeDatasetOptions.ParseKind("sharegpt"));
        Assert.Equal(ServeDatasetKind.MultiTurn, ServeDatasetOptions.ParseKind("multi-turn"));
    }

    [Fact]
    public void Slots_within_a_budget_leave_room_for_weights_prefix_cache_and_the_staging_rows()
    {
        var footprint = ModelFootprint.Of(HybridConfig.Load("flash-tiny"));
        var options = new EngineOptions { MaxContext = 256, PrefixCacheBytes = 1000, PrefillChunk = 64, MaxBatchedTokens = 100 };
        long slot = footprint.CacheBytes(1, 256);
        // 5.5 slots beside the weights and the prefix cache: ⌈100 / 64⌉ = 2 are staging, 3 whole ones remain.
        Assert.Equal(2, options.StagingRows);
        Assert.Equal(3, options.SlotsWithin(footprint, footprint.WeightBytes + 1000 + 5 * slot + slot / 2));
        Assert.Equal(0, options.SlotsWithin(footprint, footprint.WeightBytes));
    }

    sealed class TurnComparer : IEqualityComparer<BenchTurn>
    {
        public bool Equals(BenchTurn? x, BenchTurn? y) => x!.MaxTokens == y!.MaxTokens && x.Messages.SequenceEqual(y.Messages);
        public int GetHashCode(BenchTurn obj) => obj.MaxTokens;
    }
}
