using System.Runtime.InteropServices;
using TorchSharp;

namespace Wren.Runtime;

/// <summary>
/// Process-wide settings that make libtorch fast on CPU. They must be applied before the first tensor
/// call, so every Wren entry point calls <see cref="Initialize"/> first.
/// </summary>
public static partial class WrenRuntime
{
    /// <summary>The most intra-op threads accepted: far above any CPU's core count, low enough that thread creation cannot hang.</summary>
    public const int MaxThreads = 1024;
    static readonly Lock Gate = new();
    static bool initialized;

    /// <summary>Applies the fast native defaults (once) and returns the requested device.</summary>
    /// <param name="device">"cpu" or "cuda" (optionally "cuda:N").</param>
    /// <param name="threads">Intra-op threads, 0..<see cref="MaxThreads"/>; 0 keeps libtorch's default (one per core).</param>
    /// <exception cref="WrenException">threads is negative or above <see cref="MaxThreads"/>.</exception>
    public static torch.Device Initialize(string device = "cpu", int threads = 0)
    {
        if (threads is < 0 or > MaxThreads)
            throw new WrenException($"--threads must be 0 (one per core) to {MaxThreads}, got {threads}");
        lock (Gate)
        {
            if (!initialized)
            {
                ConfigureNativeEnvironment();
                initialized = true;
            }
        }
        if (threads > 0) torch.set_num_threads(threads);
        return ResolveDevice(device);
    }

    public static torch.Device ResolveDevice(string device)
    {
        if (device == "cpu") return torch.CPU;
        if (device == "cuda" || device.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!torch.cuda.is_available())
                throw new WrenException($"--device {device} was requested, but this build has no usable CUDA backend " +
                    "(TorchSharp-cpu is installed; reference TorchSharp-cuda-linux on a machine with an NVIDIA GPU).");
            return new torch.Device(device);
        }
        throw new WrenException($"unknown device '{device}': use cpu, cuda or cuda:N");
    }

    /// <summary>
    /// libgomp reads OMP_WAIT_POLICY when it loads; spinning idle OpenMP workers fight the BLAS threads
    /// for the cores. Freed memory returned to the OS must be faulted back in on the next allocation,
    /// which is very slow on VMs: keep it in the process. .NET's Environment.SetEnvironmentVariable does
    /// not reach native getenv on Unix, hence setenv.
    /// </summary>
    static void ConfigureNativeEnvironment()
    {
        if (!OperatingSystem.IsLinux()) return;
        setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
        const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, int.MaxValue);
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    [LibraryImport("libc")]
    private static partial int mallopt(int param, int value);

    /// <summary>The settings a benchmark ran with, for the record.</summary>
    public static string Describe() =>
        $"threads={torch.get_num_threads()} " +
        $"OMP_WAIT_POLICY={Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "PASSIVE (set natively)"} " +
        $"cores={Environment.ProcessorCount} os={RuntimeInformation.OSDescription}";
}
