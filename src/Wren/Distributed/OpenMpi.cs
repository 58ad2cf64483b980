using System.Runtime.InteropServices;

namespace Wren.Distributed;

/// <summary>
/// The few MPI calls data-parallel training needs, bound to Open MPI's <c>libmpi.so.40</c> (Open MPI 4.x and 5.x) by
/// P/Invoke. Open MPI's handles are the addresses of global objects (<c>MPI_COMM_WORLD</c> is
/// <c>&amp;ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> is <c>&amp;ompi_mpi_float</c>, <c>MPI_SUM</c> is
/// <c>&amp;ompi_mpi_op_sum</c>; <c>MPI_IN_PLACE</c> is <c>(void*)1</c>), so they are looked up as exported symbols. The
/// library is opened with <c>RTLD_GLOBAL</c>, as Open MPI's plug-ins (its network transports) resolve their symbols against it.
/// MPI.NET 1.4.0, the NuGet binding, is not used: it binds to Microsoft MPI (<c>msmpi.dll</c>) with MPICH's integer handles.
/// Signatures: MPI 3.1 standard, chapters 5 (collectives), 6 (communicators) and 8 (environment).
/// </summary>
internal sealed unsafe class OpenMpi
{
    /// <summary>The library loaded unless <c>WREN_MPI_LIBRARY</c> names another (a full path or a soname).</summary>
    public const string DefaultLibrary = "libmpi.so.40";
    const int RtldNow = 2, RtldGlobal = 0x100, ThreadSerialized = 2;

    readonly delegate* unmanaged<int*, nint, int, int*, int> initThread;
    readonly delegate* unmanaged<int> finalize;
    readonly delegate* unmanaged<nint, int*, int> commRank, commSize;
    readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> allreduce;
    readonly delegate* unmanaged<nint, int, nint, int, nint, int> bcast;
    readonly delegate* unmanaged<nint, int> barrier;
    readonly delegate* unmanaged<nint, int, int> abort;

    public nint World { get; }
    public nint Float { get; }
    public nint Double { get; }
    public nint Int64 { get; }
    public nint Byte { get; }
    public nint Sum { get; }
    public static nint InPlace => 1;

    OpenMpi(nint library)
    {
        nint Get(string name) => NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new WrenException($"{name} is missing from the MPI library: Wren needs Open MPI 4 or later ({DefaultLibrary})");
        initThread = (delegate* unmanaged<int*, nint, int, int*, int>)Get("MPI_Init_thread");
        finalize = (delegate* unmanaged<int>)Get("MPI_Finalize");
        commRank = (delegate* unmanaged<nint, int*, int>)Get("MPI_Comm_rank");
        commSize = (delegate* unmanaged<nint, int*, int>)Get("MPI_Comm_size");
        allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)Get("MPI_Allreduce");
        bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)Get("MPI_Bcast");
        barrier = (delegate* unmanaged<nint, int>)Get("MPI_Barrier");
        abort = (delegate* unmanaged<nint, int, int>)Get("MPI_Abort");
        World = Get("ompi_mpi_comm_world");
        Float = Get("ompi_mpi_float");
        Double = Get("ompi_mpi_double");
        Int64 = Get("ompi_mpi_int64_t");
        Byte = Get("ompi_mpi_byte");
        Sum = Get("ompi_mpi_op_sum");
    }

    [DllImport("libc", EntryPoint = "dlopen")]
    static extern nint DlOpen(string path, int flags);

    [DllImport("libc", EntryPoint = "dlerror")]
    static extern nint DlError();

    /// <summary>Loads the MPI library and initializes MPI (one thread calls MPI at a time).</summary>
    /// <exception cref="WrenException">The library cannot be loaded or MPI_Init_thread fails.</exception>
    public static OpenMpi Initialize()
    {
        string path = Environment.GetEnvironmentVariable("WREN_MPI_LIBRARY") is { Length: > 0 } named ? named : DefaultLibrary;
        DlError();   // binds dlerror now, so resolving it later cannot clear the message of a failed dlopen
        nint library = DlOpen(path, RtldNow | RtldGlobal);
        if (library == 0)
            throw new WrenException($"this process was started by mpirun but cannot load the MPI library {path} " +
                                    $"({Marshal.PtrToStringUTF8(DlError())}); install Open MPI (Debian: openmpi-bin libopenmpi-dev) on " +
                                    "every node, or set WREN_MPI_LIBRARY to its libmpi.so");
        var mpi = new OpenMpi(library);
        int provided;
        int code = mpi.initThread(null, 0, ThreadSerialized, &provided);
        if (code != 0) throw new WrenException($"MPI_Init_thread failed with error {code}: this rank cannot join the MPI job");
        return mpi;
    }

    public int Rank()
    {
        int rank;
        Check(commRank(World, &rank), "MPI_Comm_rank");
        return rank;
    }

    public int Size()
    {
        int size;
        Check(commSize(World, &size), "MPI_Comm_size");
        return size;
    }

    /// <summary>In-place MPI_Allreduce(MPI_SUM) of <paramref name="count"/> elements of <paramref name="type"/> at
    /// <paramref name="buffer"/>.</summary>
    public void AllreduceSum(nint buffer, int count, nint type) => Check(allreduce(InPlace, buffer, count, type, Sum, World),
                                                                          "MPI_Allreduce");

    public void Broadcast(nint buffer, int count, nint type, int root) => Check(bcast(buffer, count, type, root, World), "MPI_Bcast");

    public void Barrier() => Check(barrier(World), "MPI_Barrier");

    /// <summary>MPI_Abort on MPI_COMM_WORLD: mpirun ends every rank and exits with <paramref name="code"/>.</summary>
    public void Abort(int code) => abort(World, code);

    public void End() => Check(finalize(), "MPI_Finalize");

    static void Check(int code, string call)
    {
        if (code != 0) throw new InvalidOperationException($"{call} failed with MPI error {code}");
    }
}
