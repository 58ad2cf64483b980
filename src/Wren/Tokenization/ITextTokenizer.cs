namespace Wren.Tokenization;

/// <summary>Text ↔ token ids for generation.</summary>
public interface ITextTokenizer
{
    /// <summary>A short description (kind and source), shown to users.</summary>
    string Name { get; }
    int VocabularySize { get; }
    IReadOnlyList<int> Encode(string text);
    string Decode(IEnumerable<int> ids);
    /// <summary>The end-of-text id, if the tokenizer defines one.</summary>
    int? EndOfTextId { get; }
}
