using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using Wren.Kernels;
using Wren.Models;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Operators;

/// <summary>
/// Feed-forward block. "silu": <c>down(silu(gate(x)) ⊙ up(x))</c> (SwiGLU); "relu2": <c>down(relu(up(x))²)</c>.
/// </summary>
internal sealed class Ffn : nn.Module<Tensor, Tensor>
{
    /// <summary>Layer type "f": an FFN-only layer (no mixer, no state).</summary>
    public static OperatorSpec Spec { get; } = new() { Name = "f", Description = "FFN-only layer" };

    readonly Linear? gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;

    public Ffn(long hidden, long inner, string activation, Placement placement) : base(nameof(Ffn))
    {
        if (activation == "silu") gate_proj = new Linear(hidden, inner, placement);
        up_proj = new Linear(hidden, inner, placement);
        down_proj = new Linear(inner, hidden, placement);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor inner;
        if (gate_proj is null) inner = nn.functional.relu(up_proj.forward(x)).square();
        else
        {
            var gateAndUp = Linear.ProjectMany(x, gate_proj, up_proj);
            inner = nn.functional.silu(gateAndUp[0]) * gateAndUp[1];
        }
        return down_proj.forward(inner).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused decode form (<see cref="DecodeForm.FusesLayers"/>): <c>h += ffn(x)</c> for caller-owned fp32 rows
    /// x, h [rows, hidden] (rows ≤ <see cref="MatVec.MaxInputRows"/>), with no tensors: gate and up in one
    /// matrix–vector pass whose epilogue forms silu(g)·u (relu(u)² for "relu2") chunk by chunk, then down with an
    /// epilogue that adds each chunk of its output into h. Two fork/joins.
    /// </summary>
    internal unsafe void DecodeInto(float* x, float* h, long rows)
    {
        long inner = up_proj.OutFeatures, hidden = down_proj.OutFeatures;
        var buffer = ArrayPool<float>.Shared.Rent(checked((int)(rows * (2 * inner + hidden))));
        try
        {
            fixed (float* scratch = buffer)
            {
                float* g = scratch, u = scratch + rows * inner, y = u + rows * inner;
                if (gate_proj is null)
                    MatVec.MultiplyInto([up_proj.Bind()], x, rows, [(IntPtr)u], (first, end) => SquaredRelu(u, rows, inner, first, end));
                else
                    MatVec.MultiplyInto([gate_proj.Bind(), up_proj.Bind()], x, rows, [(IntPtr)g, (IntPtr)u],
                        (first, end) => SwiGlu(g, u, rows, inner, first, end));
                float* a = gate_proj is null ? u : g;
                MatVec.MultiplyInto([down_proj.Bind()], a, rows, [(IntPtr)y], (first, end) =>
                {
                    for (long m = 0; m < rows; m++) MatVec.AddInto(h + m * hidden + first, y + m * hidden + first, end - first);
                });
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    /// <summary>Columns [first, end) of every row of g, u [rows, n]: <c>g = silu(g)·u = g / (1 + e^−g) · u</c> (libtorch's
    /// order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void SwiGlu(float* g, float* u, long rows, long n, long first, long end)
    {
        int w = Vector<float>.Count;
        for (long m = 0; m < rows; m++)
        {
            float* gr = g + m * n, ur = u + m * n;
            long i = first;
            for (; i + w <= end; i += w)
            {
                var v = Vector.Load(gr + i);
                Vector.Store(v / (Vector<float>.One + Vector.Exp(-v)) * Vector.Load(ur + i), gr + i);
            }
            for (; i < end; i++) gr[i] = gr[i] / (1 + MathF.Exp(-gr[i])) * ur[i];
        }
    }

    /// <summary>Columns [first, end) of every row of u [rows, n]: <c>u = relu(u)²</c>.</summary>
    static unsafe void SquaredRelu(float* u, long rows, long n, long first, long end)
    {
        for (long m = 0; m < rows; m++)
            for (long i = m * n + first; i < m * n + end; i++)
            {
                float r = MathF.Max(u[i], 0);   // NaN stays NaN, as in libtorch
                u[i] = r * r;
            }
    }
}
