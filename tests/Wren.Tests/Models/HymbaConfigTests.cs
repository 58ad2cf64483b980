using System.Text.Json.Nodes;
using Wren.Models;

namespace Wren.Tests.Models;

/// <summary>
/// A released-layout Hymba config.json (configuration_hymba.py's keys: <c>model_type</c> "hymba", <c>layer_type</c> "h" per
/// layer, <c>mamba_dt_rank</c> "auto", <c>attn_implementation_new</c> "flex", <c>kv_reuse_group</c>) mapped onto Wren's keys,
/// and the one-line errors for bad reuse groups.
/// </summary>
public class HymbaConfigTests
{
    static string Released(Action<JsonObject>? change = null)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("HymbaForCausalLM"), ["model_type"] = "hymba",
            ["hidden_size"] = 48, ["num_hidden_layers"] = 4, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
            ["intermediate_size"] = 40, ["vocab_size"] = 97, ["tie_word_embeddings"] = true,
            ["layer_type"] = new JsonArray("h", "h", "h", "h"), ["mamba_dt_rank"] = "auto", ["mamba_d_state"] = 5,
            ["mamba_expand"] = 2, ["mamba_d_conv"] = 4, ["mamba_inner_layernorms"] = true, ["kq_norm"] = "none",
            ["rope"] = true, ["rope_theta"] = 10000.0, ["attn_implementation_new"] = "flex", ["num_memory_tokens"] = 0,
            ["sliding_window"] = 8, ["global_attn_idx"] = new JsonArray(0, 3), ["kv_reuse_group"] = new JsonArray(),
        };
        change?.Invoke(json);
        return json.ToJsonString();
    }

    [Fact]
    public void Released_keys_map_to_hymba_layers()
    {
        var c = HybridConfig.Parse(Released());
        Assert.Equal(["hymba", "hymba", "hymba", "hymba"], c.LayerTypes);
        Assert.Equal(3, c.MambaTimestepRank);             // "auto": ⌈48 / 16⌉
        Assert.Equal(96, c.MambaDInner);
        Assert.True(c.MixerLayersHaveFfn);                // intermediate_size 40: a SwiGLU FFN in every layer
        Assert.Equal(40, c.FfnSize);
        Assert.Null(c.WindowOf(0));
        Assert.Equal(8, c.WindowOf(1));
        Assert.Null(c.WindowOf(3));
        Assert.Equal(c.LayerTypes, HybridConfig.Parse(c.ToJson()).LayerTypes);
    }

    [Theory]
    [InlineData("[[1, 2], [2, 3]]", "kv_reuse_group[1] names layer 2, already in another group")]
    [InlineData("[[1, 3]]", "kv_reuse_group[0] makes global layer 3 (global_attn_idx) a consumer")]
    [InlineData("[[1, 7]]", "kv_reuse_group[0] names layer 7, outside 0..3")]
    [InlineData("[[1, 2]]", "kv_reuse_group (cross-layer KV sharing) is not implemented yet")]
    public void Bad_reuse_groups_are_refused_by_name(string groups, string message)
    {
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["kv_reuse_group"] = JsonNode.Parse(groups))));
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Other_released_layer_types_and_a_missing_layer_count_are_refused()
    {
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["layer_type"] = new JsonArray("h", "a", "h", "h"))));
        Assert.Contains("layer_type must list \"h\"", e.Message);
        e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j.Remove("num_hidden_layers"))));
        Assert.Contains("num_hidden_layers", e.Message);
    }

    [Fact]
    public void In_proj_widths_that_do_not_split_are_refused()
    {
        // 5 heads do not split hidden 48, so int(2 / 5 · 48) = 19 key columns are not 2 heads of 48 / 5.
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["num_attention_heads"] = 5)));
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Meta_tokens_are_refused_only_when_a_hymba_layer_is_windowed()
    {
        var global = HybridConfig.Parse(Released(j =>
        {
            j["num_memory_tokens"] = 3;
            j["global_attn_idx"] = new JsonArray(0, 1, 2, 3);
        }));
        global.Validate();
        var windowed = Released(j => j["num_memory_tokens"] = 3);
        var error = Assert.Throws<WrenException>(() => HybridConfig.Parse(windowed));
        Assert.Contains("list the hymba layers in global_attn_idx", error.Message);
    }
}
