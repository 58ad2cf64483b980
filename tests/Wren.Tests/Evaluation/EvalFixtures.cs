using Wren.Evaluation;
using Wren.Models;
using Wren.Tokenization;
using static TorchSharp.torch;

namespace Wren.Tests.Evaluation;

/// <summary>
/// A tokenizer whose output is known by hand: printable ASCII characters are ids 1–95 (char − 31), end-of-text is 0, and
/// a few multi-character tokens (ids 96+) are matched greedily, longest first, so "ab" and " yes" merge.
/// </summary>
internal sealed class TableTokenizer : ITextTokenizer
{
    public static readonly string[] Merged = ["ab", " yes", " the", "er"];

    public string Name => "table tokenizer (tests)";
    public int VocabularySize => 96 + Merged.Length;
    public int? EndOfTextId => 0;

    public static int Char(char c) => c is >= ' ' and <= '~' ? c - 31 : throw new ArgumentException($"no id for '{c}'");
    public static int Merge(string token) => 96 + Array.IndexOf(Merged, token);

    public IReadOnlyList<int> Encode(string text)
    {
        var ids = new List<int>();
        for (int i = 0; i < text.Length;)
        {
            var merge = Merged.Where(m => string.CompareOrdinal(text, i, m, 0, m.Length) == 0).MaxBy(m => m.Length);
            if (merge is not null) { ids.Add(Merge(merge)); i += merge.Length; }
            else if (text[i] == '\n') { ids.Add(Char('~')); i++; }   // newlines share an id: enough for prompts in tests
            else ids.Add(Char(text[i++]));
        }
        return ids;
    }

    public string Decode(IEnumerable<int> ids) =>
        string.Concat(ids.Select(id => id >= 96 ? Merged[id - 96] : id == 0 ? "" : ((char)(id + 31)).ToString()));
}

internal static class EvalFixtures
{
    /// <summary>A small hybrid (attention, Mamba2, DeltaNet, FFN) over the table tokenizer's vocabulary, with meta tokens.</summary>
    public static HybridForCausalLM Model(long seed = 3) =>
        TestSupport.RandomModel(TestSupport.Config("a", "m2", "deltanet", "f") with
        {
            VocabSize = new TableTokenizer().VocabularySize,
            NumMemoryTokens = 4,
            MaxPositionEmbeddings = 512,
        }, seed);

    /// <summary>
    /// The expected log-likelihood by a plain loop over raw logits: one forward over <paramref name="input"/> (context then
    /// continuation), then for each continuation token the log-softmax at the position before it, in double precision.
    /// </summary>
    public static (double LogLikelihood, bool Greedy) PlainLoop(HybridForCausalLM model, int[] context, int[] continuation)
    {
        var all = context.Concat(continuation).ToArray();
        float[] logits;
        int vocab = model.Config.VocabSize;
        using (no_grad())
        using (var ids = tensor(all[..^1].Select(t => (long)t).ToArray(), [1, all.Length - 1]))
        using (var output = model.forward(new LMInput(ids)).Logits)
            logits = output.data<float>().ToArray();
        double sum = 0;
        bool greedy = true;
        for (int j = 0; j < continuation.Length; j++)
        {
            int position = context.Length - 1 + j;
            var row = logits.AsSpan(position * vocab, vocab);
            double max = double.NegativeInfinity;
            int best = 0;
            for (int v = 0; v < vocab; v++) if (row[v] > max) { max = row[v]; best = v; }
            double total = 0;
            for (int v = 0; v < vocab; v++) total += Math.Exp(row[v] - max);
            sum += row[continuation[j]] - max - Math.Log(total);
            greedy &= best == continuation[j];
        }
        return (sum, greedy);
    }

    /// <summary>Writes <paramref name="files"/> (name → content) into a fresh folder; returns the folder.</summary>
    public static string Folder(params (string Name, string Content)[] files)
    {
        string dir = TestSupport.TempDir();
        foreach (var (name, content) in files) File.WriteAllText(Path.Combine(dir, name), content);
        return dir;
    }

    public static EvalTask Task(string folder, string file = "task.yaml") =>
        TaskFiles.LoadFile(new TaskPath(Path.Combine(folder, file), false))[0];
}
