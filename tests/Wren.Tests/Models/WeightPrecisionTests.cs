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
/// Models with bf16 and int8 weight matrices against fp32: the same maths on the stored weights, errors within the
/// rule's bound, checkpoints.
/// </summary>
[Collection(Kernels.KernelPathCollection.Name)]
public class WeightPrecisionTests
{
    /// <summary>Width 80: rows of 80 values end in a partial 16-value int8 block and are not a multiple of any vector width.</summary>
    static HybridConfig AwkwardConfig => Config("deltanet", "f", "m2", "f", "a", "f") with
    {
        HiddenSize = 80,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        Mamba2HeadDim = 20,
        NumMemoryTokens = 3,
        TieWordEmbeddings = true,
    };

    /// <summary>An fp32 model holding exactly the values <paramref name="packed"/> stores (bf16 widened, int8 dequantized).</summary>
    static HybridForCausalLM Widened(HybridForCausalLM packed)
    {
        var model = new HybridForCausalLM(packed.Config);
        var stored = packed.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                p.copy_(stored.TryGetValue(name + "_scale", out var scale)
                    ? MatVecInt8.Dequantize(stored[name], scale)
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
    /// integer sums (equal to the scalar path up to fp32 summation order).
    /// </summary>
    [Theory]
    [InlineData(WeightPrecision.BFloat16)]
    [InlineData(WeightPrecision.Int8)]
    public void Packed_model_computes_the_fp32_forward_of_its_stored_weights(WeightPrecision precision)
    {
        using var scope = NewDisposeScope();
        using var reference = RandomModel(AwkwardConfig, seed: 5);
        using var packed = WeightPacking.Pack(reference, precision);
        using var widened = Widened(packed);
        var tokens = RandomTokens(2, 12, AwkwardConfig.VocabSize, 6);
        Tensor expected = Scoring.Logits(widened, tokens), expectedDecode = Scoring.Logits(widened, tokens, prefill: 4);
        if (precision == WeightPrecision.Int8)
        {
            double bound = (2 * AwkwardConfig.NumLayers + 2) / 254.0;
            using (KernelPaths.Force(KernelPath.Scalar))
            {
                Tensor scalar = Scoring.Logits(packed, tokens), scalarDecode = Scoring.Logits(packed, tokens, prefill: 4);
                var cases = new[] { (scalar, expected, "forward"), (scalarDecode, expectedDecode, "decode") };
                foreach (var (actual, widenedLogits, what) in cases)
                {
                    double rms = (actual - widenedLogits).square().mean().sqrt().item<float>();
                    double scale = widenedLogits.square().mean().sqrt().item<float>();
                    Assert.True(rms <= bound * scale, $"int8 scalar {what}: RMS logit error {rms:E3} > {bound:E2} × {scale:F3}");
                }
                (expected, expectedDecode) = (scalar, scalarDecode);
            }
        }
        foreach (var path in KernelPaths.Available)
            using (KernelPaths.Force(path))
            {
                AssertClose(Scoring.Logits(packed, tokens), expected, 1e-4, $"{precision} {path} parallel forward");
                AssertClose(Scoring.Logits(packed, tokens, prefill: 4), expectedDecode, 1e-4, $"{precision} {path} decode");
            }
    }

    /// <summary>
    /// Each stored weight is off by at most ε of its scale (bf16: 2⁻⁹ relative; int8: d/2 = max|w|/254 of its block), so
    /// each matrix product on the residual path adds a relative error of order ε; to first order these add, so logits
    /// stay within (matrices on the path) · ε relative RMS: embedding, two products per layer, lm_head.
    /// </summary>
    [Theory]
    [InlineData(WeightPrecision.BFloat16, 1.0 / 512)]
    [InlineData(WeightPrecision.Int8, 1.0 / 254)]
    public void Logit_error_stays_within_the_quantization_bound(WeightPrecision precision, double epsilon)
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
        Assert.True(accuracy.GreedyAgreement >= 0.9, $"{precision}: greedy agreement {accuracy.GreedyAgreement:P0}");
        Assert.InRange(accuracy.PerplexityChange!.Value, -matrices * epsilon, matrices * epsilon);
        Assert.Equal(precision.Name(), accuracy.Precision);
    }

    [Fact]
    public void Int8_model_keeps_no_full_precision_matrix()
    {
        using var reference = RandomModel(AwkwardConfig);
        using var packed = WeightPacking.Pack(reference, WeightPrecision.Int8);
        var named = packed.named_parameters().ToList();
        foreach (var (name, p) in named.Where(p => p.name.EndsWith("_proj.weight") || p.name == "model.embed_tokens.weight"))
        {
            Assert.Equal(ScalarType.Int8, p.dtype);
            Assert.Contains(named, q => q.name == name + "_scale");
        }
        var footprint = ModelFootprint.Of(AwkwardConfig, ScalarType.Float32, WeightPrecision.Int8);
        Assert.Equal(ModelFootprint.Of(AwkwardConfig).Parameters, footprint.Parameters);
        Assert.Equal(named.Sum(p => p.parameter.NumberOfElements * p.parameter.ElementSize), footprint.WeightBytes);
    }

    [Fact]
    public void Int8_folder_saves_and_loads_without_the_fp32_file()
    {
        string dir = TempDir(), quantized = Path.Combine(dir, "int8");
        using var reference = RandomModel(AwkwardConfig, seed: 3);
        reference.SavePretrained(Path.Combine(dir, "fp32"));
        using var fromFp32 = HybridForCausalLM.FromPretrained(Path.Combine(dir, "fp32"), WeightPrecision.Int8);
        fromFp32.SavePretrained(quantized);
        Assert.Contains("\"quant_method\": \"wren_q8_0\"", File.ReadAllText(Path.Combine(quantized, "config.json")));
        using (var file = SafeTensorsFile.Open(Path.Combine(quantized, CheckpointFiles.SingleFile)))
        {
            Assert.Equal("I8", file.Tensors["model.layers.1.ffn.up_proj.weight"].DType);
            Assert.Equal([AwkwardConfig.FfnSize, 3L], file.Tensors["model.layers.1.ffn.up_proj.weight_scale"].Shape);
            Assert.Equal("F32", file.Tensors["model.layers.0.input_layernorm.weight"].DType);
        }
        using var reloaded = HybridForCausalLM.FromPretrained(quantized, WeightPrecision.Int8);
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
        var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(quantized, WeightPrecision.Int8));
        Assert.Contains("missing 1 tensor(s): model.layers.1.ffn.up_proj.weight_scale", error.Message);
    }

