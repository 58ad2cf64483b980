using System.Text.Json;
using TorchSharp;
using Wren.Models;
using static TorchSharp.torch;

namespace Wren.Inference;

/// <summary>Logits for given token ids: the exactness check against other implementations.</summary>
public static class Scoring
{
    /// <summary>
    /// Float32 logits [B, T, V] for <paramref name="tokens"/> [B, T]. With <paramref name="prefill"/> = null, one
    /// parallel forward; otherwise the first N tokens go through the parallel path into a cache (starting from
    /// the reused meta-token state) and the rest are decoded one at a time.
    /// </summary>
    public static Tensor Logits(HybridForCausalLM model, Tensor tokens, int? prefill = null)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        long B = tokens.shape[0], T = tokens.shape[1];
        if (prefill is null) return model.forward(new LMInput(tokens)).Logits.MoveToOuterDisposeScope();
        int n = prefill.Value;
        if (n < 0 || n > T) throw new WrenException($"--prefill must be between 0 and the sequence length {T}, got {n}");
        using var cache = model.NewCache((int)B, (int)T);
        var pieces = new List<Tensor>();
        if (n > 0) pieces.Add(model.forward(new LMInput(tokens.narrow(1, 0, n), cache)).Logits);
        for (long t = n; t < T; t++)
            pieces.Add(model.forward(new LMInput(tokens.narrow(1, t, 1), cache)).Logits);
        return cat(pieces, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Reads a JSON list of equal-length lists of token ids, checked against the vocabulary.</summary>
    public static Tensor ReadTokens(string path, int vocabSize)
    {
        if (!File.Exists(path)) throw new WrenException($"tokens file not found: {path}");
        long[][]? rows;
        try { rows = JsonSerializer.Deserialize<long[][]>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new WrenException($"{path}: expected a JSON list of lists of token ids ({e.Message})", e); }
        if (rows is null || rows.Length == 0 || rows[0] is null || rows[0].Length == 0)
            throw new WrenException($"{path}: expected a non-empty list of non-empty token lists");
        int length = rows[0].Length;
        for (int b = 0; b < rows.Length; b++)
        {
            if (rows[b] is null || rows[b].Length != length)
                throw new WrenException($"{path}: row {b} has {rows[b]?.Length ?? 0} tokens but row 0 has {length}; " +
                                        "rows must have equal length");
            foreach (var id in rows[b])
                if (id < 0 || id >= vocabSize)
                    throw new WrenException($"{path}: token id {id} in row {b} is outside the vocabulary [0, {vocabSize})");
        }
        return tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, length]);
    }
}
