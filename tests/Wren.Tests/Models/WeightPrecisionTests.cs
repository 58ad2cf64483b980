using TorchSharp;
using Wren.Checkpoints;
using Wren.Inference;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Models;

/// <summary>
/// Models with bf16, int8 and 4-bit (q4, q4k) weight matrices against fp32: the same maths on the stored weights, errors
/// within the rule's bound, checkpoints.
/// </summary>
[Collection(Kernels.KernelPathCollection.Name)]
public class WeightPrecisionTests
{
    /// <summary>Width 80: rows of 80 values end in a partial 16-value int8/q4 block, fill a third of a q4k super-block, and are
    /// not a multiple of any vector width.</summary>
    static HybridConfig AwkwardConfig => Config("deltanet", "f", "m2", "f", "a", "f") with
    {
        HiddenSize = 80,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        Mamba2HeadDim = 20,
        NumMemoryTokens = 3,
        TieWordEmbeddings = true,
    };

    /// <summary>An fp32 model holding exactly the values <paramref name="packed"/> stores (bf16 widened, int8 and 4-bit
    /// dequantized).</summary>
    static HybridForCausalLM Widened(HybridForCausalLM packed)
    {
        var model = new HybridForCausalLM(packed.Config);
        var stored = packed.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                p.copy_(stored.TryGetValue(name + "_scale", out var scale)
                    ? Linear.Dequantize(stored[name], scale, p.shape[1])
                    : stored[name].to(ScalarType.Float32));
        model.eval();
        return model;
    }

    static bool Same(Tensor a, Tensor b) => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>
    /// bf16: the fp32 forward of the stored weights, on every path. int8: the products (up to 64 rows) also round each
    /// activation row to int8 per block of 32 (the Q8_0 dot), which moves a product by at most 1/254 of its blocks' largest
    /// |x| times Σ|w| (docs/precision.md); to first order these add over the matrices on the path, so the RMS logit error
    /// stays within (matrices) · 1/254 of the logit RMS, as in the logit-error bound below; and every path computes the same
    /// integer sums (equal to the scalar path up to fp32 summation order). q4 and q4k round the activations by the same rule,
    /// so the same bound holds, and the decode (prefill: 4) runs the fused decode path; but there the paths are not held to
    /// the scalar path's logits: an fp32 difference of 1e-6 upstream (summation order) can flip the rounding of one
    /// activation, which moves a product by d_x·|w| (≈ 0.07 × 0.6 here), so each path is held to the bound itself.
    /// </summary>
    [Theory]
    [InlineData(WeightPrecision.BFloat16)]
    [InlineData(WeightPrecision.Int8)]
    [InlineData(WeightPrecision.Q4)]
    [InlineData(WeightPrecision.Q4K)]
    public void Packed_model_computes_the_fp32_forward_of_its_stored_weights(WeightPrecision precision)
    {
        using var scope = NewDisposeScope();
        using var reference = RandomModel(AwkwardConfig, seed: 5);
        using var packed = WeightPacking.Pack(reference, precision);
        using var widened = Widened(packed);
        var tokens = RandomTokens(2, 12, AwkwardConfig.VocabSize, 6);
        Tensor expected = Scoring.Logits(widened, tokens), expectedDecode = Scoring.Logits(widened, tokens, prefill: 4);
        bool fourBit = precision is WeightPrecision.Q4 or WeightPrecision.Q4K;
        if (precision.IsQuantized())
        {
            double bound = (2 * AwkwardConfig.NumLayers + 2) / 254.0;
            Tensor widenedForward = expected, widenedDecode = expectedDecode;
            foreach (var path in fourBit ? KernelPaths.Available : [KernelPath.Scalar])
                using (KernelPaths.Force(path))
                {
                    Tensor forward = Scoring.Logits(packed, tokens), decode = Scoring.Logits(packed, tokens, prefill: 4);
                    var cases = new[] { (forward, widenedForward, "forward"), (decode, widenedDecode, "decode") };
                    foreach (var (actual, widenedLogits, what) in cases)
                    {
                        double rms = (actual - widenedLogits).square().mean().sqrt().item<float>();
                        double scale = widenedLogits.square().mean().sqrt().item<float>();
                        Assert.True(rms <= bound * scale,
                                    $"{precision} {path} {what}: RMS logit error {rms:E3} > {bound:E2} × {scale:F3}");
                    }
                    if (path == KernelPath.Scalar) (expected, expectedDecode) = (forward, decode);
                }
        }
        foreach (var path in fourBit ? [] : KernelPaths.Available)
            using (KernelPaths.Force(path))
            {
                AssertClose(Scoring.Logits(packed, tokens), expected, 1e-4, $"{precision} {path} parallel forward");
                AssertClose(Scoring.Logits(packed, tokens, prefill: 4), expectedDecode, 1e-4, $"{precision} {path} decode");
            }
    }

