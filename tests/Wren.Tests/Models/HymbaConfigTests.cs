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
    [InlineData("kv_reuse_group", "[[1, 2], [2, 3]]", "kv_reuse_group[1] names layer 2, already in another group")]
    [InlineData("kv_reuse_group", "[[1, 3]]", "kv_reuse_group[0] makes global layer 3 (global_attn_idx) a consumer")]
    [InlineData("kv_reuse_group", "[[1, 7]]", "kv_reuse_group[0] names layer 7, outside 0..3")]
    [InlineData("kv_reuse_group", "[[2, 1]]", "kv_reuse_group[0] lists layer 1 after its producer 2: consumers must come later")]
    [InlineData("kv_reuse_group", "[[1, 2], []]", "kv_reuse_group[1] is empty")]
    [InlineData("global_attn_idx", "[0, 4]", "global_attn_idx[1] = 4 is outside the layers 0..3")]
    [InlineData("global_attn_idx", "[-1]", "global_attn_idx[0] = -1 is outside the layers 0..3")]
    [InlineData("global_attn_idx", "[3, 0, 3]", "global_attn_idx lists layer 3 twice")]
    public void Bad_reuse_groups_and_global_layers_are_refused_by_name(string key, string value, string message)
    {
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j[key] = JsonNode.Parse(value))));
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_model_type_wren_does_not_map_is_named_when_layer_types_are_missing()
    {
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["model_type"] = "hymbaa")));
        Assert.Contains("missing required key 'layer_types' (model_type \"hymbaa\" is not one Wren maps", e.Message);
        e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["attn_implementation_new"] = "sdpa")));
        Assert.Contains("\"flex\" in a config with model_type \"hymba\"", e.Message);
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
    public void Reuse_groups_name_producers_and_consumers()
    {
        var c = HybridConfig.Parse(Released(j => j["kv_reuse_group"] = JsonNode.Parse("[[1, 2], [0]]")));
        Assert.Equal([0, 1, 1, 3], Enumerable.Range(0, 4).Select(c.KvSourceOf));
        Assert.Equal([false, true, false, false], Enumerable.Range(0, 4).Select(c.SharesKv));
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j =>
        {
            j.Remove("layer_type");
            j["layer_types"] = new JsonArray("hymba", "a", "hymba", "hymba");
            j["kv_reuse_group"] = JsonNode.Parse("[[1, 2]]");
        })));
        Assert.Contains("kv_reuse_group[0] names layer 1, a 'a' layer: only hymba layers share KV", e.Message);
    }

    [Fact]
    public void Kv_reuse_every_i_layer_becomes_groups_of_consecutive_layers()
    {
        // modeling_hymba.py: layer i computes k/v when i % n == 0; the others reuse the last computed ones.
        var c = HybridConfig.Parse(Released(j =>
        {
            j.Remove("kv_reuse_group");
            j["kv_reuse_every_i_layer"] = 2;
            j["global_attn_idx"] = new JsonArray(0, 2);
        }));
        Assert.Equal([0, 0, 2, 2], Enumerable.Range(0, 4).Select(c.KvSourceOf));
    }

    [Fact]
    public void Meta_tokens_in_a_windowed_hymba_layer_are_accepted_and_interspersed_meta_tokens_refused()
    {
        HybridConfig.Parse(Released(j => j["num_memory_tokens"] = 3)).Validate();
        var e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["memory_tokens_interspersed_every"] = 16)));
        Assert.Contains("memory_tokens_interspersed_every", e.Message);
        foreach (var value in new JsonNode[] { 16.0, "16" })
            Assert.Throws<WrenException>(() =>
                HybridConfig.Parse(Released(j => j["memory_tokens_interspersed_every"] = value.DeepClone())));
        e = Assert.Throws<WrenException>(() => HybridConfig.Parse(Released(j => j["kv_reuse_every_i_layer"] = "x")));
        Assert.Contains("kv_reuse_every_i_layer must be an integer", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
