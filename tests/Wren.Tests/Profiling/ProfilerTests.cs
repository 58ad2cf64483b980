using System.Text.Json;
using TorchSharp;
using Wren.Models;
using Wren.Profiling;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Profiling;

public class ProfilerTests
{
    static DeviceProfile FakeDevice => new(DeviceIdentity.Current(CPU), new DeviceFacts(50e9, 100e9, 40e9, 20e9), DateTimeOffset.UnixEpoch);

    [Fact]
    public void Throughput_batch_search_respects_the_memory_budget()
    {
        var footprint = ModelFootprint.Of(Config("a", "f", "m2", "deltanet") with { NumMemoryTokens = 4 });
        foreach (long budget in new[] { 1L << 20, 8L << 20, 64L << 20, 1L << 30 })
        {
            int batch = LatencyProfiler.LargestBatch(footprint, 512, budget, 4096);
            if (batch > 0) Assert.True(LatencyProfiler.MemoryNeeded(footprint, batch, 512) <= budget);
            if (batch < 4096) Assert.True(LatencyProfiler.MemoryNeeded(footprint, batch + 1, 512) > budget);
        }
        Assert.Equal(0, LatencyProfiler.LargestBatch(footprint, 512, 1000, 64));        // nothing fits
        Assert.Equal(64, LatencyProfiler.LargestBatch(footprint, 512, 1L << 40, 64));   // capped
        Assert.Equal([1, 2, 4, 5], LatencyProfiler.BatchLadder(5));
    }

    [Fact]
    public void Measurement_statistics()
    {
        var m = Measurement.Of([3.0, 1.0, 2.0, 10.0]);
        Assert.Equal(2.5, m.Median);
        Assert.Equal(1.0, m.Min);
        Assert.Equal(10.0, m.Max);
        Assert.Equal(3.6, m.Spread, 6);
        Assert.False(m.Trusted);
        Assert.True(Measurement.Of([1.0, 1.05, 0.98]).Trusted);
    }

    [Fact]
    public void Profile_of_a_small_model_adds_up_and_round_trips_as_json()
    {
        var config = Config("a", "f", "m2", "deltanet", "rwkv7") with { NumMemoryTokens = 2 };
        using var model = RandomModel(config);
        var options = new ProfileOptions
        {
            PromptTokens = 16, DecodeTokens = 4, Repeats = 2, Contexts = [8, 32], ThroughputContext = 16, MemoryBudgetBytes = 64L << 20,
            MaxBatch = 8,
        };
        // The cached facts say 85 GB/s (another day); the probes between the two decode runs read 40 and 50 GB/s.
        var device = FakeDevice with { Facts = FakeDevice.Facts with { CopyBytesPerSecond = 85e9 } };
        var probes = new Queue<double>([40e9, 50e9]);
        var profile = LatencyProfiler.Profile(model, "small", options, device, null, probes.Dequeue);
        Assert.Empty(probes);                                                                     // one probe per decode run
        Assert.Equal(2, profile.LatencyByContext.Count);
        // attention grows
        Assert.True(profile.LatencyByContext[1].CacheBytesPerSequence > profile.LatencyByContext[0].CacheBytesPerSequence);
        Assert.Equal(profile.LargestBatch, profile.Throughput[^1].Batch);
        Assert.All(profile.Throughput, t => Assert.True(t.MemoryBytes <= options.MemoryBudgetBytes));
        Assert.Equal(["a", "f", "m2", "deltanet", "rwkv7"], profile.Breakdown.Select(b => b.LayerType));
        // Shares are parts of a step: each positive, together never more than all of it (how much more than the
        // layers a step costs is timing, which a test must not assert).
        Assert.All(profile.Breakdown, b => Assert.True(b.Share > 0));
        Assert.InRange(profile.Breakdown.Sum(b => b.Share), 0.0, 1.0 + 1e-9);
        Assert.Equal(ModelFootprint.Of(config).WeightBytes / 50e9 * 1e3, profile.RooflineMs, 9);
        Assert.Equal(50e9, profile.CopyBytesPerSecond);
        Assert.Equal(profile.DecodeSeconds.Min / options.DecodeTokens * 1e3 / profile.RooflineMs, profile.RooflineRatio, 12);
        var json = JsonSerializer.Serialize(profile);
        var back = JsonSerializer.Deserialize<ModelProfile>(json)!;
        Assert.Equal(json, JsonSerializer.Serialize(back));
    }

    /// <summary>
    /// A synthetic machine whose memory slows from 60 to 20 GB/s partway (another process starts streaming): a decode run
    /// reads 1 GB at the bandwidth of the moment plus 5 ms of fixed work. Probes and runs alternate and the best of each is
    /// taken, both from the fast period, so the ratio is the machine's 1.3 (21.7 ms ÷ 16.7 ms); a bandwidth cached on a
    /// day the probe read 20 GB/s would put the same run at 0.43 of a roofline it cannot beat.
    /// </summary>
    [Fact]
    public void Roofline_uses_the_bandwidth_measured_alternately_with_the_runs()
    {
        double now = 0;                                                                           // the synthetic clock, seconds
        double Bandwidth() => now < 0.08 ? 60e9 : 20e9;
        var calls = new List<string>();
        double Probe() { calls.Add("probe"); now += 0.01; return Bandwidth(); }
        double Run() { calls.Add("run"); double seconds = 1e9 / Bandwidth() + 0.005; now += seconds; return seconds; }

        var runs = InterleavedBandwidth.Measure(Run, 6, Probe);

        Assert.Equal(Enumerable.Range(0, 6).SelectMany(_ => new[] { "probe", "run" }), calls);
        Assert.Equal(6, runs.RunSeconds.Count);
        Assert.Equal(60e9, runs.CopyBytesPerSecond);
        Assert.Equal(1e9 / 60e9 + 0.005, runs.BestSeconds, 12);
        Assert.Equal(1e9 / 60e9, runs.Roofline(1_000_000_000), 12);
        Assert.Equal(1.3, runs.BestSeconds / runs.Roofline(1_000_000_000), 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => InterleavedBandwidth.Measure(Run, 0, Probe));
    }

    [Fact]
    public void Device_profiles_are_cached_per_device_and_never_reused_for_another()
    {
        string path = Path.Combine(TempDir(), "device.json");
        var device = FakeDevice;
        device.Save(path);
        Assert.Equal(device, DeviceProfile.Load(path));
        int measured = 0;
        var fresh = new DeviceFacts(1e9, 2e9, 3e9, 4e9);
        DeviceFacts Measure() { measured++; return fresh; }
        Assert.Equal(device.Facts, DeviceProfile.ForCurrent(CPU, path, false, Measure).Facts);   // same identity: cached facts used
        Assert.Equal(0, measured);
        var foreign = device with { Identity = device.Identity with { Processor = "some other CPU" } };
        foreign.Save(path);
        Assert.NotEqual(foreign.Identity.Id, device.Identity.Id);
        var here = DeviceProfile.ForCurrent(CPU, path, false, Measure);                          // another device's file: measured anew
        Assert.Equal(1, measured);
        Assert.Equal(fresh, here.Facts);
        Assert.Equal(device.Identity, here.Identity);
        Assert.Equal(here, DeviceProfile.Load(path));                                            // and the foreign profile replaced
        File.WriteAllText(path, "{ nope");
        Assert.Throws<WrenException>(() => DeviceProfile.Load(path));
    }
}
