using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Wren.Evaluation;
using Wren.Serving;
using Wren.Tests.Serving;

namespace Wren.Tests.Evaluation;

/// <summary>
/// lm-evaluation-harness's <c>local-completions</c> model scores a choice by sending context + continuation to
/// <c>/v1/completions</c> with <c>echo</c>, <c>logprobs</c> and <c>max_tokens = 0</c>, and summing the continuation's
/// echoed log-probabilities: over HTTP that must give exactly the log-likelihood <c>wren eval</c> uses.
/// </summary>
public class ServerEvalTests
{
    [Fact]
    public async Task Echoed_logprobs_sum_to_the_loglikelihoods_wren_eval_uses_on_a_shipped_task()
    {
        await using var server = await LoopbackServer.StartAsync(new EngineOptions { MaxBatch = 4, PrefillChunk = 16, MaxContext = 1024 });
        var task = TaskFiles.Resolve(["tiny"]).Single(t => t.Name == "tiny_arc_easy");
        var prompts = Evaluator.Prompts(task, new EvalOptions([task], Limit: 2));
        var scorer = new LoglikelihoodScorer(server.Model, server.Tokenizer);
        int checkedRequests = 0;
        foreach (var (context, continuation) in prompts.SelectMany(p => p.Requests))
        {
            var request = scorer.EncodePair(context, continuation);
            var expected = LoglikelihoodScorer.Loglikelihood(server.Model, request.Context, request.Continuation);
            int[] ids = [.. request.Context, .. request.Continuation];
            var body = JsonSerializer.Serialize(new
            {
                model = LoopbackServer.ModelName, prompt = ids, max_tokens = 0, echo = true, logprobs = 1, temperature = 0,
            });
            using var response = await server.Http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            var logprobs = JsonNode.Parse(text)!["choices"]![0]!["logprobs"]!;
            var values = logprobs["token_logprobs"]!.AsArray();
            Assert.Equal(ids.Length, values.Count);
            double sum = values.Skip(request.Context.Count).Sum(v => (double)v!);
            Assert.Equal(expected.LogLikelihood, sum, 3);
            Assert.True(Math.Abs(expected.LogLikelihood - sum) <= 1e-5 * Math.Abs(expected.LogLikelihood),
                        $"server {sum} vs eval {expected.LogLikelihood}");
            checkedRequests++;
        }
        Assert.True(checkedRequests >= 4, "two four-choice items give eight requests");
    }
}
