using System.Diagnostics;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Wren.Distributed;

/// <summary>
/// Sums the gradients of all ranks: the parameters' gradients, in the model's fixed parameter order, are flattened into
/// float32 buckets of at most <see cref="BucketBytes"/> (PyTorch DDP's 25 MiB default), each bucket is summed in place
/// with MPI_Allreduce and copied back. The reduction runs after the backward: TorchSharp 0.107 has no gradient hooks on
/// tensors, so a bucket cannot start while the backward is still running (the overlap PyTorch DDP gets from them).
/// The gradients are already scaled by the global batch before the backward (<c>Trainer</c>), so the sum is the mean
/// gradient of the global batch and nothing is divided afterwards.
/// </summary>
internal sealed class GradientBuckets(IReadOnlyList<Parameter> parameters, ProcessGroup group,
                                      long bucketBytes = GradientBuckets.BucketBytes)
{
    public const long BucketBytes = 25L << 20;

    /// <summary>Gradient bytes summed per step (float32).</summary>
    public long Bytes => parameters.Sum(p => p.numel()) * sizeof(float);

    /// <summary>All-reduces every gradient (parameters without one have none on any rank); returns the seconds it took.</summary>
    public double Reduce()
    {
        var clock = Stopwatch.StartNew();
        if (group.Size == 1) return 0;
        var bucket = new List<Tensor>();
        long bytes = 0;
        foreach (var p in parameters)
        {
            if (p.grad is not { } grad) continue;
            if (grad.dtype != ScalarType.Float32) throw new InvalidOperationException($"gradients must be float32, got {grad.dtype}");
            bucket.Add(grad);
            bytes += grad.numel() * sizeof(float);
            if (bytes < bucketBytes) continue;
            Flush(bucket);
            bytes = 0;
        }
        Flush(bucket);
        return clock.Elapsed.TotalSeconds;
    }

    void Flush(List<Tensor> bucket)
    {
        if (bucket.Count == 0) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var flat = cat(bucket.Select(g => g.reshape(-1)).ToList(), 0).contiguous();
        group.AllReduceSum(flat, "the gradient all-reduce");
        long offset = 0;
        foreach (var grad in bucket)
        {
            grad.copy_(flat.narrow(0, offset, grad.numel()).view_as(grad));
            offset += grad.numel();
        }
        bucket.Clear();
    }
}
