using Wren.Kernels;

namespace Wren.Tests.Kernels;

/// <summary>The decode kernels' fork/join: every unit runs once, and a stalled thread does not hold up the others' work.</summary>
public class WorkersTests
{
    [Theory]
    [InlineData(1000, 7, 2)]
    [InlineData(5, 8, 4)]
    [InlineData(64, 64, 2)]
    public void Every_index_runs_exactly_once(long count, int chunks, int threads)
    {
        var hits = new int[count];
        for (int round = 0; round < 50; round++)
            Workers.For(count, chunks, threads, (begin, end) => { for (long i = begin; i < end; i++) Interlocked.Increment(ref hits[i]); });
        Assert.All(hits, h => Assert.Equal(50, h));
    }

    [Fact]
    public async Task A_stalled_thread_leaves_its_share_to_the_others()
    {
        if (Workers.Count < 2) return;   // one core: no helper to stall
        // The first chunk claimed stalls until the 7 others are done. With a fixed split (4 chunks per thread) the
        // stalled thread would own 3 of them and this would time out; with claiming, the other thread takes all 7.
        const int chunks = 8;
        int done = 0, first = 0;
        var othersDone = new ManualResetEventSlim(false);
        bool timedOut = false;
        var run = Task.Run(() => Workers.For(chunks, chunks, 2, (begin, end) =>
        {
            if (Interlocked.Exchange(ref first, 1) == 0) timedOut = !othersDone.Wait(TimeSpan.FromSeconds(20));
            else if (Interlocked.Increment(ref done) == chunks - 1) othersDone.Set();
        }));
        await run.WaitAsync(TimeSpan.FromSeconds(30));   // throws if the fork/join never returns
        Assert.False(timedOut, "the other chunks waited for the stalled thread");
        Assert.Equal(chunks - 1, done);
    }
}
