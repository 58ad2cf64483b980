namespace Wren.Tokenization;

/// <summary>Text ↔ token ids for generation.</summary>
/// <remarks>
/// <see cref="Encode"/> treats its input as text: a special-token string in it (such as <c>&lt;|endoftext|&gt;</c>) is encoded
/// as ordinary characters, never as the control token, and no template (BOS/EOS) is added. This is Hugging Face's
/// <c>split_special_tokens=True</c> with <c>add_special_tokens=False</c>; it keeps corpus text and prompts from forging
/// document boundaries or control tokens. <see cref="EncodePrompt"/> adds the beginning-of-text token where the tokenizer asks
/// for one (<c>add_bos_token</c> in tokenizer_config.json). A chat prompt is the one place where control tokens come from
/// text: <see cref="Encode(IReadOnlyList{PromptPiece})"/> takes the prompt as pieces, and only the pieces that the chat template
/// wrote itself (<see cref="Templating.ChatTemplate.Render"/>) become control tokens.
/// </remarks>
public interface ITextTokenizer
{
    /// <summary>A short description (kind and source), shown to users.</summary>
    string Name { get; }
    int VocabularySize { get; }
    /// <summary>The ids of <paramref name="text"/> read as plain text (no special-token parsing, no BOS/EOS added).</summary>
    IReadOnlyList<int> Encode(string text);
    /// <summary>The text of <paramref name="ids"/>; special tokens decode to nothing.</summary>
    string Decode(IEnumerable<int> ids);
    /// <summary>The end-of-text id, if the tokenizer defines one.</summary>
    int? EndOfTextId { get; }
    /// <summary>The beginning-of-text (BOS) id, if the tokenizer defines one.</summary>
    int? BeginOfTextId => null;
    /// <summary>The padding id, if the tokenizer defines one.</summary>
    int? PaddingId => null;
    /// <summary>Whether a prompt starts with <see cref="BeginOfTextId"/> (<c>add_bos_token</c> of tokenizer_config.json).</summary>
    bool AddsBeginOfText => false;

    /// <summary>The control (special) tokens by their text, e.g. <c>&lt;|im_start|&gt;</c> → its id; empty when there are none.</summary>
    IReadOnlyDictionary<string, int> ControlTokens => new Dictionary<string, int>();

    /// <summary>
    /// The ids of a prompt given as pieces: each control piece is its token's id, the text between control pieces is encoded
    /// as <see cref="Encode(string)"/> encodes text. Errors: <see cref="WrenException"/> for a control piece that is not in
    /// <see cref="ControlTokens"/>.
    /// </summary>
    IReadOnlyList<int> Encode(IReadOnlyList<PromptPiece> pieces)
    {
        var ids = new List<int>();
        foreach (var piece in pieces)
        {
            if (!piece.Control) ids.AddRange(Encode(piece.Text));
            else if (ControlTokens.TryGetValue(piece.Text, out int id)) ids.Add(id);
            else throw new WrenException($"{Name}: '{piece.Text}' is not one of the tokenizer's control tokens");
        }
        return ids;
    }

    /// <summary>The bytes each id adds to decoded text (for constrained decoding), or null when this tokenizer cannot say.</summary>
    TokenBytes? TokenBytes => null;

    /// <summary>The ids of a prompt: <see cref="BeginOfTextId"/> first when <see cref="AddsBeginOfText"/>, then the text as text.</summary>
    IReadOnlyList<int> EncodePrompt(string text) =>
        AddsBeginOfText && BeginOfTextId is { } bos ? [bos, .. Encode(text)] : Encode(text);
}
