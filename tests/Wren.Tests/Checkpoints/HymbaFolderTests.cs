using System.Text.Json.Nodes;
using Wren.Checkpoints;
using Wren.Inference;
using Wren.Interop;
using Wren.Models;
using static TorchSharp.torch;
using static Wren.Tests.Cli.CliTests;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Checkpoints;

/// <summary>
/// A model folder in the released Hymba layout: config.json in configuration_hymba.py's keys (<c>layer_type</c> "h",
/// <c>attn_implementation_new</c> "flex", <c>mamba_dt_rank</c> "auto", <c>kv_reuse_group</c>, meta tokens, a window),
/// bfloat16 safetensors under the released names (<c>mamba.A_log.0</c>, <c>moe.experts.0.*</c>, <c>memory_tokens</c>, no
/// <c>lm_head.weight</c> when tied), loaded by the library and by the commands (a 128-id vocabulary keeps the byte tokenizer's
/// ids in range).
/// </summary>
[Collection("cli")]
public class HymbaFolderTests
{
    static readonly string ReleasedConfig = new JsonObject
    {
        ["architectures"] = new JsonArray("HymbaForCausalLM"), ["model_type"] = "hymba", ["torch_dtype"] = "bfloat16",
        ["hidden_size"] = 48, ["num_hidden_layers"] = 4, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
        ["intermediate_size"] = 40, ["vocab_size"] = 128, ["tie_word_embeddings"] = true, ["rms_norm_eps"] = 1e-6,
        ["layer_type"] = new JsonArray("h", "h", "h", "h"), ["mamba_dt_rank"] = "auto", ["mamba_d_state"] = 5,
        ["mamba_expand"] = 2, ["mamba_d_conv"] = 4, ["mamba_inner_layernorms"] = true, ["mamba_conv_bias"] = true,
        ["mamba_proj_bias"] = false, ["kq_norm"] = "none", ["rope"] = true, ["rope_theta"] = 10000.0, ["rope_type"] = "ntk",
        ["max_position_embeddings"] = 64, ["orig_max_position_embeddings"] = 16, ["attn_implementation"] = "flex",
        ["attn_implementation_new"] = "flex", ["num_memory_tokens"] = 3, ["memory_tokens_interspersed_every"] = 0,
        ["sliding_window"] = 4, ["global_attn_idx"] = new JsonArray(0, 3), ["kv_reuse_every_i_layer"] = -1,
        ["kv_reuse_group"] = new JsonArray(new JsonArray(1, 2)), ["mlp_hidden_act"] = "silu",
    }.ToJsonString();

    [Fact]
    public void A_released_layout_folder_loads_by_name_and_runs_through_inspect_logits_and_generate()
    {
        string dir = Path.Combine(TempDir(), "hymba");
        using var source = RandomModel(HybridConfig.Parse(ReleasedConfig), seed: 12);
        Checkpoint.Save(source, dir, ScalarType.BFloat16);
        File.WriteAllText(Path.Combine(dir, "config.json"), ReleasedConfig);      // the released text, not Wren's rewrite

        using (var file = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors")))
        {
            var names = file.Tensors.Keys.ToHashSet();
            foreach (var name in new[]
                     {
                         "model.memory_tokens", "model.embed_tokens.weight", "model.final_layernorm.weight",
                         "model.layers.0.mamba.A_log.0", "model.layers.0.mamba.D.0", "model.layers.0.mamba.x_proj.0.weight",
                         "model.layers.0.mamba.dt_proj.0.bias", "model.layers.0.mamba.pre_avg_layernorm2.weight",
                         "model.layers.1.pre_moe_layernorm.weight", "model.layers.1.moe.experts.0.gate_proj.weight",
                     })
                Assert.Contains(name, names);
            Assert.DoesNotContain("lm_head.weight", names);
            Assert.DoesNotContain(names, n => n.Contains("ffn", StringComparison.Ordinal));
            Assert.Equal([48 + 2 * 96, 48], file.Info("model.layers.2.mamba.in_proj.weight").Shape);   // reuses layer 1's k/v
            Assert.Equal([48 + 24 + 48 + 2 * 96, 48], file.Info("model.layers.1.mamba.in_proj.weight").Shape);
        }

        using var loaded = HybridForCausalLM.FromPretrained(dir);
        using var rounded = RandomModel(loaded.Config, seed: 12);                 // the source's weights, rounded to bf16
        using (no_grad())
            foreach (var (name, p) in rounded.named_parameters()) p.copy_(p.to(ScalarType.BFloat16).to(ScalarType.Float32));
        var tokens = RandomTokens(1, 11, 97, 13);
        using var scope = NewDisposeScope();
        var expected = Scoring.Logits(rounded, tokens);
        AssertClose(Scoring.Logits(loaded, tokens), expected, 1e-5, "loaded folder vs the bf16-rounded source");
        AssertClose(Scoring.Logits(loaded, tokens, prefill: 5), expected, 1e-4, "prefill + decode of the loaded folder");

        var (inspected, summary) = RunCaptured("inspect", dir);
        Assert.True(inspected == 0, summary);
        Assert.Contains("hymba hymba hymba hymba", summary);
        Assert.Contains($"{loaded.parameters().Sum(p => p.NumberOfElements):N0}", summary);
        string ids = Path.Combine(dir, "tokens.json"), logits = Path.Combine(dir, "logits.npy");
        File.WriteAllText(ids, $"[[{string.Join(", ", tokens.data<long>().ToArray())}]]");
        var (code, error) = RunCaptured("logits", "--model", dir, "--tokens", ids, "--out", logits, "--prefill", "4");
        Assert.True(code == 0, error);
        var (data, shape) = Npy.ReadFloat32(logits);
        Assert.Equal([1L, 11L, 128L], shape);
        AssertClose(tensor(data).reshape(1, 11, 128), expected, 1e-4, "wren logits --prefill 4");
        (code, error) = RunCaptured("generate", "--model", dir, "--prompt", "Hi", "--prompt", "Hello there", "--max-new-tokens", "6",
                                    "--temperature", "0");
        Assert.True(code == 0, error);
    }
}
