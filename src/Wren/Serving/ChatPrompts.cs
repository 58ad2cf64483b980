using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Serving;

/// <summary>
/// What the HTTP chat endpoint and <see cref="WrenChatClient"/> share: the prompt ids of a conversation and the stop ids.
/// </summary>
internal static class ChatPrompts
{
    /// <summary>
    /// The conversation rendered by the template up to the assistant's turn, tokenized. Errors: 400 when the template fails.
    /// </summary>
    public static IReadOnlyList<int> Encode(ITextTokenizer tokenizer, ChatTemplate template, IReadOnlyList<ChatTurn> turns)
    {
        try { return tokenizer.Encode(template.Apply(turns, addGenerationPrompt: true)); }
        catch (WrenException e) when (e is not ServeError)
        {
            throw ServeError.Invalid($"the chat template failed on these messages: {e.Message}", "messages");
        }
    }

    /// <summary>The tokenizer's end-of-text id and the template's end-of-sequence token, when it is a single id.</summary>
    public static IReadOnlyList<int> StopIds(ITextTokenizer tokenizer, ChatTemplate template)
    {
        var ids = new List<int>();
        if (tokenizer.EndOfTextId is { } eot) ids.Add(eot);
        if (template.EosToken is { Length: > 0 } eos && tokenizer.Encode(eos) is [var eosId] && !ids.Contains(eosId)) ids.Add(eosId);
        return ids;
    }
}