    /// <summary>
    /// Each stored weight is off by at most ε of its scale (bf16: 2⁻⁹ relative; int8: d/2 = max|w|/254 of its block; q4:
    /// |d|/2 = max|w|/16 of its block, a clamped value |d|; q4k: d·sc/2 ≤ span/30 ≤ max|w|/15 of its super-block), so
    /// each matrix product on the residual path adds a relative error of order ε; to first order these add, so logits
    /// stay within (matrices on the path) · ε relative RMS: embedding, two products per layer, lm_head. The greedy steps run
    /// the fused decode path. A random model's logits are nearly flat, so 4-bit rounding flips many of its argmaxes: there
    /// agreement is held only far above chance (1/97); trained models' agreement is measured in docs/precision.md.
    /// </summary>
    [Theory]
    [InlineData(WeightPrecision.BFloat16, 1.0 / 512, 0.9)]
    [InlineData(WeightPrecision.Int8, 1.0 / 254, 0.9)]
    [InlineData(WeightPrecision.Q4, 1.0 / 16, 0.3)]
    [InlineData(WeightPrecision.Q4K, 1.0 / 15, 0.3)]
    public void Logit_error_stays_within_the_quantization_bound(WeightPrecision precision, double epsilon, double agreement)
    {
        using var scope = NewDisposeScope();
        using var reference = RandomModel(AwkwardConfig, seed: 7);
        using var packed = WeightPacking.Pack(reference, precision);
        var prompt = RandomTokens(1, 5, AwkwardConfig.VocabSize, 8);
        var windows = RandomTokens(3, 17, AwkwardConfig.VocabSize, 9);
        var accuracy = PrecisionAccuracyMeasurement.Compare(reference, packed, prompt, 48, windows);
        double matrices = 2 * AwkwardConfig.NumLayers + 2;
        Assert.True(accuracy.RmsLogitError <= matrices * epsilon * accuracy.ReferenceLogitRms,
            $"{precision}: RMS logit error {accuracy.RmsLogitError:E3} > {matrices} × {epsilon:E2} × {accuracy.ReferenceLogitRms:F3}");
        Assert.True(accuracy.GreedyAgreement >= agreement, $"{precision}: greedy agreement {accuracy.GreedyAgreement:P0}");
        Assert.InRange(accuracy.PerplexityChange!.Value, -matrices * epsilon, matrices * epsilon);
        Assert.Equal(precision.Name(), accuracy.Precision);
    }

    [Theory]
    [InlineData(WeightPrecision.Int8, ScalarType.Int8)]
    [InlineData(WeightPrecision.Q4, ScalarType.Byte)]
    [InlineData(WeightPrecision.Q4K, ScalarType.Byte)]
    public void Quantized_model_keeps_no_full_precision_matrix(WeightPrecision precision, ScalarType stored)
    {
        using var reference = RandomModel(AwkwardConfig);
        using var packed = WeightPacking.Pack(reference, precision);
        var named = packed.named_parameters().ToList();
        foreach (var (name, p) in named.Where(p => p.name.EndsWith("_proj.weight") || p.name == "model.embed_tokens.weight"))
        {
            Assert.Equal(stored, p.dtype);
            Assert.Contains(named, q => q.name == name + "_scale");
        }
        var footprint = ModelFootprint.Of(AwkwardConfig, ScalarType.Float32, precision);
        Assert.Equal(ModelFootprint.Of(AwkwardConfig).Parameters, footprint.Parameters);
        Assert.Equal(named.Sum(p => p.parameter.NumberOfElements * p.parameter.ElementSize), footprint.WeightBytes);
    }

