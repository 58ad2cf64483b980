using TorchSharp;
using Wren.Models;
using Wren.Modules;
using Wren.Operators;
using Wren.Search;
using Wren.Training;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Operators;

/// <summary>
/// Mamba-1 (selective scan): the chunked and recurrent forms against a per-token loop written here from mamba_ssm's
/// <c>selective_scan_ref</c> equations, at sizes that are no multiple of the chunk or the vector width; split states;
/// gradients; the whole layer against the same equations from its named weights; mamba_ssm's initialization.
/// </summary>
public class Mamba1Tests
{
    static (Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor s0) Inputs(long b, long T, long E, long N, int seed)
    {
        var gen = new Generator((ulong)seed);
        var x = randn([b, T, E], generator: gen);
        var dt = nn.functional.softplus(randn([b, T, E], generator: gen) - 1.0);
        var A = -(rand([E, N], generator: gen) * 4 + 0.2);
        var B = randn([b, T, N], generator: gen);
        var C = randn([b, T, N], generator: gen);
        var D = randn([E], generator: gen);
        var s0 = randn([b, E, N], generator: gen);
        return (x, dt, A, B, C, D, s0);
    }

    /// <summary>
    /// The specification, element by element in float64: <c>h[d,n] ← exp(Δ_t[d]·A[d,n])·h[d,n] + Δ_t[d]·x_t[d]·B_t[n]</c>,
    /// <c>y_t[d] = Σ_n h[d,n]·C_t[n] + D[d]·x_t[d]</c>.
    /// </summary>
    static (double[,,] Y, double[,,] H) Loop(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor s0)
    {
        long batch = x.shape[0], T = x.shape[1], E = x.shape[2], N = A.shape[1];
        var xs = x.to(ScalarType.Float64).data<double>().ToArray();
        var dts = dt.to(ScalarType.Float64).data<double>().ToArray();
        var As = A.to(ScalarType.Float64).data<double>().ToArray();
        var Bs = B.to(ScalarType.Float64).data<double>().ToArray();
        var Cs = C.to(ScalarType.Float64).data<double>().ToArray();
        var Ds = D.to(ScalarType.Float64).data<double>().ToArray();
        var h = new double[batch, E, N];
        var hs = s0.to(ScalarType.Float64).data<double>().ToArray();
        for (long b = 0; b < batch; b++) for (long d = 0; d < E; d++) for (long n = 0; n < N; n++) h[b, d, n] = hs[(b * E + d) * N + n];
        var y = new double[batch, T, E];
        for (long b = 0; b < batch; b++)
            for (long t = 0; t < T; t++)
                for (long d = 0; d < E; d++)
                {
                    double step = dts[(b * T + t) * E + d], xv = xs[(b * T + t) * E + d], sum = 0;
                    for (long n = 0; n < N; n++)
                    {
                        h[b, d, n] = Math.Exp(step * As[d * N + n]) * h[b, d, n] + step * xv * Bs[(b * T + t) * N + n];
                        sum += h[b, d, n] * Cs[(b * T + t) * N + n];
                    }
                    y[b, t, d] = sum + Ds[d] * xv;
                }
        return (y, h);
    }

    static void AssertMatches(Tensor actual, Array expected, double rtol, string what)
    {
        var e = tensor(expected.Cast<double>().ToArray()).reshape(actual.shape).to(ScalarType.Float32);
        AssertClose(actual, e, rtol, what);
    }

    [Theory]
    [InlineData(45, 8, 37, 13)]
    [InlineData(45, 0, 37, 13)]
    [InlineData(70, 16, 20, 16)]
    [InlineData(3, 64, 9, 5)]
    [InlineData(1, 0, 9, 5)]
    public void Chunked_and_recurrent_equal_the_per_token_loop(int T, int chunk, int E, int N)
    {
        using var scope = NewDisposeScope();
        var (x, dt, A, B, C, D, s0) = Inputs(2, T, E, N, T + E);
        var (y, h) = Loop(x, dt, A, B, C, D, s0);
        var (yR, sR) = Mamba1.Recurrent(x, dt, A, B, C, D, s0);
        var (yC, sC) = Mamba1.Chunked(x, dt, A, B, C, D, s0, chunk);
        AssertMatches(yR, y, 1e-4, "recurrent output");
        AssertMatches(sR, h, 1e-4, "recurrent state");
        AssertMatches(yC, y, 1e-4, "chunked output");
        AssertMatches(sC, h, 1e-4, "chunked state");
    }

