using TorchSharp;
using Wren.Models;
using Wren.Modules;
using Wren.Operators;
using Wren.Search;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Models;

/// <summary>
/// Adding an operator is one file plus one registry line: a toy operator defined here (its module and its spec) and
/// registered once is seen by config validation, the cache footprint, initialization, the latency table and the
/// search space without any other change.
/// </summary>
public class OperatorRegistryTests
{
    /// <summary>A running-sum mixer: <c>y_t = proj(Σ_{s≤t} x_s)</c>; its state is the sum so far, [B, H] float32.</summary>
    sealed class RunningSum : Mixer
    {
        readonly Linear proj;

        public RunningSum(HybridConfig config, Placement placement) : base(nameof(RunningSum))
        {
            proj = new Linear(config.HiddenSize, config.HiddenSize, placement);
            RegisterComponents();
        }

        public override IMixerState NewState(CacheShape shape, Device device) =>
            new RecurrentState([], zeros([shape.Batch, proj.InFeatures], ScalarType.Float32, device));

        public override Tensor forward(MixerInput input)
        {
            using var scope = NewDisposeScope();
            var state = (RecurrentState?)input.State;
            var sums = input.Hidden.to(ScalarType.Float32).cumsum(1);                  // [B, T, H]
            if (state is not null)
            {
                sums = sums + state.Recurrent.unsqueeze(1);
                state.Recurrent.copy_(sums.select(1, -1));
            }
            return proj.forward(sums.to(input.Hidden.dtype)).MoveToOuterDisposeScope();
        }
    }

    static readonly OperatorSpec Toy = new()
    {
        Name = "toy",
        ModuleName = "running_sum",
        Description = "running sum (a test's toy operator)",
        Create = (config, _, placement) => new RunningSum(config, placement),
        Validate = (config, fail) => { if (config.HiddenSize % 2 != 0) fail("the toy operator needs an even hidden_size"); },
        StateBytes = (config, _, _, _) => 4L * config.HiddenSize,
        Initialize = p => p.Name == "proj.weight" ? full_like(p.Parameter, 0.25) : null,
        SearchNames = [new("toy")],
    };

    static OperatorRegistryTests() => OperatorRegistry.Register(Toy);

    [Fact]
    public void A_registered_operator_is_validated_sized_initialized_priced_and_searched()
    {
        // Config validation: its own rule runs, and its name is a known layer type.
        var config = Config("toy", "f", "m2", "toy") with { NumMemoryTokens = 3 };
        config.Validate();
        var odd = Config("toy") with { HiddenSize = 63, NumAttentionHeads = 3 };
        Assert.Contains("the toy operator needs an even hidden_size", Assert.Throws<WrenException>(() => odd.Validate()).Message);

        // Footprint: the spec's bytes, and exactly what its states allocate.
        using var model = new HybridForCausalLM(config);
        Initialization.Apply(model, seed: 1);
        var footprint = ModelFootprint.Of(config);
        using (var cache = model.NewCache(batch: 2, maxTokens: 10))
            Assert.Equal(footprint.CacheBytes(2, 10), cache.Bytes);
        long mamba = Mamba2.Spec.StateBytes(config, 2, 13, 4);
        Assert.Equal(2 * (2 * 4L * 64 + mamba), footprint.CacheBytes(2, 10));
        Assert.Contains(footprint.PerLayerType, row => row.LayerType == "toy" && row.Layers == 2 && row.Parameters == 2 * (64 * 64 + 64));

        // Initialization: its rule for its parameter; the defaults elsewhere.
        var weights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.True(weights["model.layers.0.running_sum.proj.weight"].eq(0.25).all().item<bool>());
        Assert.True(weights["model.layers.0.input_layernorm.weight"].eq(1).all().item<bool>());

        // Latency table: priced under its own key.
        Assert.Equal("toy", OperatorRegistry.Of(config, 0).LatencyKey(config, 0));

        // Search space: a mixer name the space accepts, mapped to its layer type.
        var space = SearchSpace.Load("quick") with { Mixers = ["toy", "m2"], Seeds = [] };
        space.Validate();
        Assert.Contains("toy", SearchSpace.KnownMixers);
        Assert.Contains("toy", space.LatencyKeys());
        var architecture = Architecture.Parse("toy+m2 1:1 ffn1 x1 | toy 0:1 ffn0 x2 | m2 0:1 ffn0 x1", space);
        Assert.Equal(["toy", "f", "m2", "f", "toy", "toy", "m2"], space.Config(architecture, 128).LayerTypes);
    }

    [Fact]
    public void A_taken_name_cannot_be_registered_again()
    {
        Assert.Contains("already registered", Assert.Throws<WrenException>(() => OperatorRegistry.Register(Toy with { })).Message);
        Assert.Contains("already registered",
                        Assert.Throws<WrenException>(() => OperatorRegistry.Register(Mamba2.Spec with { Name = "m" })).Message);
    }

    [Fact]
    public void Sliding_window_attention_is_priced_apart_from_full_attention()
    {
        var config = Config("a", "a", "m2") with { SlidingWindow = 8, GlobalAttnIdx = [1] };
        config.Validate();
        Assert.Equal(["a:w8", "a", "m2"], Enumerable.Range(0, 3).Select(i => OperatorRegistry.Of(config, i).LatencyKey(config, i)));
        var space = SearchSpace.Load("quick") with { Mixers = ["swa", "a", "m2"], Seeds = [] };
        Assert.Equal(["a:w" + space.SlidingWindow, "a", "m2", "f"], space.LatencyKeys());
    }
}