    /// <summary>
    /// Quantized on load from an fp32 folder, saved with its quantization_config, reloaded from the quantized folder alone
    /// bit-identical, read as float32 dequantized; a missing scale is refused by name. Up_proj reads 80 inputs: int8 and q4
    /// keep 3 blocks of 32 per row (16 bytes each for q4), q4k one super-block (140 bytes, scales [rows, 1, 2]).
    /// </summary>
    [Theory]
    [InlineData(WeightPrecision.Int8, "wren_q8_0", "I8", new long[] { 80, 3 })]
    [InlineData(WeightPrecision.Q4, "wren_q4_0", "U8", new long[] { 48, 3 })]
    [InlineData(WeightPrecision.Q4K, "wren_q4_k", "U8", new long[] { 140, 1, 2 })]
    public void Quantized_folder_saves_and_loads_without_the_fp32_file(WeightPrecision precision, string method, string dtype,
                                                                        long[] widths)
    {
        string dir = TempDir(), quantized = Path.Combine(dir, precision.Name());
        using var reference = RandomModel(AwkwardConfig, seed: 3);
        reference.SavePretrained(Path.Combine(dir, "fp32"));
        using var fromFp32 = HybridForCausalLM.FromPretrained(Path.Combine(dir, "fp32"), precision);
        fromFp32.SavePretrained(quantized);
        Assert.Contains($"\"quant_method\": \"{method}\"", File.ReadAllText(Path.Combine(quantized, "config.json")));
        using (var file = SafeTensorsFile.Open(Path.Combine(quantized, CheckpointFiles.SingleFile)))
        {
            Assert.Equal(dtype, file.Tensors["model.layers.1.ffn.up_proj.weight"].DType);
            Assert.Equal([AwkwardConfig.FfnSize, widths[0]], file.Tensors["model.layers.1.ffn.up_proj.weight"].Shape);
            Assert.Equal([AwkwardConfig.FfnSize, .. widths[1..]], file.Tensors["model.layers.1.ffn.up_proj.weight_scale"].Shape);
            Assert.Equal("F32", file.Tensors["model.layers.0.input_layernorm.weight"].DType);
        }
        using var reloaded = HybridForCausalLM.FromPretrained(quantized, precision);
        var saved = fromFp32.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in reloaded.named_parameters()) Assert.True(Same(p, saved[name]), name);
        using var widened = HybridForCausalLM.FromPretrained(quantized);   // an int8 folder read as float32: dequantized
        using var expected = Widened(fromFp32);
        var expectedParameters = expected.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in widened.named_parameters()) Assert.True(Same(p, expectedParameters[name]), name);

        var tensors = SafeTensorsFile.Open(Path.Combine(quantized, CheckpointFiles.SingleFile));
        var kept = tensors.Tensors.Keys.Where(n => n != "model.layers.1.ffn.up_proj.weight_scale")
            .Select(n => (n, tensors.Read(n))).ToList();
        tensors.Dispose();
        SafeTensorsFile.Write(Path.Combine(quantized, CheckpointFiles.SingleFile), kept);
        var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(quantized, precision));
        Assert.Contains("missing 1 tensor(s): model.layers.1.ffn.up_proj.weight_scale", error.Message);
    }

    [Theory]
    [InlineData(WeightPrecision.Int8, "F32", true)]    // same bytes, rows and blocks swapped
    [InlineData(WeightPrecision.Int8, "F16", false)]   // half-precision scales of the right shape
    [InlineData(WeightPrecision.Q4, "F32", true)]
    [InlineData(WeightPrecision.Q4, "F16", false)]
    [InlineData(WeightPrecision.Q4K, "F32", true)]     // [rows, 1, 2] read as [2, 1, rows]
    [InlineData(WeightPrecision.Q4K, "F16", false)]
    public void Damaged_scales_are_refused_by_name_in_every_target_precision(WeightPrecision stored, string dtype, bool transposed)
    {
        string dir = TempDir(), quantized = Path.Combine(dir, stored.Name());
        using (var reference = RandomModel(AwkwardConfig, seed: 5))
        using (var packed = WeightPacking.Pack(reference, stored))
            packed.SavePretrained(quantized);
        const string scale = "model.layers.1.ffn.up_proj.weight_scale";
        string file = Path.Combine(quantized, CheckpointFiles.SingleFile);
        var tensors = SafeTensorsFile.Open(file);
        var damaged = tensors.Tensors.Keys.Select(n =>
        {
            var t = tensors.Read(n);
            if (n != scale) return (n, t);
            return (n, transposed ? t.reshape(t.shape.Reverse().ToArray()) : t.to(ScalarType.Float16));
        }).ToList();
        tensors.Dispose();
        SafeTensorsFile.Write(file, damaged);
        foreach (var precision in Enum.GetValues<WeightPrecision>())
        {
            var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(quantized, precision));
            Assert.Contains($"is {dtype}", error.Message);
            Assert.Contains($"tensor '{scale}'", error.Message);   // named, whichever check sees it first
        }
    }

    [Theory]
    [InlineData("\"quant_method\": \"gptq\"", "quant_method is gptq")]
    [InlineData("\"quant_method\": \"wren_q8_0\", \"bits\": 4", "bits is 4")]
    [InlineData("\"quant_method\": \"wren_q8_0\", \"group_size\": 64", "group_size is 64")]
    [InlineData("\"quant_method\": \"wren_q8_0\", \"desc_act\": false", "has 'desc_act'")]
    [InlineData("\"quant_method\": \"wren_q4_0\", \"group_size\": 64", "group_size is 64")]
    [InlineData("\"quant_method\": \"wren_q4_k\", \"super_group_size\": 128", "super_group_size is 128")]
    public void A_quantization_config_other_than_wrens_int8_layout_is_refused(string settings, string message)
    {
        string dir = TempDir(), quantized = Path.Combine(dir, "int8");
        using (var reference = RandomModel(AwkwardConfig, seed: 6))
        using (var packed = WeightPacking.Pack(reference, WeightPrecision.Int8))
            packed.SavePretrained(quantized);
        string config = Path.Combine(quantized, "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["quantization_config"] = System.Text.Json.Nodes.JsonNode.Parse("{" + settings + "}");
        File.WriteAllText(config, json.ToJsonString());
        var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(quantized, WeightPrecision.Float32));
        Assert.Contains(message, error.Message);
    }

    [Theory]
    [InlineData(WeightPrecision.Int8)]
    [InlineData(WeightPrecision.Q4)]
    [InlineData(WeightPrecision.Q4K)]
    public void Convert_writes_the_quantized_folder_with_the_other_files(WeightPrecision precision)
    {
        string dir = TempDir(), source = Path.Combine(dir, "fp32"), target = Path.Combine(dir, precision.Name());
        using var reference = RandomModel(AwkwardConfig, seed: 2);
        reference.SavePretrained(source);
        File.WriteAllText(Path.Combine(source, "tokenizer.json"), "{}");
        HybridForCausalLM.ConvertPretrained(source, target, precision);
        Assert.Equal("{}", File.ReadAllText(Path.Combine(target, "tokenizer.json")));
        using var converted = HybridForCausalLM.FromPretrained(target, precision);
        using var packed = WeightPacking.Pack(reference, precision);
        var expected = packed.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in converted.named_parameters()) Assert.True(Same(p, expected[name]), name);
        Assert.Throws<WrenException>(() => HybridForCausalLM.ConvertPretrained(source, source, precision));
    }

    /// <summary>A 4-bit folder whose config.json lost its quantization_config cannot say which layout its U8 bytes are in.</summary>
    [Fact]
    public void Packed_bytes_without_a_four_bit_quantization_config_are_refused_by_name()
    {
        string dir = TempDir(), quantized = Path.Combine(dir, "q4");
        using (var reference = RandomModel(AwkwardConfig, seed: 8))
        using (var packed = WeightPacking.Pack(reference, WeightPrecision.Q4))
            packed.SavePretrained(quantized);
        string config = Path.Combine(quantized, "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json.Remove("quantization_config");
        File.WriteAllText(config, json.ToJsonString());
        var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(quantized, WeightPrecision.Q4));
        Assert.Contains("is U8 (packed 4-bit)", error.Message);
        Assert.Contains("tensor 'model.", error.Message);
    }

    /// <summary>An int8 folder loads as q4 or q4k (dequantized, then quantized by the 4-bit rule).</summary>
    [Fact]
    public void Int8_folder_requantizes_to_four_bits()
    {
        string dir = TempDir(), quantized = Path.Combine(dir, "int8");
        using var reference = RandomModel(AwkwardConfig, seed: 9);
        using var int8 = WeightPacking.Pack(reference, WeightPrecision.Int8);
        int8.SavePretrained(quantized);
        using var widened = Widened(int8);
        foreach (var precision in new[] { WeightPrecision.Q4, WeightPrecision.Q4K })
        {
            using var loaded = HybridForCausalLM.FromPretrained(quantized, precision);
            using var expected = WeightPacking.Pack(widened, precision);
            var parameters = expected.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in loaded.named_parameters()) Assert.True(Same(p, parameters[name]), $"{precision} {name}");
        }
    }

    [Fact]
    public void Bf16_load_rounds_each_matrix_and_keeps_norms_fp32()
    {
        string dir = TempDir();
        using var reference = RandomModel(AwkwardConfig, seed: 4);
        reference.SavePretrained(dir);
        using var bf16 = HybridForCausalLM.FromPretrained(dir, WeightPrecision.BFloat16);
        var source = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in bf16.named_parameters())
        {
            bool matrix = name.EndsWith("_proj.weight") || name == "model.embed_tokens.weight";
            Assert.Equal(matrix ? ScalarType.BFloat16 : ScalarType.Float32, p.dtype);
            Assert.True(Same(p, matrix ? source[name].to(ScalarType.BFloat16) : source[name]), name);
        }
    }
}
