using TorchSharp;
using Wren.Checkpoints;
using Wren.Inference;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;

namespace Wren.Tests.Inference;

/// <summary>Sampler inputs that overflow softmax, and streams that end inside a multi-byte character (tests/fixtures/cases).</summary>
public class SamplingFaultTests
{
    [Fact]
    public void A_tiny_temperature_tends_to_greedy_instead_of_overflowing()
    {
        var random = new Random(4);
        var logits = tensor(Enumerable.Range(0, 64 * 50).Select(_ => (float)(random.NextDouble() * 40 - 20)).ToArray(), [64, 50]);
        var greedy = logits.argmax(-1).data<long>().ToArray();
        foreach (var temperature in new[] { 1e-38, 1e-300, double.Epsilon })
        {
            var sampled = Sampler.Next(logits, new SamplingOptions { Temperature = temperature }, new Generator(1));
            Assert.Equal(greedy, sampled.data<long>().ToArray());
        }
    }

    [Fact]
    public void Extreme_but_valid_options_give_finite_probabilities()
    {
        var logits = tensor(new[] { float.MaxValue, -float.MaxValue, 0f, 3f, float.NegativeInfinity, 1e-30f }, [1, 6]);
        var seen = ones([1, 6], ScalarType.Bool);
        var options = new[]
        {
            new SamplingOptions { Temperature = 1e-38, RepetitionPenalty = 1e-300 },
            new SamplingOptions { Temperature = 1e300, RepetitionPenalty = 1e300, TopP = 1e-300 },
            new SamplingOptions { Temperature = 1e-300, TopK = 3, TopP = double.Epsilon },
        };
        foreach (var option in options)
        {
            long id = Sampler.Next(logits, option, new Generator(2), seen).item<long>();
            Assert.InRange(id, 0, 5);
            Assert.NotEqual(4, id);   // a −∞ logit is never chosen
        }
    }

    [Fact]
    public void Non_finite_option_values_are_rejected()
    {
        foreach (var bad in new[] { double.NaN, double.PositiveInfinity })
        {
            Assert.Throws<WrenException>(() => new SamplingOptions { Temperature = bad }.Validate());
            Assert.Throws<WrenException>(() => new SamplingOptions { TopP = bad }.Validate());
            Assert.Throws<WrenException>(() => new SamplingOptions { RepetitionPenalty = bad }.Validate());
        }
        Assert.Throws<WrenException>(() => Sampler.Next(tensor(new[] { float.NaN, 1f }, [1, 2]), new SamplingOptions(), null));
    }

    [Fact]
    public void The_tiny_temperature_case_answers_like_greedy()
    {
        string folder = Path.Combine(TestSupport.Case("tiny-temperature"), "model");
        using var model = HybridForCausalLM.FromPretrained(folder);
        var generator = new TextGenerator(model, TokenizerLoader.ForModel(folder, model.Config));
        string Text(double temperature) =>
            string.Concat(generator.Generate("A", new SamplingOptions { Temperature = temperature, MaxNewTokens = 1 }).Select(t => t.Text));
        Assert.Equal("Z", Text(1e-38));
        Assert.Equal("Z", Text(0));
    }

    static (TextGenerator Generator, ITextTokenizer Tokenizer, IDisposable Model) InvalidTailModel()
    {
        string folder = Path.Combine(TestSupport.Case("stream-invalid-utf8-tail"), "model");
        var model = HybridForCausalLM.FromPretrained(folder);
        var tokenizer = TokenizerLoader.ForModel(folder, model.Config);
        return (new TextGenerator(model, tokenizer), tokenizer, model);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 4)]
    [InlineData(3, 1)]
    [InlineData(3, 4)]
    public void Held_back_text_is_flushed_when_the_stream_ends(int batch, int maxNewTokens)
    {
        var (generator, tokenizer, model) = InvalidTailModel();
        using var _ = model;
        var options = new SamplingOptions { Temperature = 0, MaxNewTokens = maxNewTokens };
        var tokens = generator.Generate(Enumerable.Repeat("A", batch).ToList(), options).ToList();
        for (int b = 0; b < batch; b++)
        {
            var row = tokens.Where(t => t.Row == b).ToList();
            Assert.Equal(0xFF, row[0].TokenId);   // the case's model: byte 0xFF, never valid UTF-8, after "A"
            // Nothing is lost: the streamed pieces are the decoded ids, U+FFFD for the bytes that never complete.
            Assert.Equal(tokenizer.Decode(row.Select(t => t.TokenId)), string.Concat(row.Select(t => t.Text)));
            Assert.StartsWith("\uFFFD", string.Concat(row.Select(t => t.Text)));
            Assert.NotNull(row[^1].FinishReason);
        }
    }

    [Fact]
    public void Stop_strings_see_the_flushed_text()
    {
        var (generator, _, model) = InvalidTailModel();
        using var __ = model;
        var options = new SamplingOptions { Temperature = 0, MaxNewTokens = 1, StopStrings = ["\uFFFD"] };
        var tokens = generator.Generate(["A", "A"], options).ToList();
        Assert.All(tokens, t => Assert.Equal("stop-string", t.FinishReason));
        Assert.All(tokens, t => Assert.Equal("", t.Text));
    }

    [Fact]
    public void A_stop_token_flushes_the_held_back_text()
    {
        var (generator, tokenizer, model) = InvalidTailModel();
        using var _ = model;
        var free = generator.Generate("A", new SamplingOptions { Temperature = 0, MaxNewTokens = 4 }).ToList();
        int stopId = free.Skip(1).First(t => t.TokenId != 0xFF).TokenId;
        int before = free.FindIndex(t => t.TokenId == stopId);
        var stopped = generator.Generate("A", new SamplingOptions { Temperature = 0, MaxNewTokens = 4, StopTokenIds = [stopId] }).ToList();
        Assert.Equal("stop-token", stopped[^1].FinishReason);
        Assert.Equal(tokenizer.Decode(free.Take(before).Select(t => t.TokenId)), string.Concat(stopped.Select(t => t.Text)));
    }

    [Fact]
    public void Invalid_options_fail_before_anything_streams()
    {
        var (generator, _, model) = InvalidTailModel();
        using var __ = model;
        Assert.Throws<WrenException>(() => generator.Generate("A", new SamplingOptions { MaxNewTokens = -5 }));   // not enumerated
    }
}
