namespace Wren.Kernels;

/// <summary>
/// A minimal fork/join pool for the decode kernels: the caller runs part 0 and dedicated helper threads run the
/// rest. Helpers spin briefly after each job (decode issues ~100 small jobs per token, microseconds apart) and
/// then sleep, so they do not steal a core from libtorch between tokens. Parallel.For's dispatch latency and
/// work stealing were measured to cost more than the job itself at these sizes.
/// </summary>
internal static class Workers
{
    const int SpinIterations = 20_000;

    sealed class Helper
    {
        public readonly SemaphoreSlim Wake = new(0);
        public volatile int Generation, Completed, Sleeping;
        public Action<int>? Job;
        public int Part;
    }

    static readonly Lock Gate = new();

    /// <summary>How many parts the kernels split work into: one per core (the helpers sleep when idle).</summary>
    public static int Count { get; } = Environment.ProcessorCount;
    static Helper[] helpers = [];

    /// <summary>Runs <paramref name="body"/>(0 … parts−1) in parallel and returns when all are done. Not reentrant.</summary>
    public static void Run(int parts, Action<int> body)
    {
        if (parts <= 1) { body(0); return; }
        lock (Gate)
        {
            EnsureHelpers(parts - 1);
            for (int i = 0; i < parts - 1; i++)
            {
                var h = helpers[i];
                h.Job = body;
                h.Part = i + 1;
                h.Generation++;
                if (h.Sleeping == 1) h.Wake.Release();
            }
            body(0);
            for (int i = 0; i < parts - 1; i++)
            {
                var h = helpers[i];
                var spin = new SpinWait();
                while (h.Completed != h.Generation) spin.SpinOnce(sleep1Threshold: -1);
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
            for (int spins = 0; h.Generation == seen && spins < SpinIterations; spins++) Thread.SpinWait(8);
            if (h.Generation == seen)
            {
                h.Sleeping = 1;
                if (h.Generation == seen) h.Wake.Wait();
                h.Sleeping = 0;
                continue;
            }
            seen = h.Generation;
            h.Job!(h.Part);
            h.Completed = seen;
        }
    }
}
