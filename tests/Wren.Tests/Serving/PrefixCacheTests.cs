using TorchSharp;
using Wren.Serving;
using static TorchSharp.torch;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Serving;

/// <summary>The prefix tree's rules: whole blocks only, one token always left to compute, LRU leaves out first, a byte bound.</summary>
public class PrefixCacheTests
{
    const int Block = 2;
    const long NodeBytes = 4 * 10;   // one float32 [10] tensor per snapshot

    static PrefixState State(long end) => new([[zeros(10).DetachFromDisposeScope()]], end);

    static int[] Tokens(params int[] ids) => ids;

    static void AddAll(PrefixCache cache, int[] prompt)
    {
        for (int k = 0; (k + 1) * Block <= prompt.Length; k++) cache.Add(prompt, k, () => State((k + 1) * Block));
    }

    [Fact]
    public void Lookup_returns_whole_cached_blocks_and_leaves_a_token_to_compute()
    {
        using var cache = new PrefixCache(100 * NodeBytes, Block);
        AddAll(cache, Tokens(1, 2, 3, 4, 5, 6));
        Assert.Equal(3, cache.Count);
        Assert.Equal([2L, 4L], cache.Lookup(Tokens(1, 2, 3, 4, 5, 6)).Select(s => s.End));          // block 3 would leave nothing
        Assert.Equal([2L, 4L, 6L], cache.Lookup(Tokens(1, 2, 3, 4, 5, 6, 7)).Select(s => s.End));
        Assert.Equal([2L], cache.Lookup(Tokens(1, 2, 3, 9, 5, 6, 7)).Select(s => s.End));             // diverges in block 2
        Assert.Empty(cache.Lookup(Tokens(9, 2, 3)));
    }

    [Fact]
    public void The_least_recently_used_leaf_goes_first_and_bytes_stay_bounded()
    {
        using var cache = new PrefixCache(4 * NodeBytes, Block);
        AddAll(cache, Tokens(1, 1, 2, 2));              // a → a/b
        AddAll(cache, Tokens(1, 1, 3, 3));              // a → a/c
        cache.Lookup(Tokens(1, 1, 2, 2, 0));             // a/b used again: a/c is now the oldest leaf
        AddAll(cache, Tokens(7, 7, 8, 8));              // two more nodes: one must go
        Assert.Equal(4, cache.Count);
        Assert.True(cache.Bytes <= cache.Capacity);
        Assert.Equal(2, cache.Lookup(Tokens(1, 1, 2, 2, 0)).Count);
        Assert.Single(cache.Lookup(Tokens(1, 1, 3, 3, 0)));                                            // a/c was evicted, a kept
        Assert.Equal(2, cache.Lookup(Tokens(7, 7, 8, 8, 0)).Count);
    }

    [Fact]
    public void A_block_whose_parent_was_evicted_is_not_stored_and_eviction_frees_tensors()
    {
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var cache = new PrefixCache(2 * NodeBytes, Block))
        {
            AddAll(cache, Tokens(1, 1, 2, 2, 3, 3));    // the third block evicts… only a leaf not on its own path: none, so it is refused
            Assert.Equal(2, cache.Count);
            Assert.False(cache.Add(Tokens(5, 5, 6, 6), 1, () => State(4)));                           // parent (5, 5) is not cached
            for (int i = 0; i < 10; i++) AddAll(cache, Tokens(i + 10, i, i, i));
            Assert.True(cache.Bytes <= cache.Capacity);
        }
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
