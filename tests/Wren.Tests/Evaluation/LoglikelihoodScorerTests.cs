using Wren.Evaluation;
using static Wren.Tests.Evaluation.TableTokenizer;

namespace Wren.Tests.Evaluation;

/// <summary>Log-likelihoods against a plain loop over raw logits, the harness's tokenization rules, windows and batching.</summary>
public class LoglikelihoodScorerTests
{
    static readonly TableTokenizer Tokenizer = new();

    [Fact]
    public void Two_choice_item_matches_a_plain_loop_over_the_logits()
    {
        using var model = EvalFixtures.Model();
        var scorer = new LoglikelihoodScorer(model, Tokenizer);
        // Context "Is it hot?" and choices " yes" / " no", tokenized by hand: " yes" is one merged token.
        int[] context = "Is it hot?".Select(Char).ToArray();
        int[] yes = [Merge(" yes")], no = [Char(' '), Char('n'), Char('o')];
        var requests = new[] { scorer.EncodePair("Is it hot?", " yes"), scorer.EncodePair("Is it hot?", " no") };
        Assert.Equal(context, requests[0].Context);
        Assert.Equal(yes, requests[0].Continuation);
        Assert.Equal(no, requests[1].Continuation);
        var results = scorer.Score(requests);
        var expectedYes = EvalFixtures.PlainLoop(model, context, yes);
        var expectedNo = EvalFixtures.PlainLoop(model, context, no);
        Assert.Equal(expectedYes.LogLikelihood, results[0].LogLikelihood, 4);
        Assert.Equal(expectedNo.LogLikelihood, results[1].LogLikelihood, 4);
        Assert.Equal(expectedYes.Greedy, results[0].IsGreedy);
        Assert.Equal(expectedNo.Greedy, results[1].IsGreedy);
        Assert.True(results[1].LogLikelihood < 0 && Math.Abs(results[0].LogLikelihood - results[1].LogLikelihood) > 1e-3);
        var single = LoglikelihoodScorer.Loglikelihood(model, context, no);
        Assert.Equal(expectedNo.LogLikelihood, single.LogLikelihood, 4);
    }

    [Fact]
    public void Trailing_space_moves_to_the_continuation_and_boundary_merges_follow_the_whole_encoding()
    {
        using var model = EvalFixtures.Model();
        var scorer = new LoglikelihoodScorer(model, Tokenizer);
        // "Reply: " + "yes": the space moves over, so the continuation is the merged " yes" token.
        var moved = scorer.EncodePair("Reply: ", "yes");
        Assert.Equal("Reply:".Select(Char), moved.Context);
        Assert.Equal([Merge(" yes")], moved.Continuation);
        // "xa" + "bc": encode("xabc") = x, ab, c merges across the boundary; context_enc = x, a; continuation = whole[2:] = c.
        var merged = scorer.EncodePair("xa", "bc");
        Assert.Equal([Char('x'), Char('a')], merged.Context);
        Assert.Equal([Char('c')], merged.Continuation);
        var result = scorer.Score([merged])[0];
        Assert.Equal(EvalFixtures.PlainLoop(model, [Char('x'), Char('a')], [Char('c')]).LogLikelihood, result.LogLikelihood, 4);
        // An empty context is the end-of-text token.
        var empty = scorer.EncodePair("", "ok");
        Assert.Equal([0], empty.Context);
        Assert.Equal([Char('o'), Char('k')], empty.Continuation);
    }

    [Fact]
    public void Rolling_windows_follow_the_harness_and_score_every_token_once()
    {
        using var model = EvalFixtures.Model();
        var scorer = new LoglikelihoodScorer(model, Tokenizer, maxLength: 4);
        string text = "0123456789";
        var t = text.Select(Char).ToArray();
        var windows = scorer.RollingWindows(text);
        // get_rolling_token_windows(max 4, context 1) + make_disjoint_window, worked by hand.
        Assert.Equal(3, windows.Count);
        Assert.Equal([0], windows[0].Context);
        Assert.Equal(t[..4], windows[0].Continuation);
        Assert.Equal([t[3]], windows[1].Context);
        Assert.Equal(t[4..8], windows[1].Continuation);
        Assert.Equal(t[5..8], windows[2].Context);
        Assert.Equal(t[8..], windows[2].Continuation);
        // With room for the whole text, one window: the sum over the text after the end-of-text token.
        var wide = new LoglikelihoodScorer(model, Tokenizer, maxLength: 64);
        var one = wide.RollingWindows(text);
        Assert.Single(one);
        Assert.Equal(EvalFixtures.PlainLoop(model, [0], t).LogLikelihood, wide.Score(one)[0].LogLikelihood, 4);
        // Truncation from the left: the model sees (context + continuation)[-(L+1):][:-1].
        var long_ = new TokenRequest(t[..7], t[7..]);
        Assert.Equal(EvalFixtures.PlainLoop(model, t[5..7], t[7..]).LogLikelihood, scorer.Score([long_])[0].LogLikelihood, 4);
    }

    [Fact]
    public void Batched_scoring_equals_one_by_one_and_repeats_are_computed_once()
    {
        using var model = EvalFixtures.Model(seed: 7);
        var prompts = new[] { ("The cat", " sat"), ("A", " yes"), ("Where is the answer?", " there"), ("xa", "bc"), ("The cat", " sat"),
                              ("Long context with many words in it", " end"), ("Q: ", "no"), ("", "start") };
        var one = new LoglikelihoodScorer(model, Tokenizer, batchSize: 1);
        var batched = new LoglikelihoodScorer(model, Tokenizer, batchSize: 3);
        var requests = prompts.Select(p => one.EncodePair(p.Item1, p.Item2)).ToList();
        var expected = one.Score(requests);
        var progress = new List<int>();
        var actual = batched.Score(requests, progress.Add);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(expected[i].LogLikelihood, actual[i].LogLikelihood, 4);
            Assert.Equal(expected[i].IsGreedy, actual[i].IsGreedy);
        }
        Assert.Equal(7, one.Forwards);            // 8 requests, one repeated
        Assert.Equal(3, batched.Forwards);        // 7 distinct in batches of 3
        Assert.Equal(requests.Count, progress[^1]);
        batched.Score(requests);
        Assert.Equal(3, batched.Forwards);        // all cached
    }

    [Fact]
    public void One_token_choices_after_one_context_share_a_forward()
    {
        using var model = EvalFixtures.Model(seed: 5);
        var shared = new LoglikelihoodScorer(model, Tokenizer, batchSize: 2);
        var requests = "ABCD".Select(c => shared.EncodePair("Which letter?\nAnswer:", " " + c)).ToList();
        Assert.All(requests, r => Assert.Equal(2, r.Continuation.Count));   // " " and the letter: inputs differ
        var letters = "ABCD".Select(c => new TokenRequest(requests[0].Context, [Char(c)])).ToList();
        var results = shared.Score(letters);
        Assert.Equal(1, shared.Forwards);
        for (int i = 0; i < 4; i++)
        {
            var alone = new LoglikelihoodScorer(model, Tokenizer).Score([letters[i]])[0];
            Assert.Equal(alone, results[i]);
            Assert.Equal(EvalFixtures.PlainLoop(model, requests[0].Context.ToArray(), [Char("ABCD"[i])]).LogLikelihood,
                results[i].LogLikelihood, 4);
        }
    }
}
