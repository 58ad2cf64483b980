using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Wren.Kernels;

/// <summary>
/// fp32 products <c>y = x·Wᵀ</c>: the matrix–vector product of batch-1 decode, where the cost is reading W once, and on
/// AVX-512 the tiled product of decode batches and prefill (six weight rows × four inputs per pass), which sums every
/// result in exactly the one-row kernel's order, so a row's bits do not depend on what else is in the batch.
/// Hand-written because libtorch's CPU sgemv reads weights at well under the memory bandwidth (measured ~30 GB/s vs
/// ~70 GB/s for this kernel on a 2-core AVX-512 machine) and its GEMM reached 35 % of the FMA peak where the tiled kernel
/// reaches 48–59 % (docs/benchmarks.md, <c>Wren.Bench matmul</c>). Rows are split across the intra-op threads
/// (<see cref="Workers"/>).
/// </summary>
internal static unsafe class MatVec
{
    /// <summary>Below this many weights one thread is faster than waking another.</summary>
    const long ParallelThreshold = 1 << 16;

    /// <summary>Below scalar code libtorch's sgemv is faster, so fp32 uses this kernel only with SIMD.</summary>
    public static bool IsAccelerated => KernelPaths.Best != KernelPath.Scalar;

    /// <summary>
    /// Up to this many input rows (a decode batch) share one pass over the weights; measured faster than libtorch's
    /// GEMM up to 64 rows on the reference machine (e.g. 16 rows: 161 vs 67 tokens/s for flash-300m).
    /// </summary>
    public const int MaxInputRows = 64;

    /// <summary>True when <see cref="Multiply"/> applies: float32 CPU tensors, contiguous weights, at most <see cref="MaxInputRows"/> input
    /// rows, SIMD available.</summary>
    public static bool Applies(Tensor weight, Tensor x) =>
        IsAccelerated && weight.dtype == ScalarType.Float32 && x.dtype == ScalarType.Float32
        && weight.device.type == DeviceType.CPU && x.device.type == DeviceType.CPU
        && weight.dim() == 2 && weight.is_contiguous() && x.shape[^1] == weight.shape[1]
        && x.numel() / weight.shape[1] <= MaxInputRows;

    /// <summary>
    /// True when the kernel of the weight's precision applies to <c>x·Wᵀ</c> (its <c>Applies</c>: fp32 with SIMD, bf16,
    /// int8 with its <paramref name="scale"/>, or 4-bit U8 values with theirs: q4 with 2-D scales, q4k with 3-D); then
    /// <see cref="Bind"/> and <see cref="MultiplyRows"/> take it.
    /// </summary>
    internal static bool KernelApplies(Tensor weight, Tensor? scale, Tensor x) => weight.dtype switch
    {
        ScalarType.Float32 => Applies(weight, x),
        ScalarType.BFloat16 => MatVecBf16.Applies(weight, x),
        ScalarType.Int8 => scale is not null && MatVecInt8.Applies(weight, x),
        ScalarType.Byte => scale is not null
                           && (scale.dim() == 3 ? MatVecQ4K.Applies(weight, scale, x) : MatVecQ4.Applies(weight, scale, x)),
        _ => false,
    };

    /// <summary>y [m, out] = x [m, in] · Wᵀ for m ≤ <see cref="MaxInputRows"/> (x of any shape ending in in).</summary>
    public static Tensor Multiply(Tensor weight, Tensor x) => MultiplyMany([weight], x)[0];

    /// <summary>
    /// True when <see cref="MultiplyLong"/> applies to x·Wᵀ with more rows than a decode batch (prefill, evaluation):
    /// float32 CPU tensors on the AVX-512 path, where the tiled kernel (<see cref="DotTile"/>) was measured faster than
    /// libtorch's GEMM (docs/benchmarks.md, <c>Wren.Bench matmul</c>).
    /// </summary>
    public static bool LongApplies(Tensor weight, Tensor x) =>
        KernelPaths.Active == KernelPath.Avx512 && weight.dtype == ScalarType.Float32 && x.dtype == ScalarType.Float32
        && weight.device.type == DeviceType.CPU && x.device.type == DeviceType.CPU
        && weight.dim() == 2 && weight.is_contiguous() && x.shape[^1] == weight.shape[1] && weight.shape[0] >= LongMinRows;

