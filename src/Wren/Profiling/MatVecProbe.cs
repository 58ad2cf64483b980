using System.Diagnostics;
using Wren.Kernels;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Profiling;

/// <summary>
/// Batch-1 matrix–vector products on a random weight larger than any cache, rotating over several copies so each product
/// reads its weight from memory, one timed product per call (so a benchmark can alternate it with other probes). Wren's
/// kernel in a given precision (and, for comparison, libtorch's fp32 <c>mv</c>).
/// </summary>
public sealed class MatVecProbe : IDisposable
{
    readonly List<Tensor[]> copies;
    readonly Tensor x;
    readonly Func<Tensor[], Tensor, Tensor> multiply;
    readonly KernelPath? path;
    readonly bool? vnni;
    int next;

    MatVecProbe(string name, List<Tensor[]> copies, long cols, Func<Tensor[], Tensor, Tensor> multiply, KernelPath? path, bool? vnni)
    {
        (Name, this.copies, this.multiply, this.path, this.vnni) = (name, copies, multiply, path, vnni);
        x = randn(cols);
        WeightBytes = copies[0].Sum(t => t.NumberOfElements * t.ElementSize);
    }

    /// <summary>What runs, e.g. <c>int8 Avx2+VNNI</c>.</summary>
    public string Name { get; }

    /// <summary>Bytes of weights (int8 and 4-bit: values and scales) one product reads.</summary>
    public long WeightBytes { get; }

    /// <summary>
    /// Wren's kernel for <paramref name="precision"/> on a [rows, cols] weight, on the current kernel path or the one given
    /// (<paramref name="vnni"/>: the int8 AVX2 path with or without AVX-VNNI).
    /// </summary>
    public static MatVecProbe Wren(WeightPrecision precision, long rows = 14336, long cols = 4096, int copies = 4,
                                   KernelPath? path = null, bool? vnni = null)
    {
        Tensor[] Stored()
        {
            var w = randn(rows, cols);
            if (precision == WeightPrecision.Float32) return [w];
            using (w)
            {
                if (precision == WeightPrecision.BFloat16) return [w.to(ScalarType.BFloat16)];
                var (values, scales) = precision switch
                {
                    WeightPrecision.Q4 => MatVecQ4.Quantize(w),
                    WeightPrecision.Q4K => MatVecQ4K.Quantize(w),
                    _ => MatVecInt8.Quantize(w),
                };
                return [values, scales];
            }
        }
        Func<Tensor[], Tensor, Tensor> multiply = precision switch
        {
            WeightPrecision.BFloat16 => (w, v) => MatVecBf16.MultiplyMany([w[0]], v)[0],
            WeightPrecision.Int8 => (w, v) => MatVecInt8.MultiplyMany([(w[0], w[1])], v)[0],
            WeightPrecision.Q4 => (w, v) => MatVecQ4.MultiplyMany([(w[0], w[1])], v)[0],
            WeightPrecision.Q4K => (w, v) => MatVecQ4K.MultiplyMany([(w[0], w[1])], v)[0],
            _ => (w, v) => MatVec.Multiply(w[0], v),
        };
        string kernel;
        using (path is { } p ? KernelPaths.Force(p, vnni) : null)
            kernel = precision.IsQuantized() ? KernelPaths.Int8Description : KernelPaths.Active.ToString();
        return new MatVecProbe($"{precision.Name()} {kernel}", Enumerable.Range(0, copies).Select(_ => Stored()).ToList(), cols,
                               multiply, path, vnni);
    }

    /// <summary>libtorch's fp32 <c>mv</c> on a [rows, cols] weight.</summary>
    public static MatVecProbe Libtorch(long rows = 14336, long cols = 4096, int copies = 4) =>
        new("float32 libtorch mv", Enumerable.Range(0, copies).Select(_ => new[] { randn(rows, cols) }).ToList(), cols,
            (w, v) => w[0].mv(v), null, null);

    /// <summary>Seconds of one product on the next copy of the weight.</summary>
    public double Seconds()
    {
        var weight = copies[next++ % copies.Count];
        using var forced = path is { } p ? KernelPaths.Force(p, vnni) : null;
        var clock = Stopwatch.StartNew();
        using var y = multiply(weight, x);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Weight bytes per second: the best of <paramref name="repeats"/> products after one untimed.</summary>
    public double BytesPerSecond(int repeats = 12) => WeightBytes / DeviceFacts.BestSeconds(() => Seconds(), repeats);

    public void Dispose()
    {
        foreach (var t in copies.SelectMany(c => c)) t.Dispose();
        x.Dispose();
    }
}
