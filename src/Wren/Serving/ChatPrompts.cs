using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Serving;

/// <summary>
/// What the HTTP chat endpoint and <see cref="WrenChatClient"/> share: the prompt ids of a conversation and the stop ids.
/// </summary>
internal static class ChatPrompts
{
    /// <summary>
    /// The conversation rendered by the template, tokenized as transformers' <c>apply_chat_template(tokenize=True)</c> does for
    /// the template's own special tokens (control tokens), while message text stays text (<see cref="ChatTemplate.Render"/>).
    /// Errors: 400 naming <c>messages</c> when the template fails, <c>chat_template_kwargs</c> for a reserved name.
    /// </summary>
    public static IReadOnlyList<int> Encode(ITextTokenizer tokenizer, ChatTemplate template, IReadOnlyList<ChatTurn> turns,
                                            ChatTemplateOptions? options = null)
    {
        options ??= new ChatTemplateOptions();
        if (options.Extra?.Keys.FirstOrDefault(ChatTemplateOptions.ReservedNames.Contains) is { } reserved)
            throw ServeError.Invalid($"'chat_template_kwargs' cannot set '{reserved}'", "chat_template_kwargs");
        try { return tokenizer.Encode(template.Render(turns, options, tokenizer.ControlTokens).Pieces); }
        catch (WrenException e) when (e is not ServeError)
        {
            throw ServeError.Invalid($"the chat template failed on these messages: {e.Message}", "messages");
        }
    }

    /// <summary>The tokenizer's end-of-text id and the template's end-of-sequence token (a control token or a single id).</summary>
    public static IReadOnlyList<int> StopIds(ITextTokenizer tokenizer, ChatTemplate template)
    {
        var ids = new List<int>();
        if (tokenizer.EndOfTextId is { } eot) ids.Add(eot);
        int? eosId = template.EosToken is not { Length: > 0 } eos ? null
            : tokenizer.ControlTokens.TryGetValue(eos, out int control) ? control
            : tokenizer.Encode(eos) is [var single] ? single : null;
        if (eosId is { } id && !ids.Contains(id)) ids.Add(id);
        return ids;
    }
}