    /// <summary>The fused CPU prefill scan against the per-token loop, continuing a state, at N below, at and above the vector
    /// width and lengths 1…70.</summary>
    [Theory]
    [InlineData(45, 37, 13)]
    [InlineData(70, 20, 16)]
    [InlineData(3, 9, 5)]
    [InlineData(1, 9, 33)]
    public void The_fused_scan_equals_the_per_token_loop(int T, int E, int N)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (x, dt, A, B, C, D, s0) = Inputs(2, T, E, N, T + E + 1);
        var (y, h) = Loop(x, dt, A, B, C, D, s0);
        var state = s0.clone();
        var yF = Mamba1.FusedScan(x, dt, A, B, C, D, state);
        AssertMatches(yF, y, 1e-4, "fused output");
        AssertMatches(state, h, 1e-4, "fused state");
    }

    [Fact]
    public void State_split_equals_one_pass()
    {
        using var scope = NewDisposeScope();
        var (x, dt, A, B, C, D, s0) = Inputs(2, 70, 11, 6, 9);
        var (yFull, sFull) = Mamba1.Chunked(x, dt, A, B, C, D, s0, 16);
        long t1 = 33, t2 = 70 - t1;
        var (y1, s1) = Mamba1.Chunked(x.narrow(1, 0, t1), dt.narrow(1, 0, t1), A, B.narrow(1, 0, t1), C.narrow(1, 0, t1), D, s0, 16);
        var (y2, s2) = Mamba1.Chunked(x.narrow(1, t1, t2), dt.narrow(1, t1, t2), A, B.narrow(1, t1, t2), C.narrow(1, t1, t2), D, s1, 16);
        AssertClose(cat([y1, y2], 1), yFull, 1e-4, "split output");
        AssertClose(s2, sFull, 1e-4, "split state");
    }

    [Fact]
    public void Gradients_through_chunked_match_recurrent()
    {
        using var scope = NewDisposeScope();
        var (x, dt, A, B, C, D, s0) = Inputs(2, 21, 7, 5, 4);
        AssertGradientsAgree([x, dt, A, B, C, D, s0],
            l => Mamba1.Recurrent(l[0], l[1], l[2], l[3], l[4], l[5], l[6]),
            l => Mamba1.Chunked(l[0], l[1], l[2], l[3], l[4], l[5], l[6], 6),
            randn([2, 21, 7], generator: new Generator(8)));
    }

    /// <summary>Hidden 36: d_inner 72, d_state 13, dt_rank ⌈36/16⌉ = 3, conv kernel 4.</summary>
    static HybridConfig Layer => Config("mamba1") with { HiddenSize = 36, NumAttentionHeads = 4, MambaDState = 13, FfnExpandRatio = 4.0 };

    [Fact]
    public void The_layer_follows_mamba_simple_from_its_named_weights()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var model = RandomModel(Layer, seed: 3);
        var w = model.named_parameters().Where(p => p.name.StartsWith("model.layers.0.mamba.", StringComparison.Ordinal))
            .ToDictionary(p => p.name["model.layers.0.mamba.".Length..], p => p.parameter.to(ScalarType.Float64));
        Assert.Equal(["A_log", "D", "conv1d.bias", "conv1d.weight", "dt_proj.bias", "dt_proj.weight", "in_proj.weight", "out_proj.weight",
                      "x_proj.weight"], w.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new long[] { 72, 3 }, w["dt_proj.weight"].shape);
        Assert.Equal(new long[] { 3 + 2 * 13, 72 }, w["x_proj.weight"].shape);
        Assert.Equal(new long[] { 72, 13 }, w["A_log"].shape);
        var gen = new Generator(5);
        foreach (var name in new[] { "D", "conv1d.bias", "dt_proj.bias" })                 // D = 1 at init: make every vector tell
            w[name] = w[name] + randn(w[name].shape, ScalarType.Float64, generator: gen) * 0.3;
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.StartsWith("model.layers.0.mamba.", StringComparison.Ordinal)))
            p.copy_(w[name["model.layers.0.mamba.".Length..]]);
        var mixer = ((HybridDecoderLayer)model.Backbone.Layers[0]).Mixer!;
        long T = 11, K = 4;
        var u = randn([2, T, 36], generator: gen);
        var actual = mixer.forward(new MixerInput(u, arange(T).unsqueeze(0).expand(2, -1)));

        // mamba_simple.py, written out: xz = in_proj(u); x, z = xz.chunk(2); x = silu(conv1d(x)[..., :T]);
        // x_dbl = x_proj(x); dt, B, C = split(x_dbl, [dt_rank, N, N]); Δ = softplus(dt_proj.weight @ dt + dt_proj.bias).
        var xz = u.to(ScalarType.Float64).matmul(w["in_proj.weight"].t());
        var x = xz.narrow(-1, 0, 72);
        var z = xz.narrow(-1, 72, 72);
        var conv = zeros_like(x);
        for (long t = 0; t < T; t++)
            for (long k = 0; k < K; k++)
                if (t - (K - 1) + k >= 0) conv.select(1, t).add_(x.select(1, t - (K - 1) + k) * w["conv1d.weight"].select(2, k).squeeze(1));
        x = nn.functional.silu(conv + w["conv1d.bias"]);
        var dbc = x.matmul(w["x_proj.weight"].t());
        var delta = nn.functional.softplus(dbc.narrow(-1, 0, 3).matmul(w["dt_proj.weight"].t()) + w["dt_proj.bias"]);
        var (y, _) = Loop(x, delta, -w["A_log"].exp(), dbc.narrow(-1, 3, 13), dbc.narrow(-1, 16, 13), w["D"], zeros(2, 72, 13));
        var expected = (tensor(y.Cast<double>().ToArray()).reshape(2, T, 72) * nn.functional.silu(z)).matmul(w["out_proj.weight"].t());
        AssertClose(actual, expected.to(ScalarType.Float32), 1e-4, "layer vs mamba_simple");
    }

    [Fact]
    public void Initialization_is_mamba_ssm_s()
    {
        using var scope = NewDisposeScope();
        using var model = new HybridForCausalLM(Layer, new Placement(ScalarType.BFloat16, CPU));
        Initialization.Apply(model, 1);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        string at = "model.layers.0.mamba.";
        foreach (var name in new[] { "A_log", "D", "dt_proj.weight", "dt_proj.bias" }) Assert.Equal(ScalarType.Float32, p[at + name].dtype);
        // S4D-real: A = −(1, 2, …, N) in every channel.
        AssertClose(p[at + "A_log"].exp(), arange(1, 14, ScalarType.Float32).expand(72, 13), 1e-6, "A");
        Assert.True(p[at + "D"].eq(1).all().item<bool>());
        var step = nn.functional.softplus(p[at + "dt_proj.bias"]);
        Assert.True(step.min().item<float>() >= 1e-4 - 1e-7 && step.max().item<float>() <= 0.1 + 1e-6);
        var dtWeight = p[at + "dt_proj.weight"].abs();
        Assert.True(dtWeight.max().item<float>() <= 1 / Math.Sqrt(3) + 1e-6 && dtWeight.max().item<float>() > 0.4);
        // mamba_ssm's _no_weight_decay: A_log (a matrix here) and D.
        Assert.False(Trainer.Decays(at + "A_log", p[at + "A_log"]));
        Assert.False(Trainer.Decays(at + "D", p[at + "D"]));
        Assert.True(Trainer.Decays(at + "x_proj.weight", p[at + "x_proj.weight"]));
    }

    [Fact]
    public void The_dt_rank_defaults_to_mamba_ssm_s_auto_and_is_checked()
    {
        Assert.Equal(3, Layer.MambaTimestepRank);                                         // ⌈36 / 16⌉
        Assert.Equal(100, (Layer with { HiddenSize = 1600, MambaDtRank = 100 }).MambaTimestepRank);
        var parsed = HybridConfig.Parse(Layer.ToJson().Replace("\"mamba_d_state\"", "\"mamba_dt_rank\": 5, \"mamba_d_state\""));
        Assert.Equal(5, parsed.MambaTimestepRank);
        Assert.DoesNotContain("mamba_dt_rank", Layer.ToJson());
        Assert.Contains("mamba_dt_rank (0) must be positive",
                        Assert.Throws<WrenException>(() => (Layer with { MambaDtRank = 0 }).Validate()).Message);
        Assert.Contains("mamba_d_state and mamba_d_conv must be positive",
                        Assert.Throws<WrenException>(() => (Layer with { MambaDState = 0 }).Validate()).Message);
    }

    [Fact]
    public void It_is_searchable_priced_and_sized()
    {
        var space = SearchSpace.Load("quick") with { Mixers = ["mamba1", "a"], Seeds = [] };
        space.Validate();
        Assert.Contains("mamba1", SearchSpace.KnownMixers);
        Assert.Contains("mamba1", space.LatencyKeys());
        var architecture = Architecture.Parse("mamba1+a 1:1 ffn1 x1 | mamba1 0:1 ffn0 x1 | a 0:1 ffn0 x1", space);
        var searched = space.Config(architecture, 128);
        Assert.Equal(["mamba1", "f", "a", "f", "mamba1", "a"], searched.LayerTypes);
        Assert.Equal("mamba1", OperatorRegistry.Of(searched, 0).LatencyKey(searched, 0));
        // By hand, E = 72, N = 13, R = 3, K = 4, hidden 36: in_proj 2E·H, conv E·K + E, x_proj (R + 2N)·E, dt_proj E·R + E,
        // A_log E·N, D E, out_proj H·E, and the layer's input norm H.
        long E = 72, N = 13, R = 3, K = 4, H = 36;
        long expected = 2 * E * H + (E * K + E) + (R + 2 * N) * E + (E * R + E) + E * N + E + H * E + H;
        Assert.Contains(ModelFootprint.Of(Layer).PerLayerType, row => row.LayerType == "mamba1" && row.Parameters == expected);
    }

    [Fact]
    public void State_bytes_equal_what_the_state_allocates()
    {
        var config = Layer with { LayerTypes = ["mamba1", "f", "mamba1"] };
        using var model = RandomModel(config);
        using var cache = model.NewCache(3, 20);
        Assert.Equal(ModelFootprint.Of(config).CacheBytes(3, 20), cache.Bytes);
        Assert.Equal(3 * 2 * (72 * 3 * 4L + 72 * 13 * 4L), cache.Bytes);   // conv history [72, K−1] + SSM state [72, 13], fp32
    }
}
