using System.Runtime.Intrinsics.X86;

namespace Wren.Kernels;

/// <summary>The instruction set a matrix–vector kernel runs with, chosen at run time from what the CPU supports.</summary>
public enum KernelPath
{
    /// <summary>Plain scalar loops: any CPU.</summary>
    Scalar,
    /// <summary>256-bit AVX2 with FMA (e.g. Zen 3, Haswell and later).</summary>
    Avx2,
    /// <summary>512-bit AVX-512 F/BW (e.g. Zen 4/5, Skylake-SP and later).</summary>
    Avx512,
}

/// <summary>
/// Which <see cref="KernelPath"/> the kernels use: the widest the CPU supports (<c>IsSupported</c> checks), unless a test
/// forces a narrower one. bf16 and int8 weights are widened to fp32 in registers, so AVX512-BF16 and VNNI are not used:
/// both would round the activations to bf16 or int8, which weight-only quantization does not do, and the products
/// are bound by memory bandwidth, not by the conversion.
/// </summary>
public static class KernelPaths
{
    static KernelPath? forced;

    /// <summary>The widest path this CPU runs.</summary>
    public static KernelPath Best { get; } =
        Avx512F.IsSupported && Avx512BW.IsSupported ? KernelPath.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? KernelPath.Avx2
        : KernelPath.Scalar;

    /// <summary>The path the kernels take now (recorded by the benchmark).</summary>
    public static KernelPath Active => forced ?? Best;

    /// <summary>Every path this CPU can run, narrowest first.</summary>
    public static IReadOnlyList<KernelPath> Available => Enum.GetValues<KernelPath>().Where(p => p <= Best).ToArray();

    /// <summary>Runs the kernels on <paramref name="path"/> until the result is disposed (tests only; not thread-safe).</summary>
    internal static IDisposable Force(KernelPath path)
    {
        if (path > Best) throw new ArgumentException($"this CPU cannot run the {path} path (best: {Best})", nameof(path));
        var previous = forced;
        forced = path;
        return new Restore(() => forced = previous);
    }

    sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}
