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

    /// <summary>
    /// hymba-1.5b, the released Hymba-1.5B-Base config.json (huggingface.co/nvidia/Hymba-1.5B-Base) typed from its text (less
    /// <c>conv_dim</c>, which the released code overwrites with d_inner), counted by hand from modeling_hymba.py's shapes:
    /// per layer input_layernorm; in_proj [q 1600 | k int(5/25·1600) = 320 | v 640 | x 3200 | z 3200, 1600], without k and v
    /// in the 15 layers that reuse another layer's KV (14 groups, one of three); conv1d 3200·4 + bias; x_proj [100 + 2·16, 3200];
    /// dt_proj [3200, 100] + bias; A_log.0 [3200, 16]; D.0; dt/B/C norms 100 + 16 + 16; pre_avg norms 2·3200; out_proj
    /// [1600, 3200]; pre_moe_layernorm; SwiGLU 3·1600·5504. Then 32001·1600 tied embedding, 128 meta tokens, final norm:
    /// 1,522,797,824, the "1.52B" of the model card.
    /// </summary>
    [Fact]
    public void Hymba_1_5b_has_the_released_shape_and_a_hand_counted_size()
    {
        var config = HybridConfig.Load("hymba-1.5b");
        Assert.Equal((1600, 32, 25, 5, 5504, 32001, 128), (config.HiddenSize, config.NumLayers, config.NumAttentionHeads, config.KvHeads,
                                                          config.FfnSize, config.VocabSize, config.NumMemoryTokens));
        Assert.Equal([0, 15, 31], Enumerable.Range(0, 32).Where(i => config.WindowOf(i) is null));
        Assert.Equal(1024, config.WindowOf(1));
        Assert.Equal(15, Enumerable.Range(0, 32).Count(i => config.KvSourceOf(i) != i));
        Assert.Equal(16, config.KvSourceOf(18));                                           // the group of three, [16, 17, 18]
        long H = 1600, dInner = 3200, N = 16, R = 100, F = 5504;
        long Layer(bool reuses) => H + (H + (reuses ? 0 : 320 + 640) + 2 * dInner) * H + dInner * 4 + dInner + (R + 2 * N) * dInner
                                   + dInner * R + dInner + dInner * N + dInner + R + 2 * N + 2 * dInner + H * dInner + H + 3 * H * F;
        long expected = 32001 * H + 128 * H + H + 15 * Layer(true) + 17 * Layer(false);
        Assert.Equal(1_522_797_824, expected);
        Assert.Equal(expected, ModelFootprint.Of(config).Parameters);
        var (code, output) = Wren.Tests.Cli.CliTests.RunCaptured("inspect", "hymba-1.5b");
        Assert.Equal(0, code);
        Assert.Contains("1,522,797,824", output);
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
