using Wren.Serving.Benchmarking;

namespace Wren.Tests.Serving.Benchmarking;

/// <summary>Timing a streamed chat completion from its event lines: which chunks are tokens, and where the counts come from.</summary>
public class ChatStreamTimerTests
{
    const double Tolerance = 1e-12;

    // A Wren-style stream: the role-only opener, a comment, three token chunks (one with text held back) and the usage chunk.
    static readonly (string Line, double Seconds)[] Stream =
    [
        ("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}", 0.05),
        (": keep-alive", 0.06),
        ("", 0.06),
        ("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}", 0.10),
        ("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":null}]}", 0.13),
        ("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"},\"finish_reason\":\"length\"}]}", 0.18),
        ("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}", 0.20),
        ("data: [DONE]", 0.21),
    ];

    static RequestOutcome Run(IEnumerable<(string Line, double Seconds)> lines, int estimate = 99)
    {
        var timer = new ChatStreamTimer(estimate);
        foreach (var (line, seconds) in lines)
            if (!timer.Add(line, seconds)) break;
        return timer.Finish();
    }

    [Fact]
    public void Ttft_skips_the_role_chunk_and_itl_are_gaps_between_token_chunks()
    {
        var o = Run(Stream);
        Assert.True(o.Success);
        Assert.Equal(0.10, o.TtftSeconds, Tolerance);
        Assert.Equal(2, o.InterTokenSeconds.Count);
        Assert.Equal(0.03, o.InterTokenSeconds[0], Tolerance);
        Assert.Equal(0.05, o.InterTokenSeconds[1], Tolerance);
        Assert.Equal(0.20, o.E2elSeconds, Tolerance);                       // the usage chunk, not [DONE]
        Assert.Equal((12, 3, true), (o.InputTokens, o.OutputTokens, o.UsageReported));
    }

    [Fact]
    public void Without_usage_the_token_chunks_are_counted_and_the_prompt_estimated()
    {
        var o = Run(Stream.Where(e => !e.Line.Contains("usage")));
        Assert.Equal((99, 3, false), (o.InputTokens, o.OutputTokens, o.UsageReported));
        Assert.Equal(0.18, o.E2elSeconds, Tolerance);
    }

    [Fact]
    public void An_empty_final_delta_is_not_a_token_and_a_stream_without_tokens_fails()
    {
        var o = Run([
            ("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}", 0.01),
            ("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}", 0.30),
            ("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", 0.40),
        ]);
        Assert.Equal((0.30, 0, 1), (o.TtftSeconds, o.InterTokenSeconds.Count, o.OutputTokens));
        Assert.Equal(0.40, o.E2elSeconds, Tolerance);
        Assert.False(Run([(Stream[0].Line, 0.05), ("data: [DONE]", 0.1)]).Success);
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => new ChatStreamTimer(1).Add("data: {oops", 0));
    }
}
