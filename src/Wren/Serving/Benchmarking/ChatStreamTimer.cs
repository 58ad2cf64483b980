using System.Text.Json;

namespace Wren.Serving.Benchmarking;

/// <summary>
/// Times one streamed chat completion from its server-sent event lines, as vLLM's benchmark client does, with one difference
/// on purpose: TTFT is taken at the first chunk carrying a token, not the role-only chunk that opens a chat stream (Wren's
/// server sends that before prefill; vLLM's client takes any chunk with choices). A token chunk is one whose first choice's
/// <c>delta</c> has string <c>content</c> (empty text counts: a byte-level token may end mid-character), other than that
/// opening chunk (role set, content empty); a final chunk with an empty delta is not a token. The usage chunk
/// (<c>stream_options.include_usage</c>) gives the token counts when present.
/// </summary>
/// <param name="promptEstimate">Prompt tokens to report when the server sends no usage.</param>
public sealed class ChatStreamTimer(int promptEstimate)
{
    readonly List<double> gaps = [];
    double ttft, lastToken, lastEvent;
    int chunks;
    int? promptTokens, completionTokens;

    /// <summary>
    /// One line of the stream, read <paramref name="seconds"/> after the request was sent: <c>data: {json}</c> chunks are
    /// timed, <c>data: [DONE]</c> ends the stream (false), anything else (comments, blank lines) is skipped. Errors:
    /// <see cref="JsonException"/> for a data line that is not JSON.
    /// </summary>
    public bool Add(string line, double seconds)
    {
        if (!line.StartsWith("data:", StringComparison.Ordinal)) return true;
        var data = line[5..].Trim();
        if (data == "[DONE]") return false;
        using var chunk = JsonDocument.Parse(data);
        var root = chunk.RootElement;
        if (root.ValueKind != JsonValueKind.Object) return true;
        if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
        {
            if (usage.TryGetProperty("completion_tokens", out var c) && c.TryGetInt32(out int completion)) completionTokens = completion;
            if (usage.TryGetProperty("prompt_tokens", out var p) && p.TryGetInt32(out int prompt)) promptTokens = prompt;
        }
        if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0
            && choices[0].ValueKind == JsonValueKind.Object && choices[0].TryGetProperty("delta", out var delta) && IsToken(delta))
        {
            if (chunks++ == 0) ttft = seconds;
            else gaps.Add(seconds - lastToken);
            lastToken = seconds;
        }
        lastEvent = seconds;
        return true;
    }

    /// <summary>
    /// The request's outcome: E2EL at the last data event; output tokens from usage, else the token chunks counted; failed when
    /// no token chunk came.
    /// </summary>
    public RequestOutcome Finish() => chunks == 0
        ? RequestOutcome.Failed("the stream carried no token")
        : new RequestOutcome(true, ttft, [.. gaps], lastEvent, promptTokens ?? promptEstimate, completionTokens ?? chunks,
                             completionTokens is not null);

    static bool IsToken(JsonElement delta) =>
        delta.ValueKind == JsonValueKind.Object && delta.TryGetProperty("content", out var content)
        && content.ValueKind == JsonValueKind.String
        && !(delta.TryGetProperty("role", out var role) && role.ValueKind == JsonValueKind.String && content.GetString()!.Length == 0);
}
