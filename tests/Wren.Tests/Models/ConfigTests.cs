using System.Text.Json.Nodes;
using Wren.Models;

namespace Wren.Tests.Models;

public class ConfigTests
{
    static string FixtureConfig => File.ReadAllText(Path.Combine(TestSupport.Fixtures, "nemotron-flash-example", "config.json"));

    static string Edit(Action<JsonObject> change)
    {
        var json = (JsonObject)JsonNode.Parse(FixtureConfig)!;
        change(json);
        return json.ToJsonString();
    }

    [Fact]
    public void Reads_the_fixture_and_derives_sizes()
    {
        var c = HybridConfig.Parse(FixtureConfig);
        Assert.Equal(["a", "f", "deltanet", "f", "m2", "f"], c.LayerTypes);
        Assert.Equal(128, c.MambaDInner);
        Assert.Equal(8, c.MambaHeads);
        Assert.Equal(16, c.AttnQkHeadDim);
        Assert.Equal(128, c.FfnSize);
        Assert.True(c.MixerLayersHaveFfn);
        Assert.Equal(4, c.NumMemoryTokens);
    }

    [Fact]
    public void Round_trips_and_keeps_unknown_keys()
    {
        var c = HybridConfig.Parse(Edit(j => j["custom_key"] = new JsonObject { ["x"] = 1 }));
        var again = HybridConfig.Parse(c.ToJson());
        Assert.Equal(c.LayerTypes, again.LayerTypes);
        Assert.Equal(c.HiddenSize, again.HiddenSize);
        Assert.Contains("\"custom_key\"", again.ToJson());
        Assert.Contains("\"architectures\"", again.ToJson());
    }

    [Fact]
    public void Ffn_width_floors_expand_ratio_to_a_multiple_of_128()
    {
        var c = HybridConfig.Parse(Edit(j =>
        {
            j["ffn_expand_ratio"] = 3.0; j["hidden_size"] = 96; j["num_attention_heads"] = 4; j["mamba2_headdim"] = 24;
        }));
        Assert.Equal(256, c.FfnSize);   // int(288) // 128 · 128
    }

    [Theory]
    [InlineData("layer_types", "[\"a\", \"f\", \"x\", \"f\", \"m2\", \"f\"]", "layer_types[2] = 'x' is not a known layer type")]
    [InlineData("num_hidden_layers", "7", "num_hidden_layers is 7 but layer_types has 6 entries")]
    [InlineData("kq_norm", "null", "kq_norm is required")]
    [InlineData("kq_norm", "\"layer\"", "kq_norm 'layer' is not supported")]
    [InlineData("mamba2_headdim", "32", "Mamba2 needs a multiple of 8 heads")]
    [InlineData("num_key_value_heads", "3", "must be a multiple of num_key_value_heads")]
    [InlineData("sliding_window", "8", "global_attn_idx must be a list")]
    [InlineData("mlp_hidden_act", "\"gelu\"", "mlp_hidden_act 'gelu' is not supported")]
    [InlineData("rope_type", "\"ntk\"", "needs max_position_embeddings and orig_max_position_embeddings")]
    [InlineData("hidden_size", "\"big\"", "wrong type")]
    public void Invalid_values_give_clear_messages(string key, string value, string message)
    {
        var json = Edit(j =>
        {
            j[key] = JsonNode.Parse(value);
            if (key == "sliding_window") j["global_attn_idx"] = null;
        });
        var error = Assert.Throws<WrenException>(() => HybridConfig.Parse(json));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Ffn_ratio_that_floors_to_zero_is_rejected()
    {
        var error = Assert.Throws<WrenException>(() =>
            HybridConfig.Parse(Edit(j => { j["ffn_expand_ratio"] = 1.5; j["intermediate_size"] = 0; })));
        Assert.Contains("floors to an FFN width of 0", error.Message);
    }

    /// <summary>320 GB of mLSTM up-projection (proj_factor 10⁷ at hidden 64): refused before anything is allocated, not an
    /// allocator crash.</summary>
    [Fact]
    public void Weights_larger_than_the_machine_are_refused_before_allocating()
    {
        var config = TestSupport.Config("mlstm", "f") with { ProjFactor = 1e7 };
        var error = Assert.Throws<WrenException>(() => new HybridForCausalLM(config));
        Assert.Contains("GB of memory", error.Message);
    }

    [Fact]
    public void Attention_implementations_follow_the_released_code()
    {
        var fused = HybridConfig.Parse(Edit(j =>
        {
            j["attn_implementation_new"] = "fused_mha"; j["sliding_window"] = 8; j["global_attn_idx"] = new JsonArray();
        }));
        Assert.Null(fused.WindowOf(0));   // fused_mha ignores sliding_window
        var flash = HybridConfig.Parse(Edit(j => { j["sliding_window"] = 8; j["global_attn_idx"] = new JsonArray(); }));
        Assert.Equal(8, flash.WindowOf(0));
        var error = Assert.Throws<WrenException>(() => HybridConfig.Parse(Edit(j => j["attn_implementation_new"] = "sdpa")));
        Assert.Contains("'sdpa' is not supported", error.Message);
    }

    [Fact]
    public void Layer_type_aliases_and_registry()
    {
        Assert.Equal("m2", OperatorRegistry.Canonical("m"));
        Assert.Equal("mamba", OperatorRegistry.Get("m").ModuleName);
        Assert.Equal("gla", OperatorRegistry.Get("deltanet").ModuleName);
        Assert.Equal("attn", OperatorRegistry.Get("rwkv7").ModuleName);   // fla's module name, so fla checkpoints load by name
        Assert.Throws<WrenException>(() => OperatorRegistry.Get("rwkv6"));
    }
}
