using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using static TorchSharp.torch;

namespace Wren.Distributed;

/// <summary>
/// An error every rank raised together, from values all ranks share (a world size that does not divide the batch, ranks
/// that disagree on the config, a divergence seen in the reduced loss): rank 0 reports it and every rank ends MPI cleanly.
/// </summary>
public sealed class CollectiveException(string message) : WrenException(message);

/// <summary>
/// The processes training one model together: rank <see cref="Rank"/> of <see cref="Size"/>. A process started by
/// <c>mpirun</c> (Open MPI sets <c>OMPI_COMM_WORLD_SIZE</c>) joins the MPI job; any other process is the single-process
/// group <see cref="Single"/>, whose collectives do nothing and which never loads the MPI library. One thread calls the
/// collectives. A collective that does not complete within <see cref="CollectiveTimeout"/> (a peer stalled or lost without
/// mpirun noticing) ends this process with exit code 3, naming the collective, so no rank waits forever; mpirun then ends
/// the others.
/// </summary>
public sealed class ProcessGroup : IDisposable
{
    /// <summary>Open MPI's launcher sets this in every process it starts (and <c>OMPI_COMM_WORLD_RANK</c>).</summary>
    public const string WorldSizeVariable = "OMPI_COMM_WORLD_SIZE";
    /// <summary>Largest MPI call (elements); larger buffers go in pieces.</summary>
    const int MaxCount = 1 << 28;

    readonly OpenMpi? mpi;
    readonly Thread? watchdog;
    long collectiveStarted = long.MinValue;   // Stopwatch ticks; long.MinValue when no collective runs
    string collective = "";
    bool finished;

    public static ProcessGroup Single { get; } = new(null, 0, 1, TimeSpan.Zero);

    public int Rank { get; }
    public int Size { get; }
    public bool IsRoot => Rank == 0;
    /// <summary>How long one collective may wait for the other ranks.</summary>
    public TimeSpan CollectiveTimeout { get; }
    /// <summary>Seconds spent in collectives so far (waiting included).</summary>
    public double CollectiveSeconds { get; private set; }

    ProcessGroup(OpenMpi? mpi, int rank, int size, TimeSpan timeout)
    {
        this.mpi = mpi;
        Rank = rank;
        Size = size;
        CollectiveTimeout = timeout;
        if (mpi is null) return;
        watchdog = new Thread(Watch) { IsBackground = true, Name = "wren-mpi-watchdog" };
        watchdog.Start();
    }

    /// <summary>Whether mpirun started this process.</summary>
    public static bool LaunchedByMpirun => Environment.GetEnvironmentVariable(WorldSizeVariable) is { Length: > 0 };

    /// <summary>
    /// The MPI job this process belongs to when mpirun started it, else <see cref="Single"/>.
    /// </summary>
    /// <exception cref="WrenException">mpirun started it but the MPI library cannot be loaded or initialized, or this
    /// process did not join a job of the size mpirun announced.</exception>
    public static ProcessGroup FromEnvironment(TimeSpan collectiveTimeout)
    {
        if (!LaunchedByMpirun) return Single;
        if (collectiveTimeout <= TimeSpan.Zero)
            throw new WrenException($"the collective timeout must be positive, got {collectiveTimeout}");
        var mpi = OpenMpi.Initialize();
        int size = mpi.Size(), rank = mpi.Rank();
        string announced = Environment.GetEnvironmentVariable(WorldSizeVariable)!;
        if (announced != size.ToString(System.Globalization.CultureInfo.InvariantCulture))
            throw new WrenException($"mpirun announced {announced} ranks ({WorldSizeVariable}) but this process joined an MPI job of " +
                                    $"{size}: it cannot reach the other ranks (is the same Open MPI installed on every node?)");
        return new ProcessGroup(mpi, rank, size, collectiveTimeout);
    }

    void Watch()
    {
        while (!Volatile.Read(ref finished))
        {
            Thread.Sleep(200);
            long started = Interlocked.Read(ref collectiveStarted);
            if (started == long.MinValue || Stopwatch.GetElapsedTime(started) < CollectiveTimeout) continue;
            Console.Error.WriteLine($"error: rank {Rank}: {collective} waited more than {CollectiveTimeout.TotalSeconds:F0} s for the " +
                                    "other ranks (one was lost or stalled); ending this rank");
            Console.Error.Flush();
            Environment.Exit(3);
        }
    }

    void Collective(string what, Action<OpenMpi> call)
    {
        if (mpi is null) return;
        collective = what;
        long started = Stopwatch.GetTimestamp();
        Interlocked.Exchange(ref collectiveStarted, started);
        try { call(mpi); }
        finally
        {
            Interlocked.Exchange(ref collectiveStarted, long.MinValue);
            CollectiveSeconds += Stopwatch.GetElapsedTime(started).TotalSeconds;
        }
    }

