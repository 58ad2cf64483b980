using Wren.Models;

namespace Wren.Tests.Models;

/// <summary>
/// The released-size presets against their parameter count, counted here tensor by tensor from the shapes of
/// checkpoint-layout.md (not from the model), and against the sizes the Nemotron-Flash paper states (0.96B, 2.7B).
/// </summary>
[Collection("cli")]
public class PresetSizeTests
{
    /// <summary>Parameters of a Nemotron-Flash config without mixer-layer FFNs (intermediate_size 0), by the layout's shapes.</summary>
    static long CountByLayout(HybridConfig c)
    {
        long H = c.HiddenSize, F = (long)(c.FfnExpandRatio!.Value * H) / 128 * 128;
        long heads = c.NumAttentionHeads, kv = c.NumKeyValueHeads!.Value;
        long headDim = H / heads, dInner = c.MambaExpand * H, mHeads = dInner / c.Mamba2HeadDim, N = c.MambaDState, K = c.MambaDConv;
        long kqNorms = c.KqNorm == "rms" ? 2 * headDim : 0;                                 // q_norm, k_norm weights, or none
        long total = (long)c.VocabSize * H + (long)c.NumMemoryTokens * H + H;            // tied embedding, meta tokens, final norm
        foreach (var type in c.LayerTypes)
            total += H + type switch                                                          // every layer: one pre-norm
            {
                "f" => 3 * H * F,                                                             // gate, up [F, H]; down [H, F]
                "deltanet" => 4 * H * H + heads * H + 3 * H * K + headDim,                     // q k v o, b, 3 short convs, o_norm
                "m2" => 3 * mHeads + (2 * dInner + 2 * N + mHeads) * H + H * dInner           // dt_bias A_log D, in_proj, out_proj
                        + (dInner + 2 * N) * (K + 1) + dInner,                                 // conv1d weight + bias, gated norm
                "a" => 2 * H * H + 2 * kv * headDim * H + kqNorms,                            // q o, k v (+ q_norm k_norm)
                _ => throw new ArgumentException(type),
            };
        return total;
    }

    /// <summary>The paper truncates to two significant digits (0.9654B is quoted as 0.96B, 2.7500B as 2.7B).</summary>
    static double TwoSignificantDigitsDown(double billions)
    {
        double unit = Math.Pow(10, Math.Floor(Math.Log10(billions)) - 1);
        return Math.Floor(billions / unit) * unit;
    }

    [Theory]
    [InlineData("flash-1b", 2048, 6144, 16, 4, 24, 0.96)]
    [InlineData("flash-3b", 3072, 9216, 24, 6, 36, 2.7)]
    public void Released_presets_have_the_released_shapes_and_sizes(string preset, int hidden, int ffn, int heads, int kvHeads, int layers,
                                                                    double paperBillions)
    {
        var config = HybridConfig.Load(preset);
        Assert.Equal((hidden, ffn, heads, kvHeads, layers),
                     (config.HiddenSize, config.FfnSize, config.NumAttentionHeads, config.KvHeads, config.NumLayers));
        Assert.Equal((131_072, 256, true), (config.VocabSize, config.NumMemoryTokens, config.TieWordEmbeddings));
        int mixers = layers / 2;                       // 2 : 4 : 6 : 12 per 24 operators (method §6)
        Assert.Equal(mixers / 6, config.LayerTypes.Count(t => t == "a"));
        Assert.Equal(mixers / 3, config.LayerTypes.Count(t => t == "deltanet"));
        Assert.Equal(mixers / 2, config.LayerTypes.Count(t => t == "m2"));
        Assert.Equal(mixers, config.LayerTypes.Count(t => t == "f"));

        long expected = CountByLayout(config);
        var footprint = ModelFootprint.Of(config);
        Assert.Equal(expected, footprint.Parameters);
        Assert.Equal(paperBillions, TwoSignificantDigitsDown(expected / 1e9), 6);
    }

    /// <summary>
    /// The released Nemotron-Flash-3B(-Instruct) config.json (huggingface.co/nvidia/Nemotron-Flash-3B-Instruct), typed here from
    /// its text: <c>D F M2 F A F M2 F</c> three times, then <c>D F M2 F</c> three times (full attention at 4, 12, 20; DeltaNet at
    /// 0, 8, 16, 24, 28, 32), <c>"kq_norm": "none"</c> and <c>"attn_implementation_new": "fused_mha"</c>.
    /// </summary>
    [Fact]
    public void Flash_3b_has_the_released_layer_order_and_attention_settings()
    {
        string[] block = ["deltanet", "f", "m2", "f", "a", "f", "m2", "f"], tail = ["deltanet", "f", "m2", "f"];
        string[] released = [.. block, .. block, .. block, .. tail, .. tail, .. tail];
        var config = HybridConfig.Load("flash-3b");
        Assert.Equal(released, config.LayerTypes);
        Assert.Equal([4, 12, 20], Enumerable.Range(0, 36).Where(i => config.LayerTypes[i] == "a"));
        Assert.Equal(("none", "fused_mha"), (config.KqNorm, config.AttnImplementation));
        Assert.Equal("fused_mha", HybridConfig.Load("flash-1b").AttnImplementation);   // the 1B's released config.json says the same
    }

    [Fact]
    public void Inspect_reports_the_size_in_billions()
    {
        // Spectre's console as well as Console.Out: an earlier CLI test may have bound AnsiConsole to the real standard output.
        var (code, output) = Wren.Tests.Cli.CliTests.RunCaptured("inspect", "flash-1b");
        Assert.Equal(0, code);
        Assert.Contains("965,389,952", output);
        Assert.Contains("parameters: 0.965B", output);
    }
}