    [Theory]
    [InlineData("F32", true)]    // same bytes, rows and blocks swapped
    [InlineData("F16", false)]   // half-precision scales of the right shape
    public void Damaged_int8_scales_are_refused_by_name_in_every_target_precision(string dtype, bool transposed)
    {
        string dir = TempDir(), quantized = Path.Combine(dir, "int8");
        using (var reference = RandomModel(AwkwardConfig, seed: 5))
        using (var packed = WeightPacking.Pack(reference, WeightPrecision.Int8))
            packed.SavePretrained(quantized);
        const string scale = "model.layers.1.ffn.up_proj.weight_scale";
        string file = Path.Combine(quantized, CheckpointFiles.SingleFile);
        var tensors = SafeTensorsFile.Open(file);
        var damaged = tensors.Tensors.Keys.Select(n =>
        {
            var t = tensors.Read(n);
            if (n != scale) return (n, t);
            return (n, transposed ? t.reshape(t.shape[1], t.shape[0]) : t.to(ScalarType.Float16));
        }).ToList();
        tensors.Dispose();
        SafeTensorsFile.Write(file, damaged);
        foreach (var precision in new[] { WeightPrecision.Float32, WeightPrecision.BFloat16, WeightPrecision.Int8 })
        {
            var error = Assert.Throws<WrenException>(() => HybridForCausalLM.FromPretrained(quantized, precision));
            if (precision != WeightPrecision.Int8) Assert.Contains($"is {dtype}", error.Message);
            Assert.Contains($"tensor '{scale}'", error.Message);   // named, whichever check sees it first
        }
    }

    [Theory]
    [InlineData("\"quant_method\": \"gptq\"", "quant_method is gptq")]
    [InlineData("\"quant_method\": \"wren_q8_0\", \"bits\": 4", "bits is 4")]
    [InlineData("\"quant_method\": \"wren_q8_0\", \"group_size\": 64", "group_size is 64")]
    [InlineData("\"quant_method\": \"wren_q8_0\", \"desc_act\": false", "has 'desc_act'")]
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

    [Fact]
    public void Convert_writes_the_quantized_folder_with_the_other_files()
    {
        string dir = TempDir(), source = Path.Combine(dir, "fp32"), target = Path.Combine(dir, "int8");
        using var reference = RandomModel(AwkwardConfig, seed: 2);
        reference.SavePretrained(source);
        File.WriteAllText(Path.Combine(source, "tokenizer.json"), "{}");
        HybridForCausalLM.ConvertPretrained(source, target, WeightPrecision.Int8);
        Assert.Equal("{}", File.ReadAllText(Path.Combine(target, "tokenizer.json")));
        using var converted = HybridForCausalLM.FromPretrained(target, WeightPrecision.Int8);
        using var packed = WeightPacking.Pack(reference, WeightPrecision.Int8);
        var expected = packed.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in converted.named_parameters()) Assert.True(Same(p, expected[name]), name);
        Assert.Throws<WrenException>(() => HybridForCausalLM.ConvertPretrained(source, source, WeightPrecision.Int8));
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
