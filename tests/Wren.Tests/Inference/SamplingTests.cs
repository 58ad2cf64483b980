using TorchSharp;
using Wren.Inference;
using static TorchSharp.torch;

namespace Wren.Tests.Inference;

public class SamplingTests
{
    static Tensor Logits => tensor(new float[] { 1f, 3f, 2f, -1f, 2.9f, 0f, 0.5f, 1f }, [2, 4]);

    [Fact]
    public void Greedy_is_argmax()
    {
        var ids = Sampler.Next(Logits, new SamplingOptions { Temperature = 0 }, null).data<long>().ToArray();
        Assert.Equal([1L, 0L], ids);
    }

    [Fact]
    public void Top_k_one_and_tiny_top_p_are_greedy()
    {
        var gen = new Generator(1);
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal([1L, 0L], Sampler.Next(Logits, new SamplingOptions { Temperature = 1.5, TopK = 1 }, gen).data<long>().ToArray());
            Assert.Equal([1L, 0L],
                         Sampler.Next(Logits, new SamplingOptions { Temperature = 1.5, TopP = 1e-3 }, gen).data<long>().ToArray());
        }
    }

    [Fact]
    public void Top_k_restricts_and_seed_makes_it_deterministic()
    {
        var options = new SamplingOptions { Temperature = 5, TopK = 2 };
        var a = Enumerable.Range(0, 50).Select(_ => Sampler.Next(Logits, options, null)).ToList();
        Assert.All(a, t => Assert.Contains(t[0].item<long>(), new long[] { 1, 2 }));
        Assert.All(a, t => Assert.Contains(t[1].item<long>(), new long[] { 0, 3 }));
        long[] Draw(ulong seed)
        {
            var g = new Generator(seed);
            return Enumerable.Range(0, 30).Select(_ => Sampler.Next(Logits, options with { TopK = 0 }, g)[0].item<long>()).ToArray();
        }
        Assert.Equal(Draw(7), Draw(7));
        Assert.Contains(3L, Enumerable.Range(0, 200).Select(_ => Sampler.Next(Logits, options with { TopK = 0 }, null)[0].item<long>()));
    }

    [Fact]
    public void Repetition_penalty_demotes_seen_tokens()
    {
        var seen = zeros([2, 4], ScalarType.Bool);
        seen[0, 1] = tensor(true);
        var ids = Sampler.Next(Logits, new SamplingOptions { Temperature = 0, RepetitionPenalty = 2.0 }, null, seen).data<long>().ToArray();
        Assert.Equal(2L, ids[0]);   // 3/2 = 1.5 < 2
        Assert.Equal(0L, ids[1]);
    }

    [Fact]
    public void Frequency_and_presence_penalties_follow_openais_formula()
    {
        // Row 0 logits [1, 3, 2, -1]; token 1 generated twice, token 2 once, token 3 three times (row 1 untouched).
        var counts = zeros([2, 4], ScalarType.Float64);
        counts[0, 1] = tensor(2.0);
        counts[0, 2] = tensor(1.0);
        counts[0, 3] = tensor(3.0);
        long Pick(double frequency, double presence) => Sampler.Next(Logits,
            new SamplingOptions { Temperature = 0, FrequencyPenalty = frequency, PresencePenalty = presence }, null,
            generated: counts).data<long>()[0];
        Assert.Equal(1L, Pick(0.8, 0));     // [1, 3 − 1.6, 2 − 0.8, −1 − 2.4] = [1, 1.4, 1.2, −3.4]
        Assert.Equal(0L, Pick(1, 0.5));     // [1, 3 − 2 − 0.5, 2 − 1 − 0.5, −1 − 3 − 0.5] = [1, 0.5, 0.5, −4.5]
        Assert.Equal(0L, Pick(0.5, 1.5));   // [1, 0.5, 0, −3.5]
        Assert.Equal(2L, Pick(1.5, -1));    // negative presence: [1, 3 − 3 + 1, 2 − 1.5 + 1, −1 − 4.5 + 1] = [1, 1, 1.5, −4.5]
        Assert.Equal(0L, Sampler.Next(Logits, new SamplingOptions { Temperature = 0, FrequencyPenalty = 1 }, null,
                                      generated: counts).data<long>()[1]);   // row 1 has no counts: argmax unchanged
        // Temperature 1: the probabilities are softmax of the penalized logits [1, 0.5, 0.5, −4.5] (freq 1, presence 0.5).
        var options = new SamplingOptions { Temperature = 1, FrequencyPenalty = 1, PresencePenalty = 0.5 };
        var generator = new Generator(5);
        var draws = Enumerable.Range(0, 4000).Select(_ => Sampler.Next(Logits, options, generator, generated: counts)
            .data<long>()[0]).ToList();
        double z = Math.Exp(1) + 2 * Math.Exp(0.5) + Math.Exp(-4.5);
        Assert.InRange(draws.Count(d => d == 0) / 4000.0 - Math.Exp(1) / z, -0.03, 0.03);     // 0.451; 4σ of 4,000 draws ≈ 0.03
        Assert.InRange(draws.Count(d => d == 1) / 4000.0 - Math.Exp(0.5) / z, -0.03, 0.03);   // 0.274
        Assert.Throws<WrenException>(() => new SamplingOptions { PresencePenalty = 2.5 }.Validate());
        Assert.Throws<WrenException>(() => new SamplingOptions { FrequencyPenalty = -2.01 }.Validate());
    }

    [Fact]
    public void Invalid_options_are_rejected()
    {
        Assert.Throws<WrenException>(() => new SamplingOptions { TopP = 1.5 }.Validate());
        Assert.Throws<WrenException>(() => new SamplingOptions { Temperature = -1 }.Validate());
        Assert.Throws<WrenException>(() => new SamplingOptions { MaxNewTokens = 0 }.Validate());
    }

    [Fact]
    public void Logit_bias_shifts_logits_before_greedy_and_an_allowed_mask_restricts_every_row()
    {
        // Row 0's argmax is id 1 (3.0); +1.5 on id 2 makes 3.5 the best. Row 1's is id 0 (2.9); −100 on it and +1.5 on id 2
        // make id 2 (0.5 + 1.5 = 2.0) the best, above id 3 (1.0).
        var biased = new SamplingOptions { Temperature = 0, LogitBias = new Dictionary<int, double> { [2] = 1.5, [0] = -100 } };
        Assert.Equal([2L, 2L], Sampler.Next(Logits, biased, null).data<long>().ToArray());
        using var allowed = tensor(new[] { true, false, false, true, false, true, true, false }, [2, 4]);
        using var gen = new Generator(1);
        for (int i = 0; i < 50; i++)
        {
            var ids = Sampler.Next(Logits, new SamplingOptions { Temperature = 1.5 }, gen, allowed: allowed).data<long>().ToArray();
            Assert.Contains(ids[0], new[] { 0L, 3L });
            Assert.Contains(ids[1], new[] { 1L, 2L });
        }
    }
}
