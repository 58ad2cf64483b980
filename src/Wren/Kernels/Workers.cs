using System.Diagnostics;

namespace Wren.Kernels;

/// <summary>
/// A minimal fork/join pool for the decode kernels. Work is cut into chunks that the caller and dedicated helper
/// threads claim from an atomic counter, so a helper that is not running (its core busy with another process) never
/// holds up the job: the caller takes the chunks it would have run, and waits only for chunks already started,
/// spinning for at most 50 µs and then blocking on an event (which lets a descheduled helper run on the caller's
/// core). Helpers wait for the next job (decode issues ~100 small jobs per token, microseconds apart) by yielding the
/// core (<c>sched_yield</c>) a bounded number of times and then sleep, so they do not steal a core from libtorch between
/// tokens. Yielding rather than pause-spinning: on an idle machine a yield returns at once, so a new job is seen within
/// a microsecond, but when another process wants the core the waiting helper gives it up instead of taking time from
/// the thread on the critical path (measured, flash-300m decode with one busy process on the 2 cores: 2.2–2.7× slower
/// than idle with pause-spinning, 1.4–1.7× with yielding; idle speed unchanged; docs/benchmarks.md). Parallel.For's
/// dispatch latency was measured to cost more than the job itself at these sizes.
/// </summary>
internal static class Workers
{
    const int SpinIterations = 20_000;

    /// <summary>How long the caller spins for chunks still running before it blocks: 50 µs.</summary>
    static readonly long SpinTicks = Stopwatch.Frequency / 20_000;

    /// <summary>One fork/join: chunk i covers [count·i/chunks, count·(i+1)/chunks).</summary>
    sealed class Job(Action<long, long> body, long count, int chunks)
    {
        int next = -1, finished;

        /// <summary>Claims and runs chunks until none are left; true if this call finished the job's last chunk.</summary>
        public bool Work()
        {
            bool last = false;
            for (int i; (i = Interlocked.Increment(ref next)) < chunks;)
            {
                body(count * i / chunks, count * (i + 1) / chunks);
                last = Interlocked.Increment(ref finished) == chunks;
            }
            return last;
        }

        public bool Finished => Volatile.Read(ref finished) == chunks;
    }

    sealed class Helper
    {
        public readonly SemaphoreSlim Wake = new(0);
        public int Generation, Sleeping;
    }

    static readonly Lock Gate = new();
    static readonly ManualResetEventSlim Done = new(false, spinCount: 20);
    static Job? current;

    /// <summary>How many threads the kernels use: one per core (the helpers sleep when idle).</summary>
    public static int Count { get; } = Environment.ProcessorCount;
    static Helper[] helpers = [];

    /// <summary>Runs <paramref name="body"/>(0 … parts−1) in parallel and returns when all are done. Not reentrant.</summary>
    public static void Run(int parts, Action<int> body) =>
        For(parts, parts, parts, (begin, end) => { for (long p = begin; p < end; p++) body((int)p); });

    /// <summary>
    /// Runs <paramref name="body"/>(begin, end) over [0, <paramref name="count"/>) cut into <paramref name="chunks"/>
    /// contiguous ranges, on at most <paramref name="threads"/> threads (the caller included), and returns when every
    /// range is done. Not reentrant.
    /// </summary>
    public static void For(long count, int chunks, int threads, Action<long, long> body)
    {
        chunks = (int)Math.Min(chunks, Math.Max(count, 1));
        threads = Math.Min(Math.Min(threads, chunks), Count);
        if (threads <= 1) { body(0, count); return; }
        lock (Gate)
        {
            var job = new Job(body, count, chunks);
            Volatile.Write(ref current, job);
            EnsureHelpers(threads - 1);
            for (int i = 0; i < threads - 1; i++)
            {
                var h = helpers[i];
                Interlocked.Increment(ref h.Generation);
                if (Volatile.Read(ref h.Sleeping) == 1) h.Wake.Release();
            }
            job.Work();
            var spin = new SpinWait();                       // a chunk still running usually ends within microseconds
            for (long end = Stopwatch.GetTimestamp() + SpinTicks; !job.Finished && Stopwatch.GetTimestamp() < end;)
                spin.SpinOnce(sleep1Threshold: -1);
            while (!job.Finished)                            // longer: its thread is not running; block, freeing this core
            {
                Done.Reset();                                // a late Set from an earlier job only wakes us once more
                if (job.Finished) break;
                Done.Wait();
            }
        }
    }

    static void EnsureHelpers(int count)
    {
        if (helpers.Length >= count) return;
        var grown = new Helper[count];
        Array.Copy(helpers, grown, helpers.Length);
        for (int i = helpers.Length; i < count; i++)
        {
            var h = grown[i] = new Helper();
            new Thread(() => Loop(h)) { IsBackground = true, Name = $"wren-kernel-{i + 1}" }.Start();
        }
        helpers = grown;
    }

    static void Loop(Helper h)
    {
        int seen = 0;
        while (true)
        {
            for (int spins = 0; Volatile.Read(ref h.Generation) == seen && spins < SpinIterations; spins++) Thread.Yield();
            if (Volatile.Read(ref h.Generation) == seen)
            {
                Interlocked.Exchange(ref h.Sleeping, 1);               // a full fence: the caller sees it or we see its new generation
                if (Volatile.Read(ref h.Generation) == seen) h.Wake.Wait();
                Interlocked.Exchange(ref h.Sleeping, 0);
                continue;
            }
            seen = Volatile.Read(ref h.Generation);
            if (Volatile.Read(ref current)!.Work()) Done.Set();        // a stale job has no chunks left: nothing runs
        }
    }
}