    /// <summary>Fewer output rows than this leave most of the product outside the tiles (gate and β projections of a few
    /// heads), where libtorch's GEMM is faster.</summary>
    const long LongMinRows = 64;

    /// <summary>y [..., out] = x [..., in] · Wᵀ for any number of rows of x (fp32, <see cref="LongApplies"/>), each row
    /// bit-identical to its product alone.</summary>
    public static Tensor MultiplyLong(Tensor weight, Tensor x) =>
        MultiplyRows([BindFloat32(weight, "weight")], x, keepLeading: true, anyInputs: true)[0];

    /// <summary>
    /// <c>W_i·x</c> for several weights that read the same input (q/k/v, gate/up) in one fork/join: the rows of all
    /// matrices are split across threads as one run, so each thread streams long runs instead of several short ones.
    /// </summary>
    public static Tensor[] MultiplyMany(IReadOnlyList<Tensor> weights, Tensor x) =>
        MultiplyRows(weights.Select((w, i) => BindFloat32(w, $"weight {i}")).ToArray(), x);

    /// <summary>
    /// Binds a stored weight to the kernel of its precision: fp32 or bf16 [out, in], int8 values [out, in] with their
    /// fp32 block <paramref name="scale"/> [out, ⌈in/32⌉], or 4-bit U8 values of a matrix <paramref name="cols"/> wide
    /// (q4: scales [out, ⌈in/32⌉], <see cref="MatVecQ4"/>; q4k: scales [out, ⌈in/256⌉, 2], <see cref="MatVecQ4K"/>; packed
    /// values do not carry their width). Throws (naming <paramref name="name"/>) unless it is a contiguous CPU matrix of that kind.
    /// </summary>
    internal static BoundMatrix Bind(Tensor weight, Tensor? scale, string name = "weight", long? cols = null) => weight.dtype switch
    {
        ScalarType.Float32 => BindFloat32(weight, name),
        ScalarType.BFloat16 => MatVecBf16.Bind(weight, name),
        ScalarType.Int8 => MatVecInt8.Bind(weight, scale ?? throw new ArgumentException($"{name}: an int8 weight needs its scales"), name),
        ScalarType.Byte when scale is null || cols is null =>
            throw new ArgumentException($"{name}: a 4-bit weight needs its scales and the matrix width"),
        ScalarType.Byte => scale.dim() == 3
            ? MatVecQ4K.Bind(weight, scale, cols.Value, name)
            : MatVecQ4.Bind(weight, scale, cols.Value, name),
        _ => throw new ArgumentException($"{name}: no matrix–vector kernel for {weight.dtype} weights"),
    };

    static BoundMatrix BindFloat32(Tensor weight, string name)
    {
        long rows = weight.shape[0], cols = weight.shape[^1];
        KernelTensors.RequireInPlace(weight, name, ScalarType.Float32, rows, cols);
        float* w = KernelTensors.Floats(weight);
        return new(rows, cols, (x, y, inputs, first, end) => Rows(w, x, y, cols, inputs, rows, first, end));
    }

