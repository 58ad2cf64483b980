using System.Text;

namespace Wren.Tokenization;

/// <summary>Bytes of UTF-8 are the ids (0–255); the fallback when a model folder names no tokenizer.</summary>
public sealed class ByteTokenizer(int modelVocabularySize) : ITextTokenizer
{
    public string Name => "byte-level (UTF-8 bytes as ids)";
    public int VocabularySize => 256;
    public int? EndOfTextId => null;
    public TokenBytes TokenBytes { get; } = new(Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToArray(), false);

    public IReadOnlyList<int> Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        foreach (var b in bytes)
            if (b >= modelVocabularySize)
                throw new WrenException($"the byte tokenizer maps byte {b} to id {b}, outside the model's vocabulary of " +
                                        $"{modelVocabularySize}; add a tokenizer.json to the model folder");
        return bytes.Select(b => (int)b).ToArray();
    }

    public string Decode(IEnumerable<int> ids) =>
        Encoding.UTF8.GetString(ids.Where(i => i is >= 0 and < 256).Select(i => (byte)i).ToArray());
}
