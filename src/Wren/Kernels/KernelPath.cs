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
/// forces a narrower one. bf16 weights are widened to fp32 in registers (AVX512-BF16 would round the activations to
/// bf16). The int8 kernel quantizes the activations to int8 per block of 32, as llama.cpp's Q8_0 dot does, and
/// multiplies bytes: on the AVX2 path with AVX-VNNI's <c>vpdpbusd</c> when the CPU has it (<see cref="Vnni"/>), else
/// with <c>vpmaddubsw</c> + <c>vpmaddwd</c>; the AVX-512 path uses the 512-bit <c>vpmaddubsw</c> + <c>vpmaddwd</c>
/// because .NET 10 exposes no 512-bit <c>vpdpbusd</c> (AVX512-VNNI).
/// </summary>
public static class KernelPaths
{
    static KernelPath? forced;
    static bool? forcedVnni;

    /// <summary>The widest path this CPU runs.</summary>
    public static KernelPath Best { get; } =
        Avx512F.IsSupported && Avx512BW.IsSupported ? KernelPath.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? KernelPath.Avx2
        : KernelPath.Scalar;

    /// <summary>The path the kernels take now (recorded by the benchmark).</summary>
    public static KernelPath Active => forced ?? Best;

    /// <summary>True when the CPU has AVX-VNNI (256-bit <c>vpdpbusd</c>).</summary>
    public static bool VnniSupported { get; } = AvxVnni.IsSupported;

    /// <summary>True when the AVX2 path's int8 products use AVX-VNNI now (the default where the CPU has it).</summary>
    public static bool Vnni => forcedVnni ?? VnniSupported;

    /// <summary>Every path this CPU can run, narrowest first.</summary>
    public static IReadOnlyList<KernelPath> Available => Enum.GetValues<KernelPath>().Where(p => p <= Best).ToArray();

    /// <summary>What the int8 kernel runs now, e.g. <c>Avx2+VNNI</c> (recorded by the benchmarks).</summary>
    public static string Int8Description => Active == KernelPath.Avx2 && Vnni ? "Avx2+VNNI" : Active.ToString();

    /// <summary>
    /// Runs the kernels on <paramref name="path"/>, and the int8 products with or without AVX-VNNI when <paramref
    /// name="vnni"/> is given, until the result is disposed (tests and benchmarks only; not thread-safe).
    /// </summary>
    internal static IDisposable Force(KernelPath path, bool? vnni = null)
    {
        if (path > Best) throw new ArgumentException($"this CPU cannot run the {path} path (best: {Best})", nameof(path));
        if (vnni == true && !VnniSupported) throw new ArgumentException("this CPU has no AVX-VNNI", nameof(vnni));
        var (previous, previousVnni) = (forced, forcedVnni);
        (forced, forcedVnni) = (path, vnni ?? forcedVnni);
        return new Restore(() => (forced, forcedVnni) = (previous, previousVnni));
    }

    sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}
