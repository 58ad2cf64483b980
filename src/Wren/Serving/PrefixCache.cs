namespace Wren.Serving;

/// <summary>
/// Slot states after token prefixes, as a tree of fixed-size blocks of prompt tokens (block k covers prompt tokens
/// [k·C, (k+1)·C)): a node holds the state after its block (<see cref="PrefixState"/>), its parent the block before.
/// Because prefill runs in chunks aligned to the same blocks, a request that starts from a node computes exactly what a
/// cold prefill computes from there. Least recently used leaves are evicted to stay within <see cref="Capacity"/>
/// bytes (a node is touched after its descendants, so the least recent node never has children). Engine thread only.
/// </summary>
internal sealed class PrefixCache(long capacityBytes, int block) : IDisposable
{
    sealed class Node(Node? parent, int[] tokens, PrefixState? state)
    {
        public Node? Parent { get; } = parent;
        public int[] Tokens { get; } = tokens;
        public PrefixState? State { get; } = state;
        public Dictionary<int[], Node> Children { get; } = new(BlockComparer.Instance);
        public LinkedListNode<Node>? Recency { get; set; }
    }

    readonly Node root = new(null, [], null);
    readonly LinkedList<Node> recency = new();   // most recent first

    public long Capacity { get; } = capacityBytes;
    public int Block { get; } = block;
    public long Bytes { get; private set; }
    public int Count => recency.Count;

    /// <summary>
    /// The longest cached chain of whole blocks that is a prefix of <paramref name="prompt"/> and leaves at least one
    /// token to compute (the last position's logits are needed), oldest block first; empty when nothing is cached.
    /// </summary>
    public IReadOnlyList<PrefixState> Lookup(IReadOnlyList<int> prompt)
    {
        var chain = new List<Node>();
        var node = root;
        for (int start = 0; start + Block < prompt.Count; start += Block)
        {
            if (!node.Children.TryGetValue(BlockAt(prompt, start), out var child)) break;
            chain.Add(child);
            node = child;
        }
        Touch(node);
        return chain.Select(n => n.State!).ToList();
    }

    /// <summary>
    /// Stores the state after block <paramref name="index"/> of <paramref name="prompt"/> (its parent block must be cached);
    /// <paramref name="snapshot"/> is called only when the block is new and fits. Returns false when it could not be kept.
    /// </summary>
    public bool Add(IReadOnlyList<int> prompt, int index, Func<PrefixState> snapshot)
    {
        var node = root;
        for (int k = 0; k <= index; k++)
        {
            var tokens = BlockAt(prompt, k * Block);
            if (node.Children.TryGetValue(tokens, out var child)) { node = child; continue; }
            if (k < index) return false;   // a parent was evicted: this block can never be looked up
            var state = snapshot();
            if (state.Bytes > Capacity) { state.Dispose(); return false; }
            while (Bytes + state.Bytes > Capacity && EvictOne(keep: node)) { }
            if (Bytes + state.Bytes > Capacity) { state.Dispose(); return false; }
            child = new Node(node, tokens, state);
            node.Children.Add(tokens, child);
            Bytes += state.Bytes;
            node = child;
        }
        Touch(node);
        return true;
    }

    int[] BlockAt(IReadOnlyList<int> prompt, int start)
    {
        var tokens = new int[Block];
        for (int i = 0; i < Block; i++) tokens[i] = prompt[start + i];
        return tokens;
    }

    /// <summary>Marks <paramref name="node"/> and its ancestors used, the ancestors after it.</summary>
    void Touch(Node node)
    {
        for (var n = node; n != root && n is not null; n = n.Parent)
        {
            if (n.Recency is not null) recency.Remove(n.Recency);
            n.Recency = recency.AddFirst(n);
        }
    }

    bool EvictOne(Node keep)
    {
        for (var entry = recency.Last; entry is not null; entry = entry.Previous)
        {
            var node = entry.Value;
            if (node.Children.Count > 0 || IsOnPath(node, keep)) continue;
            recency.Remove(entry);
            node.Parent!.Children.Remove(node.Tokens);
            Bytes -= node.State!.Bytes;
            node.State.Dispose();
            return true;
        }
        return false;
    }

    static bool IsOnPath(Node node, Node descendant)
    {
        for (var n = descendant; n is not null; n = n.Parent) if (n == node) return true;
        return false;
    }

    public void Dispose()
    {
        foreach (var node in recency) node.State!.Dispose();
        recency.Clear();
        root.Children.Clear();
        Bytes = 0;
    }

    sealed class BlockComparer : IEqualityComparer<int[]>
    {
        public static readonly BlockComparer Instance = new();
        public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(int[] tokens)
        {
            var hash = new HashCode();
            hash.AddBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan()));
            return hash.ToHashCode();
        }
    }
}
