using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TorchSharp;
using Wren.Checkpoints;
using Wren.Common;

namespace Wren.Profiling;

/// <summary>What identifies a device for latency purposes: measurements from one never stand for another.</summary>
public sealed record DeviceIdentity(string Kind, string Processor, int Cores, int Threads, string Runtime)
{
    /// <summary>A short stable id (hash of every field).</summary>
    public string Id =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{Kind}|{Processor}|{Cores}|{Threads}|{Runtime}")))[..12]
            .ToLowerInvariant();

    public static DeviceIdentity Current(torch.Device device)
    {
        string processor = device.type == DeviceType.CUDA ? $"cuda:{device.index}" : CpuModel();
        return new DeviceIdentity(device.type.ToString().ToLowerInvariant(), processor, Environment.ProcessorCount,
                                  torch.get_num_threads(), $"libtorch/TorchSharp {typeof(torch).Assembly.GetName().Version}");
    }

    static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line is not null) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
    }
}

/// <summary>A device's identity and measured facts, cached as a JSON file so they are measured once per device.</summary>
public sealed record DeviceProfile(DeviceIdentity Identity, DeviceFacts Facts, DateTimeOffset MeasuredAt)
{
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Default cache folder: $WREN_HOME or ~/.wren, then devices/&lt;id&gt;.json.</summary>
    public static string DefaultPath(DeviceIdentity identity) =>
        Path.Combine(Environment.GetEnvironmentVariable("WREN_HOME") is { Length: > 0 } home ? home
                         : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".wren"),
                     "devices", identity.Id + ".json");

    /// <summary>The cached profile of the current device, measuring (and caching) it if absent or if <paramref
    /// name="remeasure"/>.</summary>
    public static DeviceProfile ForCurrent(torch.Device device, string? path = null, bool remeasure = false) =>
        ForCurrent(device, path, remeasure, DeviceFacts.Measure);

    /// <summary><see cref="ForCurrent(torch.Device, string?, bool)"/> with the measurement given (tests count its calls).</summary>
    internal static DeviceProfile ForCurrent(torch.Device device, string? path, bool remeasure, Func<DeviceFacts> measure)
    {
        var identity = DeviceIdentity.Current(device);
        path ??= DefaultPath(identity);
        if (!remeasure && File.Exists(path))
        {
            var cached = Load(path);
            if (cached.Identity == identity) return cached;
        }
        var profile = new DeviceProfile(identity, measure(), DateTimeOffset.UtcNow);
        profile.Save(path);
        return profile;
    }

    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this, Json));
    }

    public static DeviceProfile Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<DeviceProfile>(File.ReadAllText(path), Json)
                   ?? throw new WrenException($"{path}: empty device profile");
        }
        catch (JsonException e) { throw new WrenException($"{path}: not a device profile ({e.Message})", e); }
    }
}
