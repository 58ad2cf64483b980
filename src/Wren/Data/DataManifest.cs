using System.Text.Json;
using System.Text.Json.Serialization;
using Wren.Checkpoints;
using Wren.Common;
using Wren.Models;
using Wren.Tokenization;

namespace Wren.Data;

/// <summary>One shard: file name (beside the manifest), token count and SHA-256 of its bytes.</summary>
public sealed record ShardInfo(string File, long Tokens, string Sha256);

/// <summary>A split (train or validation): its token and document counts and shards.</summary>
public sealed record SplitInfo(long Tokens, long Pieces, IReadOnlyList<ShardInfo> Shards);

/// <summary>A corpus input and how much it contributed.</summary>
public sealed record SourceInfo(string Path, long Bytes, long Documents);

/// <summary>
/// <c>manifest.json</c> of a prepared dataset: token width, tokenizer identity, sources, splits and shards.
/// Written last and atomically, so a folder with a manifest is complete.
/// </summary>
public sealed record DataManifest(
    string Format,
    string Dtype,
    TokenizerIdentity Tokenizer,
    IReadOnlyList<SourceInfo> Sources,
    SplitInfo Train,
    SplitInfo Validation,
    double ValidationFraction,
    DateTimeOffset Created)
{
    public const string FileName = "manifest.json";
    public const string CurrentFormat = "wren-tokens-v1";
    /// <summary>The copy of tokenizer.json kept beside the shards (tokenizer.json tokenizers only).</summary>
    public const string TokenizerFile = "tokenizer.json";

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public int TokenBytes => Dtype == "uint16" ? 2 : 4;

    /// <summary>
    /// <paramref name="config"/> made to fit this dataset: vocab_size = the tokenizer's size rounded up to a multiple
    /// of 64 (faster lm_head matmuls; the extra rows are never targets) and, for tiktoken data, the encoding named so a
    /// saved model finds its tokenizer.
    /// </summary>
    public HybridConfig ModelConfig(HybridConfig config) => config with
    {
        VocabSize = (Tokenizer.VocabularySize + 63) / 64 * 64,
        TiktokenEncoding = Tokenizer.Kind == "tiktoken" ? Tokenizer.Name : config.TiktokenEncoding,
    };

    public void Save(string folder) => AtomicFile.WriteAllText(Path.Combine(folder, FileName), JsonSerializer.Serialize(this, Json));

    public static DataManifest Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (File.Exists(folder))
            throw new WrenException($"{folder} is a file; give the dataset folder that holds {FileName} and the shards");
        if (!File.Exists(path))
            throw new WrenException(Directory.Exists(folder) ? $"{folder}: no {FileName}; prepare the data first (wren data prepare) or " +
                                                               $"finish an interrupted preparation"
                                                            : $"dataset folder not found: {folder}");
        DataManifest? manifest;
        try { manifest = JsonSerializer.Deserialize<DataManifest>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw new WrenException($"{path}: invalid manifest ({e.Message})", e); }
        if (manifest is null || manifest.Tokenizer is null || manifest.Train is null || manifest.Validation is null)
            throw new WrenException($"{path}: incomplete manifest (needs tokenizer, train and validation)");
        if (manifest.Format != CurrentFormat) throw new WrenException($"{path}: format \"{manifest.Format}\" is not {CurrentFormat}");
        if (manifest.Dtype is not ("uint16" or "uint32")) throw new WrenException($"{path}: dtype \"{manifest.Dtype}\" (expected uint16 " +
                                                                                  $"or uint32)");
        return manifest;
    }

    /// <summary>Refuses a tokenizer other than the one the tokens were made with.</summary>
    public void EnsureTokenizer(TokenizerIdentity other, string what)
    {
        if (other.Sha256 != Tokenizer.Sha256 || other.VocabularySize != Tokenizer.VocabularySize)
            throw new WrenException($"{what} ({other.Kind} {other.Name}, sha256 {other.Sha256[..12]}…, {other.VocabularySize} tokens) " +
                                    $"is not the tokenizer the dataset was prepared with ({Tokenizer.Kind} {Tokenizer.Name}, sha256 " +
                                    $"{Tokenizer.Sha256[..12]}…, {Tokenizer.VocabularySize} tokens); " +
                                    "prepare the data again with this tokenizer or use the dataset's own");
    }
}