    /// <summary>
    /// The tensor form of the fp32, bf16, int8 and 4-bit kernels: x [..., cols] fp32 with at most <see cref="MaxInputRows"/>
    /// rows → fp32 outputs [inputs, rows_i] for bound matrices of one width, the rows of all of them split across
    /// threads as one run (<see cref="ForRows"/>). With <paramref name="keepLeading"/> the outputs are
    /// [..., rows_i], x's leading dimensions kept (a projection's shape, with no view to make). <paramref name="anyInputs"/>
    /// lifts the row limit for kernels without per-input buffers (the fp32 one, <see cref="MultiplyLong"/>).
    /// </summary>
    internal static Tensor[] MultiplyRows(IReadOnlyList<BoundMatrix> matrices, Tensor x, bool keepLeading = false,
                                          bool anyInputs = false)
    {
        long cols = matrices[0].Cols;
        for (int i = 1; i < matrices.Count; i++)
            if (matrices[i].Cols != cols) throw new ArgumentException($"weight {i}: {matrices[i].Cols} columns, expected {cols}");
        KernelTensors.Require(x, "x", ScalarType.Float32, [.. x.shape[..^1], cols]);
        long inputs = anyInputs ? x.numel() / cols : Inputs(x.numel() / cols);
        long[] leading = keepLeading ? x.shape[..^1] : [inputs];
        var outputs = matrices.Select(m => empty([.. leading, m.Rows])).ToArray();
        using var xc = x.is_contiguous() ? null : x.contiguous();   // a contiguous x is read in place: no tensor op
        float* v = KernelTensors.Floats(xc ?? x);
        var op = outputs.Select(o => (IntPtr)KernelTensors.Floats(o)).ToArray();
        foreach (var m in matrices) m.Prepare?.Invoke(v, inputs);
        ForRows(matrices.Select(m => m.Rows).ToArray(), cols, (i, from, to) => matrices[i].Kernel(v, (float*)op[i], inputs, from, to));
        return outputs;
    }

    /// <summary>
    /// <c>y_k = x·W_kᵀ</c> into caller-owned buffers, for bound matrices of one shape [rows, cols] that read the same
    /// x [inputs, cols] (inputs ≤ <see cref="MaxInputRows"/>; y_k [inputs, rows], row-major, not overlapping x). The
    /// work is cut by output row: each chunk [first, end) computes those rows of every matrix and then runs
    /// <paramref name="epilogue"/>(first, end), which combines them while they are in cache (silu(g)·u, h += y, y·s),
    /// so the elementwise step costs neither a pass of its own nor another fork/join. One fork/join in all.
    /// </summary>
    internal static void MultiplyInto(BoundMatrix[] matrices, float* x, long inputs, IntPtr[] outputs, Action<long, long>? epilogue)
    {
        long rows = matrices[0].Rows, cols = matrices[0].Cols;
        for (int i = 1; i < matrices.Length; i++)
            if (matrices[i].Rows != rows || matrices[i].Cols != cols)
                throw new ArgumentException($"weight {i}: [{matrices[i].Rows}, {matrices[i].Cols}], expected [{rows}, {cols}]");
        Inputs(inputs);
        foreach (var m in matrices) m.Prepare?.Invoke(x, inputs);
        var (threads, chunks) = Split(rows, rows * cols * matrices.Length);
        Workers.For(rows, chunks, threads, (first, end) =>
        {
            for (int i = 0; i < matrices.Length; i++) matrices[i].Kernel(x, (float*)outputs[i], inputs, first, end);
            epilogue?.Invoke(first, end);
        });
    }

    /// <summary>Epilogue: <c>y += x</c> over <paramref name="n"/> floats (a residual add, exactly libtorch's fp32 add).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AddInto(float* y, float* x, long n)
    {
        int w = Vector<float>.Count;
        long i = 0;
        for (; i + w <= n; i += w) Vector.Store(Vector.Load(y + i) + Vector.Load(x + i), y + i);
        for (; i < n; i++) y[i] += x[i];
    }

    /// <summary>Epilogue: <c>y ⊙= s</c> over <paramref name="n"/> floats (a per-row scale, exactly libtorch's fp32 product).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ScaleInto(float* y, float* s, long n)
    {
        int w = Vector<float>.Count;
        long i = 0;
        for (; i + w <= n; i += w) Vector.Store(Vector.Load(y + i) * Vector.Load(s + i), y + i);
        for (; i < n; i++) y[i] *= s[i];
    }