    /// <summary>Sums a contiguous one-dimensional float32/float64/int64 CPU tensor over all ranks, in place, as
    /// MPI_Allreduce(MPI_SUM).</summary>
    public unsafe void AllReduceSum(Tensor values, string what)
    {
        if (Size == 1) return;
        if (!values.is_contiguous() || values.device_type != TorchSharp.DeviceType.CPU)
            throw new ArgumentException("the all-reduce buffer must be a contiguous CPU tensor", nameof(values));
        Collective(what, m =>
        {
            nint type = values.dtype switch
            {
                ScalarType.Float32 => m.Float,
                ScalarType.Float64 => m.Double,
                ScalarType.Int64 => m.Int64,
                _ => throw new ArgumentException($"cannot all-reduce {values.dtype}", nameof(values)),
            };
            long count = values.numel(), element = values.ElementSize;
            for (long start = 0; start < count; start += MaxCount)
            {
                long n = Math.Min(MaxCount, count - start);
                fixed (byte* p = values.narrow(0, start, n).bytes) m.AllreduceSum((nint)p, (int)n, type);
            }
        });
    }

    /// <summary>Sums doubles over all ranks, in place.</summary>
    public unsafe void AllReduceSum(double[] values, string what)
    {
        if (Size == 1) return;
        Collective(what, m =>
        {
            fixed (double* p = values) m.AllreduceSum((nint)p, values.Length, m.Double);
        });
    }

    /// <summary>Every rank's <paramref name="value"/>, indexed by rank (an all-gather, as a sum of one-hot vectors).</summary>
    public unsafe long[] Gather(long value, string what)
    {
        var all = new long[Size];
        all[Rank] = value;
        if (Size == 1) return all;
        Collective(what, m =>
        {
            fixed (long* p = all) m.AllreduceSum((nint)p, all.Length, m.Int64);
        });
        return all;
    }

    /// <summary>Rank 0's bytes on every rank (other ranks pass null); broadcast as a length, then the bytes in pieces.</summary>
    public unsafe byte[] Broadcast(byte[]? fromRoot, string what)
    {
        if (Size == 1) return fromRoot ?? throw new ArgumentNullException(nameof(fromRoot));
        var length = new long[] { IsRoot ? fromRoot!.LongLength : 0 };
        Collective(what, m =>
        {
            fixed (long* p = length) m.Broadcast((nint)p, 1, m.Int64, 0);
        });
        var bytes = IsRoot ? fromRoot! : new byte[length[0]];
        Collective(what, m =>
        {
            fixed (byte* p = bytes)
                for (long start = 0; start < bytes.LongLength; start += MaxCount)
                    m.Broadcast((nint)(p + start), (int)Math.Min(MaxCount, bytes.LongLength - start), m.Byte, 0);
        });
        return bytes;
    }

    /// <summary>Waits until every rank arrives.</summary>
    public void Barrier(string what) => Collective(what, m => m.Barrier());

    /// <summary>
    /// Checks that every rank holds the same <paramref name="identity"/> (SHA-256, first 8 bytes gathered).
    /// </summary>
    /// <exception cref="CollectiveException">On every rank, naming the ranks whose <paramref name="what"/> differs from rank
    /// 0's.</exception>
    public void Agree(string what, string identity, string fix)
    {
        if (Size == 1) return;
        var differ = Differing(BitConverter.ToInt64(SHA256.HashData(Encoding.UTF8.GetBytes(identity))), $"comparing the {what}");
        if (differ.Count > 0)
            throw new CollectiveException($"{Name(differ)} {(differ.Count > 1 ? "have" : "has")} other {what} than rank 0; {fix}");
    }

    /// <summary>The ranks whose <paramref name="value"/> differs from rank 0's (the same list on every rank).</summary>
    public IReadOnlyList<int> Differing(long value, string what)
    {
        var all = Gather(value, what);
        return Enumerable.Range(0, Size).Where(r => all[r] != all[0]).ToList();
    }

    /// <summary>"rank 1" or "ranks 1, 3".</summary>
    public static string Name(IReadOnlyList<int> ranks) => $"rank{(ranks.Count > 1 ? "s" : "")} {string.Join(", ", ranks)}";

    /// <summary>Ends the whole job now (MPI_Abort): mpirun stops every rank and exits with <paramref name="code"/>.</summary>
    public void Abort(int code)
    {
        if (mpi is null) Environment.Exit(code);
        Volatile.Write(ref finished, true);
        mpi.Abort(code);
        Environment.Exit(code);
    }

    /// <summary>Ends MPI on this rank (MPI_Finalize); call on every rank once training is over or failed together.</summary>
    public void Dispose()
    {
        if (mpi is null || Volatile.Read(ref finished)) return;
        Volatile.Write(ref finished, true);
        mpi.End();
    }
}
