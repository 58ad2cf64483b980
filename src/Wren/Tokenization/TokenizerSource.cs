using System.Security.Cryptography;
using System.Text;

namespace Wren.Tokenization;

/// <summary>What a token stream was made with: kind (<c>tokenizer.json</c> or <c>tiktoken</c>), name, content hash, size and end-of-text
/// id.</summary>
public sealed record TokenizerIdentity(string Kind, string Name, string Sha256, int VocabularySize, int EndOfTextId);

/// <summary>A tokenizer together with its identity and, for tokenizer.json, the file it came from.</summary>
public sealed record TokenizerHandle(ITextTokenizer Tokenizer, TokenizerIdentity Identity, string? JsonPath);

/// <summary>Opens a tokenizer named on the command line: a tokenizer.json file, a folder holding one, or a tiktoken encoding.</summary>
public static class TokenizerSource
{
    public static TokenizerHandle Open(string spec)
    {
        string encoding = spec.StartsWith("tiktoken:", StringComparison.Ordinal) ? spec["tiktoken:".Length..] : spec;
        if (encoding is "cl100k_base" or "o200k_base")
        {
            var tiktoken = TokenizerLoader.Tiktoken(encoding);
            var identity = Identify(tiktoken, "tiktoken", encoding, Encoding.UTF8.GetBytes("tiktoken:" + encoding));
            return new TokenizerHandle(tiktoken, identity, null);
        }
        string path = Directory.Exists(spec) ? Path.Combine(spec, "tokenizer.json") : spec;
        if (!File.Exists(path))
            throw new WrenException($"tokenizer not found: {spec} " +
                                    "(give a tokenizer.json, a folder holding one, cl100k_base or o200k_base)");
        var tokenizer = TokenizerLoader.LoadHuggingFace(path);
        string name = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path))) ?? path;
        return new TokenizerHandle(tokenizer, Identify(tokenizer, "tokenizer.json", name, File.ReadAllBytes(path)), path);
    }

    static TokenizerIdentity Identify(ITextTokenizer tokenizer, string kind, string name, byte[] content)
    {
        if (tokenizer.EndOfTextId is not { } eot)
            throw new WrenException($"the tokenizer ({tokenizer.Name}) defines no end-of-text token (<|endoftext|> or </s>), " +
                                    "which separates documents");
        return new TokenizerIdentity(kind, name, Convert.ToHexStringLower(SHA256.HashData(content)), tokenizer.VocabularySize, eot);
    }
}
