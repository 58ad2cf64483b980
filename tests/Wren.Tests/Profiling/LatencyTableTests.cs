using TorchSharp;
using Wren.Models;
using Wren.Profiling;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Profiling;

public class LatencyTableTests
{
    static readonly DeviceIdentity Here = DeviceIdentity.Current(torch.CPU);

    /// <summary>
    /// A hand-made table: a has 10 µs at 100 positions and 30 µs at 300; m2 5 µs; f 2 µs; overhead 7 µs (a reference step of
    /// 1 s, so reference units are seconds).
    /// </summary>
    static LatencyTable Synthetic()
    {
        var template = Config("a", "m2", "f") with { NumMemoryTokens = 0 };
        return new LatencyTable(Here, template, new ReferenceStep(["a", "m2", "f"], 64, 100, StepSeconds: 1.0),
        [
            new LayerCost("a", 64, 1, 100, 10e-6), new LayerCost("a", 64, 1, 300, 30e-6),
            new LayerCost("m2", 64, 1, 100, 5e-6), new LayerCost("f", 64, 1, 100, 2e-6),
        ],
        [new StepOverhead(64, 1, 7e-6)], [], [], 1, DateTimeOffset.UnixEpoch);
    }

    [Fact]
    public void Prediction_sums_entries_and_overhead_and_interpolates_attention_in_context()
    {
        var table = Synthetic();
        var config = table.Template.WithShape(["a", "m2", "m2", "f", "a"], 64);
        Assert.Equal(7 + 10 + 5 + 5 + 2 + 10, table.PredictDecodeStep(config, 1, 100) * 1e6, 6);    // at a measured context
        Assert.Equal(7 + 20 + 5 + 5 + 2 + 20, table.PredictDecodeStep(config, 1, 200) * 1e6, 6);    // halfway: linear
        Assert.Equal(7 + 40 + 5 + 5 + 2 + 40, table.PredictDecodeStep(config, 1, 400) * 1e6, 6);    // beyond: the last slope
        Assert.Equal(7 + 10 + 5 + 5 + 2 + 10, table.PredictDecodeStep(config, 1, 20) * 1e6, 6);     // below: clamped
        Assert.Equal(8 * (7 + 20 + 5 + 5 + 2 + 20) * 1e-6, table.PredictDecode(config, 1, 196, 8), 9);   // 8 tokens after 196: midpoint 200
    }

    [Fact]
    public void Calibration_scales_the_layer_sum_only()
    {
        var table = Synthetic() with { Calibrations = [new Calibration(64, 1, 1.5, 8)] };
        var config = table.Template.WithShape(["m2", "f"], 64);
        Assert.Equal(7 + 1.5 * (5 + 2), table.PredictDecodeStep(config, 1, 100) * 1e6, 6);
    }

    [Fact]
    public void Meta_tokens_count_as_context()
    {
        var table = Synthetic();
        var config = table.Template.WithShape(["a"], 64) with { NumMemoryTokens = 100 };
        Assert.Equal(7 + 20, table.PredictDecodeStep(config, 1, 100) * 1e6, 6);
    }

    [Fact]
    public void Unknown_width_batch_or_operator_is_a_clear_error()
    {
        var table = Synthetic();
        string Error(string[] layers, int width, int batch) =>
            Assert.Throws<WrenException>(() => table.PredictDecodeStep(table.Template.WithShape(layers, width), batch, 10)).Message;
        Assert.Contains("no entry for width 128", Error(["f"], 128, 1));
        Assert.Contains("at batch 4", Error(["f"], 64, 4));
        Assert.Contains("no 'deltanet' entry", Error(["deltanet"], 64, 1));
    }

    [Fact]
    public void Tables_round_trip_and_are_never_used_on_another_device()
    {
        string path = Path.Combine(TempDir(), "table.json");
        var table = Synthetic();
        table.Save(path);
        var loaded = LatencyTable.Load(path);
        var config = table.Template.WithShape(["a", "f"], 64);
        Assert.Equal(table.PredictDecodeStep(config, 1, 250), loaded.PredictDecodeStep(config, 1, 250));
        loaded.EnsureDevice(Here);
        var elsewhere = Here with { Processor = "another CPU", Threads = Here.Threads + 2 };
        Assert.Contains("Build a table here", Assert.Throws<WrenException>(() => loaded.EnsureDevice(elsewhere)).Message);
        Assert.Contains("not found", Assert.Throws<WrenException>(() => LatencyTable.Load(path + ".missing")).Message);
        File.WriteAllText(path, "[1, 2");
        Assert.Contains("not a latency table", Assert.Throws<WrenException>(() => LatencyTable.Load(path)).Message);
        File.WriteAllText(path, HybridConfig.Load("flash-tiny").ToJson());   // valid JSON, another kind of file
        Assert.Contains("not a latency table", Assert.Throws<WrenException>(() => LatencyTable.Load(path)).Message);
    }

    /// <summary>Real models (random weights) of every registered operator, Mamba-1, GLA, RWKV-7, mLSTM and Hymba included: probed,
    /// fitted and checked without error (no timing is asserted; the cost model is tested on a synthetic machine).</summary>
    [Fact]
    public void Every_registered_operator_is_measured_on_real_models()
    {
        var names = OperatorRegistry.All.Select(s => s.Name).ToList();
        var options = new InterleaveOptions { Passes = 2, DecodeTokens = 1 };
        var table = LatencyTable.Build(Config("a"), names, [64], [1], [8, 24], Here, options, fitArchitectures: names.Count + 2);
        Assert.All(names, n => Assert.Contains(table.Layers, l => l.Operator == n && l.DecodeStep > 0));
        Assert.Equal(names.Order(), table.Fits.Single().PerLayer.Keys.Order());
        var check = table.Check(4, 8, seed: 3, options);
        Assert.Equal(Enum.GetValues<StackFamily>(), check.Checks.Select(c => c.Family).Order());
    }

    [Fact]
    public void Shapes_keep_head_widths()
    {
        var template = HybridConfig.Load("flash-300m");
        var wide = template.WithShape(["a", "m2", "deltanet", "f"], 2048);
        Assert.Equal(template.AttnQkHeadDim, wide.AttnQkHeadDim);
        Assert.Equal(template.NumAttentionHeads / template.KvHeads, wide.NumAttentionHeads / wide.KvHeads);
        Assert.Equal(template.Mamba2HeadDim, wide.Mamba2HeadDim);
        Assert.Equal(8192, wide.FfnSize);
        Assert.Throws<WrenException>(() => template.WithShape(["a"], 1000));   // not a multiple of the head width
    }
}