    static long Inputs(long inputs) =>
        inputs <= MaxInputRows ? inputs : throw new ArgumentException($"x: {inputs} rows, more than the kernel's {MaxInputRows}");

    /// <summary>
    /// Threads and chunks for <paramref name="rows"/> output rows reading <paramref name="weights"/> weights: one thread
    /// below <see cref="ParallelThreshold"/>, else chunks of at least 64 rows that the threads claim as they go
    /// (<see cref="Workers.For"/>): a few chunks per thread keep each stream long, and a thread that is not running costs
    /// at most the chunk it holds.
    /// </summary>
    static (int Threads, int Chunks) Split(long rows, long weights)
    {
        int threads = weights < ParallelThreshold ? 1 : Workers.Count;
        return (threads, (int)Math.Clamp(rows / 64, 1, 4 * threads));
    }

    /// <summary>Runs <paramref name="body"/>(matrix, first row, end row) over the rows of several [rows_i, cols] matrices
    /// taken as one run, split by <see cref="Split"/>.</summary>
    static void ForRows(long[] rows, long cols, Action<int, long, long> body)
    {
        var starts = new long[rows.Length + 1];
        for (int i = 0; i < rows.Length; i++) starts[i + 1] = starts[i] + rows[i];
        long total = starts[^1];
        var (threads, chunks) = Split(total, total * cols);
        Workers.For(total, chunks, threads, (begin, end) =>
        {
            for (int i = 0; i < rows.Length; i++)
            {
                long from = Math.Max(begin, starts[i]), to = Math.Min(end, starts[i + 1]);
                if (from < to) body(i, from - starts[i], to - starts[i]);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]   // hot SIMD loop: skip tier-0 code
    static void Rows(float* w, float* x, float* y, long cols, long inputs, long outputs, long first, long end)
    {
        // Each weight row comes from memory once per block of inputs, which reuses it from L1. With several inputs on
        // AVX-512, TileRows weight rows meet TileInputs inputs per pass (DotTile: 10 loads per 24 FMAs), each pair summed as
        // Dot sums it, over the columns in chunks of ColumnChunk so that the tile's rows stay in L1 while the block's inputs
        // pass. Rows and inputs left over from the tiles take Dot itself.
        long r = first;
        if (inputs >= 2 && KernelPaths.Active == KernelPath.Avx512)
        {
            long full = cols / 64 * 64, chunks = Math.Max(1, (full + ColumnChunk - 1) / ColumnChunk);
            long tiledEnd = first + (end - first) / TileRows * TileRows;
            var partial = stackalloc float[(int)(InputBlock / TileInputs * TileFloats)];
            for (long m0 = 0; m0 < inputs; m0 += InputBlock)
                for (r = first; r < tiledEnd; r += TileRows)
                {
                    long m1 = Math.Min(inputs, m0 + InputBlock), tiles = (m1 - m0) / TileInputs;
                    // One chunk: each tile is finished at once, its sums still in L1. Several: every tile's sums are kept
                    // (in L2) while the chunks pass, so that each chunk of the weight rows is read once per block of inputs.
                    long kept = chunks == 1 ? 0 : TileFloats;
                    // With few inputs a chunk of the tile's weight rows is not reused long enough to hide its fetch from
                    // memory, so the first tile also prefetches the chunk that comes next: the same rows' next chunk, or
                    // after the last one the next rows' first (next + k is the line matching column k of this chunk).
                    bool ahead = tiles <= PrefetchInputs / TileInputs;
                    for (long c = 0; c < chunks; c++)
                    {
                        long k0 = c * ColumnChunk, k1 = Math.Min(full, k0 + ColumnChunk);
                        float* next = !ahead ? null
                            : c < chunks - 1 ? w + r * cols + ColumnChunk
                            : r + 2 * TileRows <= tiledEnd ? w + (r + TileRows) * cols - k0 : null;
                        for (long t = 0; t < tiles; t++)
                        {
                            DotTile(w + r * cols, x + (m0 + TileInputs * t) * cols, cols, k0, k1, c == chunks - 1, partial + t * kept,
                                    t == 0 ? next : null);
                            if (c == chunks - 1)
                                FinishTile(w + r * cols, x + (m0 + TileInputs * t) * cols, cols,
                                           y + (m0 + TileInputs * t) * outputs + r, outputs, partial + t * kept);
                        }
                    }
                    for (long m = m0 + TileInputs * tiles; m < m1; m++)
                        for (long i = r; i < r + TileRows; i++) y[m * outputs + i] = Dot(w + i * cols, x + m * cols, cols);
                }
        }
        for (; r < end; r++)
            for (long m = 0; m < inputs; m++) y[m * outputs + r] = Dot(w + r * cols, x + m * cols, cols);
    }

    /// <summary>Up to this many inputs in a block, <see cref="DotTile"/> prefetches the next chunk of weight rows into L2.
    /// Measured by turns in one process (medians of 16 × 8 products, 2-core Zen 5): time with ÷ without 0.94–0.97 at 8 inputs,
    /// 0.92–0.97 at 16, 0.85–0.92 on the 32,000-row output head at 4–20; 0.96–1.02 at 32 and 64 (docs/benchmarks.md).</summary>
    const long PrefetchInputs = 32;

    /// <summary>Inputs per pass over a tile's weight rows: 64 input rows of 1,024 floats are 256 KB, within L2.</summary>
    const long InputBlock = 64;

    /// <summary>Columns per pass of <see cref="DotTile"/>: its six weight rows and four inputs of 1,024 floats are 40 KB,
    /// within L1.</summary>
    const long ColumnChunk = 1024;

    /// <summary>The register tile: weight rows × inputs, 24 accumulators (plus four inputs and a weight row: 29 of the 32
    /// vector registers).</summary>
    const int TileRows = 6, TileInputs = 4;

    /// <summary>Floats of one tile's running sums: four accumulators of 16 lanes for each of its 24 pairs.</summary>
    const long TileFloats = 4 * TileRows * TileInputs * 16;

    /// <summary>
    /// One column chunk of <see cref="Dot"/> for the six weight rows at <paramref name="a"/> (stride cols) and the four
    /// inputs at x (stride cols), so that every result is bit-identical to the one-input product on AVX-512: a request
    /// gives the same bits alone, in a decode batch or in a long prefill (batch invariance). Dot keeps four accumulators
    /// s_j, s_j summing the 16-float blocks at 64t + 16j (then the leftover 16-blocks into s0), and returns
    /// Sum((s0 + s1) + (s2 + s3)) plus the scalar tail. Twenty-four pairs × four accumulators do not fit the 32 registers,
    /// so this runs the four s_j as four passes over the chunk (L1-resident), 24 accumulators each, and keeps them in
    /// <paramref name="partial"/> (<see cref="TileFloats"/>; started from zero at column 0) between passes and chunks: the
    /// same FMAs in the same order as Dot. <paramref name="last"/> marks the chunk that ends at the last full 64-block,
    /// where s0 takes the leftover 16-blocks. When <paramref name="next"/> is not null, the lines at next + k of six rows
    /// (stride cols) are prefetched into L2 as column k is read (arithmetic unchanged).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DotTile(float* a, float* x, long cols, long k0, long k1, bool last, float* partial, float* next)
    {
        float* x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols;
        float* w1 = a + cols, w2 = w1 + cols, w3 = w2 + cols, w4 = w3 + cols, w5 = w4 + cols;
        long full = cols / 64 * 64, blocks = cols / 16 * 16;
        for (int j = 0; j < 4; j++)
        {
            float* p = partial + 384 * j;
            var a00 = Vector512<float>.Zero; var a01 = a00; var a02 = a00; var a03 = a00;
            var a10 = a00; var a11 = a00; var a12 = a00; var a13 = a00;
            var a20 = a00; var a21 = a00; var a22 = a00; var a23 = a00;
            var a30 = a00; var a31 = a00; var a32 = a00; var a33 = a00;
            var a40 = a00; var a41 = a00; var a42 = a00; var a43 = a00;
            var a50 = a00; var a51 = a00; var a52 = a00; var a53 = a00;
            if (k0 > 0)
            {
                a00 = Vector512.Load(p + 0); a01 = Vector512.Load(p + 16); a02 = Vector512.Load(p + 32); a03 = Vector512.Load(p + 48);
                a10 = Vector512.Load(p + 64); a11 = Vector512.Load(p + 80); a12 = Vector512.Load(p + 96); a13 = Vector512.Load(p + 112);
                a20 = Vector512.Load(p + 128); a21 = Vector512.Load(p + 144); a22 = Vector512.Load(p + 160); a23 = Vector512.Load(p + 176);
                a30 = Vector512.Load(p + 192); a31 = Vector512.Load(p + 208); a32 = Vector512.Load(p + 224); a33 = Vector512.Load(p + 240);
                a40 = Vector512.Load(p + 256); a41 = Vector512.Load(p + 272); a42 = Vector512.Load(p + 288); a43 = Vector512.Load(p + 304);
                a50 = Vector512.Load(p + 320); a51 = Vector512.Load(p + 336); a52 = Vector512.Load(p + 352); a53 = Vector512.Load(p + 368);
            }
            // s_j's blocks in this chunk: k0 + 16j, k0 + 16j + 64, … below k1; in the last chunk s0 goes on over the
            // leftover 16-blocks, as in Dot.
            for (long k = k0 + 16 * j, limit = last && j == 0 ? blocks : k1; k < limit; k += k < full ? 64 : 16)
            {
                var v0 = Vector512.Load(x + k); var v1 = Vector512.Load(x1 + k);
                var v2 = Vector512.Load(x2 + k); var v3 = Vector512.Load(x3 + k);
                if (next != null)
                {
                    Sse.Prefetch1(next + k); Sse.Prefetch1(next + cols + k); Sse.Prefetch1(next + 2 * cols + k);
                    Sse.Prefetch1(next + 3 * cols + k); Sse.Prefetch1(next + 4 * cols + k); Sse.Prefetch1(next + 5 * cols + k);
                }
                var w = Vector512.Load(a + k);
                a00 = Vector512.FusedMultiplyAdd(w, v0, a00); a01 = Vector512.FusedMultiplyAdd(w, v1, a01);
                a02 = Vector512.FusedMultiplyAdd(w, v2, a02); a03 = Vector512.FusedMultiplyAdd(w, v3, a03);
                w = Vector512.Load(w1 + k);
                a10 = Vector512.FusedMultiplyAdd(w, v0, a10); a11 = Vector512.FusedMultiplyAdd(w, v1, a11);
                a12 = Vector512.FusedMultiplyAdd(w, v2, a12); a13 = Vector512.FusedMultiplyAdd(w, v3, a13);
                w = Vector512.Load(w2 + k);
                a20 = Vector512.FusedMultiplyAdd(w, v0, a20); a21 = Vector512.FusedMultiplyAdd(w, v1, a21);
                a22 = Vector512.FusedMultiplyAdd(w, v2, a22); a23 = Vector512.FusedMultiplyAdd(w, v3, a23);
                w = Vector512.Load(w3 + k);
                a30 = Vector512.FusedMultiplyAdd(w, v0, a30); a31 = Vector512.FusedMultiplyAdd(w, v1, a31);
                a32 = Vector512.FusedMultiplyAdd(w, v2, a32); a33 = Vector512.FusedMultiplyAdd(w, v3, a33);
                w = Vector512.Load(w4 + k);
                a40 = Vector512.FusedMultiplyAdd(w, v0, a40); a41 = Vector512.FusedMultiplyAdd(w, v1, a41);
                a42 = Vector512.FusedMultiplyAdd(w, v2, a42); a43 = Vector512.FusedMultiplyAdd(w, v3, a43);
                w = Vector512.Load(w5 + k);
                a50 = Vector512.FusedMultiplyAdd(w, v0, a50); a51 = Vector512.FusedMultiplyAdd(w, v1, a51);
                a52 = Vector512.FusedMultiplyAdd(w, v2, a52); a53 = Vector512.FusedMultiplyAdd(w, v3, a53);
            }
            a00.Store(p + 0); a01.Store(p + 16); a02.Store(p + 32); a03.Store(p + 48);
            a10.Store(p + 64); a11.Store(p + 80); a12.Store(p + 96); a13.Store(p + 112);
            a20.Store(p + 128); a21.Store(p + 144); a22.Store(p + 160); a23.Store(p + 176);
            a30.Store(p + 192); a31.Store(p + 208); a32.Store(p + 224); a33.Store(p + 240);
            a40.Store(p + 256); a41.Store(p + 272); a42.Store(p + 288); a43.Store(p + 304);
            a50.Store(p + 320); a51.Store(p + 336); a52.Store(p + 352); a53.Store(p + 368);
        }
    }

    /// <summary>The end of <see cref="Dot"/> for a tile whose sums <see cref="DotTile"/> left in <paramref name="partial"/>:
    /// <see cref="PairwiseSum"/>((s0 + s1) + (s2 + s3)) plus the scalar tail, into y[m·stride + i] (input m, weight row i);
    /// the horizontal sums of 16 pairs at a time in one transposed pass (<see cref="PairwiseSums"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void FinishTile(float* a, float* x, long cols, float* y, long stride, float* partial)
    {
        const int pass = TileRows * TileInputs * 16, pairs = TileRows * TileInputs;
        var combined = stackalloc Vector512<float>[32];
        var sums = stackalloc float[32];
        for (int i = 0; i < 32; i++)
        {
            float* q = partial + 16 * i;
            combined[i] = i < pairs
                ? (Vector512.Load(q) + Vector512.Load(q + pass)) + (Vector512.Load(q + 2 * pass) + Vector512.Load(q + 3 * pass))
                : Vector512<float>.Zero;
        }
        PairwiseSums(combined).Store(sums);
        PairwiseSums(combined + 16).Store(sums + 16);
        long blocks = cols / 16 * 16;
        for (int r = 0; r < TileRows; r++)
            for (int c = 0; c < TileInputs; c++)
            {
                float total = sums[TileInputs * r + c];
                float* row = a + r * cols, input = x + c * cols;
                for (long k = blocks; k < cols; k++) total += row[k] * input[k];
                y[c * stride + r] = total;
            }
    }

    /// <summary>
    /// The sum of 16 lanes as the pairwise tree ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)) + …, quarter sums first:
    /// the order of .NET's <c>Vector512.Sum</c> on AVX-512, written out so that <see cref="PairwiseSums"/> provably
    /// matches it (a runtime that reordered Sum would otherwise break batch invariance silently).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float PairwiseSum(Vector512<float> v)
    {
        var p = v + Avx512F.Shuffle(v, v, 0b10_11_00_01);   // lanes [1, 0, 3, 2] of each quarter: v0 + v1, v2 + v3
        p += Avx512F.Shuffle(p, p, 0b01_00_11_10);          // lanes [2, 3, 0, 1]: (v0 + v1) + (v2 + v3)
        return (p.GetElement(0) + p.GetElement(4)) + (p.GetElement(8) + p.GetElement(12));
    }

    /// <summary>
    /// <see cref="PairwiseSum"/> of each of the 16 vectors at <paramref name="v"/>, lane i of the result the sum of v[i]: the
    /// same additions on the same operands, done four tree levels at a time across vectors (shuffles pair the operands).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Vector512<float> PairwiseSums(Vector512<float>* v)
    {
        // Adjacent lanes of two vectors: [a0 + a1, a2 + a3, b0 + b1, b2 + b3] per quarter.
        var l0 = Adjacent(v[0], v[1]); var l1 = Adjacent(v[2], v[3]); var l2 = Adjacent(v[4], v[5]); var l3 = Adjacent(v[6], v[7]);
        var l4 = Adjacent(v[8], v[9]); var l5 = Adjacent(v[10], v[11]); var l6 = Adjacent(v[12], v[13]); var l7 = Adjacent(v[14], v[15]);
        // Quarter sums of four vectors: [a, b, c, d] per quarter.
        var q0 = Adjacent(l0, l1); var q1 = Adjacent(l2, l3); var q2 = Adjacent(l4, l5); var q3 = Adjacent(l6, l7);
        // Half sums (quarters 0 + 1, 2 + 3) of eight vectors, then the whole.
        var h0 = Quarters(q0, q1); var h1 = Quarters(q2, q3);
        return Quarters(h0, h1);
    }

    /// <summary>Per 128-bit quarter, [a0 + a1, a2 + a3, b0 + b1, b2 + b3] (shufps pairs the operands).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Adjacent(Vector512<float> a, Vector512<float> b) =>
        Avx512F.Shuffle(a, b, 0b10_00_10_00) + Avx512F.Shuffle(a, b, 0b11_01_11_01);

    /// <summary>[a.q0 + a.q1, a.q2 + a.q3, b.q0 + b.q1, b.q2 + b.q3] over 128-bit quarters (shuff32x4 pairs them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Quarters(Vector512<float> a, Vector512<float> b) =>
        Avx512F.Shuffle4x128(a, b, 0b10_00_10_00) + Avx512F.Shuffle4x128(a, b, 0b11_01_11_01);

    /// <summary>
    /// One row at a time, so each thread reads a single sequential stream (interleaving rows split it into
    /// several page-sized streams and halved throughput); four accumulators hide the FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(float* a, float* x, long cols)
    {
        long k = 0;
        float total = 0;
        var path = KernelPaths.Active;
        if (path == KernelPath.Avx512)
        {
            var s0 = Vector512<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 64 <= cols; k += 64)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(x + k), s0);
                s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 16), Vector512.Load(x + k + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 32), Vector512.Load(x + k + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 48), Vector512.Load(x + k + 48), s3);
            }
            for (; k + 16 <= cols; k += 16) s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(x + k), s0);
            total = PairwiseSum((s0 + s1) + (s2 + s3));
        }
        else if (path == KernelPath.Avx2)
        {
            var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            for (; k + 32 <= cols; k += 32)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(x + k), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 8), Vector256.Load(x + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 16), Vector256.Load(x + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 24), Vector256.Load(x + k + 24), s3);
            }
            for (; k + 8 <= cols; k += 8) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(x + k), s0);
            total = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < cols; k++) total += a[k] * x[k];
        return total;
    }
}

/// <summary>Rows [first, end) of <c>y [inputs, rows] = x [inputs, cols]·Wᵀ</c> for the one matrix the delegate is bound to.</summary>
internal unsafe delegate void RowKernel(float* x, float* y, long inputs, long first, long end);

/// <summary>
/// A stored weight matrix [Rows, Cols] (fp32, bf16, or int8 with its scales) bound to the row kernel of its precision
/// by <see cref="MatVec.Bind"/>. It holds raw pointers into the weight: bind it for one product, while the weight lives.
/// </summary>
/// <param name="Prepare">Run once per product on the calling thread before the rows are split (the int8 kernel quantizes x
/// [inputs, cols] here), or null.</param>
internal readonly record struct BoundMatrix(long Rows, long Cols, RowKernel Kernel, InputKernel? Prepare = null);

/// <summary>Work on the input x [inputs, cols] of one product, before its rows are split across threads.</summary>
internal unsafe delegate void InputKernel(float* x, long inputs);
