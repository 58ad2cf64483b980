using Prometheus;

namespace Wren.Serving;

/// <summary>
/// The server's Prometheus metrics (prometheus-net), in a registry of their own so that several servers in one
/// process do not mix: requests by status, prompt and generated tokens, queue depth, running batch size, time to
/// first token and inter-token latency, prefix-cache hits, tokens per engine step, prompts prefilling and
/// preemptions.
/// </summary>
public sealed class ServingMetrics
{
    readonly CollectorRegistry registry = Metrics.NewCustomRegistry();

    public ServingMetrics()
    {
        var factory = Metrics.WithCustomRegistry(registry);
        var latencyBuckets = new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 16) };
        Requests = factory.CreateCounter("wren_requests_total", "HTTP API requests by status code",
                                         new CounterConfiguration { LabelNames = ["status"] });
        PromptTokens = factory.CreateCounter("wren_prompt_tokens_total", "Prompt tokens of finished requests");
        GeneratedTokens = factory.CreateCounter("wren_generated_tokens_total", "Generated tokens");
        QueueDepth = factory.CreateGauge("wren_queue_depth", "Requests waiting for a slot");
        RunningBatch = factory.CreateGauge("wren_running_batch_size", "Requests decoding in the running batch");
        TimeToFirstToken = factory.CreateHistogram("wren_time_to_first_token_seconds", "Time from arrival to the first token",
                                                   latencyBuckets);
        InterTokenLatency = factory.CreateHistogram("wren_inter_token_latency_seconds", "Time between consecutive tokens of a request",
                                                    latencyBuckets);
        PrefixCacheHits = factory.CreateCounter("wren_prefix_cache_hits_total", "Requests that started from a cached prefix state");
        PrefixCacheMisses = factory.CreateCounter("wren_prefix_cache_misses_total", "Requests that found no cached prefix state");
        PrefixCacheHitTokens = factory.CreateCounter("wren_prefix_cache_hit_tokens_total",
                                                     "Prompt tokens not prefilled thanks to the prefix cache");
        PrefixCacheBytes = factory.CreateGauge("wren_prefix_cache_bytes", "Bytes held by the prefix-state cache");
        PrefillingPrompts = factory.CreateGauge("wren_prefilling_prompts", "Prompts holding a staging slot while they prefill");
        BatchedTokens = factory.CreateHistogram("wren_batched_tokens_per_step",
                                                "Tokens run in one engine step: one per decoding request plus the prefill chunks",
                                                new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 14) });
        Preemptions = factory.CreateCounter("wren_preemptions_total",
                                            "Running requests evicted to make room (always 0: new prompts wait instead)");
    }

    public Counter Requests { get; }
    public Counter PromptTokens { get; }
    public Counter GeneratedTokens { get; }
    public Gauge QueueDepth { get; }
    public Gauge RunningBatch { get; }
    public Histogram TimeToFirstToken { get; }
    public Histogram InterTokenLatency { get; }
    public Counter PrefixCacheHits { get; }
    public Counter PrefixCacheMisses { get; }
    public Counter PrefixCacheHitTokens { get; }
    public Gauge PrefixCacheBytes { get; }
    public Gauge PrefillingPrompts { get; }
    public Histogram BatchedTokens { get; }
    /// <summary>Stays 0: the engine never evicts a running request; prompts wait for a slot instead.</summary>
    public Counter Preemptions { get; }

    /// <summary>Writes every metric in the Prometheus text exposition format.</summary>
    public Task WriteAsync(Stream destination, CancellationToken cancel = default) =>
        registry.CollectAndExportAsTextAsync(destination, cancel);
}
