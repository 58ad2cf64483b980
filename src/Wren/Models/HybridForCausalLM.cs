using System.Buffers;
using TorchSharp;
using Wren.Kernels;
using Wren.Modules;
using Wren.Operators;
using static TorchSharp.torch;
using ModuleList = TorchSharp.Modules.ModuleList<Wren.Models.HybridDecoderLayer>;
using Parameter = TorchSharp.Modules.Parameter;

namespace Wren.Models;

/// <summary>Input of the language model.</summary>
/// <param name="InputIds">Token ids [B, T] (int64); no BOS is added, meta tokens are not ids.</param>
/// <param name="Cache">Null: a full parallel forward (training, scoring). Otherwise the tokens continue this cache and update it.</param>
/// <param name="LeftPad">With a cache: pad tokens at the start of each row [B] (ragged prompts); their logits are meaningless.</param>
/// <param name="LastPositionOnly">Compute logits for the last position only (generation).</param>
public sealed record LMInput(Tensor InputIds, ModelCache? Cache = null, Tensor? LeftPad = null, bool LastPositionOnly = false);

/// <summary>Float32 logits [B, T, V] (or [B, 1, V]).</summary>
public sealed record LMOutput(Tensor Logits);

/// <summary>
/// A hybrid causal LM with the exact Nemotron-Flash forward (the released modeling_nemotron_flash.py, NemotronFlashForCausalLM.forward):
/// embed → prepend meta tokens → layers → final RMSNorm → drop meta positions → <c>(h·W_lm[v]) / ‖W_lm[v]‖</c>; in the
/// released Hymba layout (modeling_hymba.py, HymbaForCausalLM.forward) the logits are a plain <c>h·W_lm[v]</c>.
/// State-dict names match the HF checkpoint (<c>model.…</c>, <c>lm_head.weight</c>).
/// </summary>
public sealed class HybridForCausalLM : nn.Module<LMInput, LMOutput>
{
    readonly HybridModel model;
    readonly Linear? lm_head;
    readonly Lock inferenceGate = new();
    Tensor? inverseRowNorms;   // 1/‖W_lm[v]‖, cached while weights are frozen
    ModelCache? metaTokenState; // the meta tokens' per-layer state, computed once per loaded model

    /// <summary>Prompts longer than this are prefilled chunk by chunk through the cache.</summary>
    public const int PrefillChunk = 1024;

    public HybridConfig Config { get; }
    public Placement Placement { get; }

    /// <summary>Builds the model with uninitialized weights: follow with <see cref="Initialization.Apply"/> or a checkpoint load.</summary>
    /// <summary>
    /// Refuses, before anything is allocated, a config whose weights alone exceed this machine's memory (sizes in config.json
    /// such as a huge <c>expand_v</c> or <c>proj_factor</c>): counted on the meta device, compared with the memory .NET sees.
    /// </summary>
    static void RequireMemory(HybridConfig config, Placement placement)
    {
        using var meta = new HybridForCausalLM(config, placement with { Device = new Device("meta") });
        long bytes = meta.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
        long physical = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > physical)
            throw new WrenException($"the model's weights need {bytes / 1e9:F1} GB but this machine has {physical / 1e9:F1} GB of " +
                                    "memory: check the sizes in config.json");
    }

    public HybridForCausalLM(HybridConfig config, Placement? placement = null) : base(nameof(HybridForCausalLM))
    {
        config.Validate();
        Config = config;
        Placement = placement ?? Placement.Cpu32;
        if (Placement.Device.type != DeviceType.META) RequireMemory(config, Placement);
        model = new HybridModel(config, Placement);
        register_module("model", model);
        if (!config.TieWordEmbeddings)
        {
            lm_head = new Linear(config.HiddenSize, config.VocabSize, Placement);
            register_module("lm_head", lm_head);
        }
    }

    /// <summary>
    /// Loads a Hugging Face model folder (<c>config.json</c> + <c>model.safetensors</c> or sharded safetensors with an
    /// index): builds the model from the config and fills every parameter, converting dtypes tensor by tensor, in eval
    /// mode. Missing, unexpected or mis-shaped tensors are <see cref="WrenException"/>s that name them; a tied config
    /// tolerates an extra <c>lm_head.weight</c> (the tie wins, as in HF). <paramref name="dtype"/>: float32, bfloat16 or
    /// float16. An int8 folder (see <see cref="FromPretrained(string, WeightPrecision, Device?)"/>) is dequantized.
    /// </summary>
    public static HybridForCausalLM FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        Checkpoints.Checkpoint.Load(folder, new Placement(dtype, device ?? CPU));

    /// <summary>
    /// Loads a model folder for inference with fp32 activations, norms, meta tokens and states, and the weight matrices
    /// (projections, embedding, lm_head) stored as <paramref name="weights"/>: float32, bf16 rounded, or int8 quantized
    /// while loading (one fp32 scale per 32 input values, Q8_0-like), one tensor at a time, so memory peaks at the
    /// target weights plus one source tensor. The folder may be fp32, bf16 or an int8 folder written by
    /// <see cref="SavePretrained"/> or <see cref="ConvertPretrained"/> (its values and scales are then used as stored);
    /// see docs/precision.md. Errors as <see cref="FromPretrained(string, ScalarType, Device?)"/>.
    /// </summary>
    public static HybridForCausalLM FromPretrained(string folder, WeightPrecision weights, Device? device = null) =>
        Checkpoints.Checkpoint.Load(folder, new Placement(ScalarType.Float32, device ?? CPU, weights));

    /// <summary>
    /// Writes config.json and the weights (in <paramref name="dtype"/>, default the model's; int8 matrices and their
    /// scales stay as they are) into <paramref name="folder"/>, every file atomically, in the Hugging Face layout
    /// <c>FromPretrained</c> reads. With <paramref name="maxShardBytes"/> &gt; 0 the weights are split into
    /// <c>model-0000i-of-0000n.safetensors</c> shards plus an index.
    /// </summary>
    public void SavePretrained(string folder, ScalarType? dtype = null, long maxShardBytes = 0) =>
        Checkpoints.Checkpoint.Save(this, folder, dtype, maxShardBytes);

    /// <summary>
    /// Writes the model folder <paramref name="source"/> into another folder <paramref name="target"/> with its matrices
    /// stored as <paramref name="weights"/> (e.g. an int8 folder that loads without the fp32 file), copying the folder's
    /// other files (tokenizer, generation config) as they are. Memory: the target weights plus one source tensor.
    /// </summary>
    public static void ConvertPretrained(string source, string target, WeightPrecision weights, long maxShardBytes = 0) =>
        Checkpoints.Checkpoint.Convert(source, target, weights, maxShardBytes);

    internal HybridModel Backbone => model;

    /// <summary>
    /// Installs <paramref name="observer"/> around every layer of every forward until the returned handle is disposed
    /// (one at a time): the profiler's per-layer hook, kept out of the model's inputs (llama.cpp's <c>cb</c>).
    /// </summary>
    public IDisposable Observe(ILayerObserver observer)
    {
        lock (inferenceGate)
        {
            if (model.Observer is not null) throw new InvalidOperationException("a layer observer is already installed on this model");
            model.Observer = observer;
        }
        return new Observation(model);
    }

    sealed class Observation(HybridModel model) : IDisposable
    {
        public void Dispose() => model.Observer = null;
    }
    public Tensor LmHeadWeight => lm_head?.Weight ?? model.EmbedTokens.Weight;
    /// <summary>The lm_head's int8 or 4-bit block scales, or null when it is not quantized.</summary>
    public Tensor? LmHeadScale => lm_head is null ? model.EmbedTokens.Scale : lm_head.Scale;

    public override LMOutput forward(LMInput input)
    {
        using var scope = NewDisposeScope();
        var ids = input.InputIds;
        long B = ids.shape[0], T = ids.shape[1];
        int M = Config.NumMemoryTokens;
        bool fused = input.Cache is not null && DecodeForm.FusesLayers(ids, Placement, FusedDecode);
        var h = fused ? model.EmbedTokens.LookupRows(ids) : model.EmbedTokens.forward(ids);    // [B, T, H]
        if (input.Cache is null)
        {
            if (input.LeftPad is not null) throw new ArgumentException("left padding needs a cache (see Generator)");
            if (M > 0) h = cat([model.MemoryTokens!.unsqueeze(0).expand(B, M, -1), h], 1);     // [B, M+T, H]
            var positions = arange(M + T, device: ids.device).unsqueeze(0).expand(B, -1);
            h = model.forward(new BackboneInput(h, positions, null, null));
            if (M > 0) h = h.narrow(1, M, T);
        }
        else if (T > PrefillChunk)
        {
            // Long prompts go through in chunks: the caches carry the state, and attention never materializes T×T scores.
            var pieces = new List<Tensor>();
            for (long start = 0; start < T; start += PrefillChunk)
            {
                long length = Math.Min(PrefillChunk, T - start);
                var chunkPad = input.LeftPad is null ? null : (input.LeftPad - start).clamp(0, length);
                bool last = start + length == T;
                var chunk = forward(input with { InputIds = ids.narrow(1, start, length), LeftPad = chunkPad });
                if (!input.LastPositionOnly || last) pieces.Add(chunk.Logits);
            }
            return new LMOutput(cat(pieces, 1).MoveToOuterDisposeScope());
        }
        else
        {
            var cache = input.Cache;
            using var padding = input.LeftPad is null ? null : new LeftPadding(input.LeftPad, T);
            var positions = cache.NextPosition.unsqueeze(1);                                    // real token n of the chunk at next+n
            if (T > 1 || padding is not null)
            {
                var offsets = arange(T, device: ids.device).unsqueeze(0);                      // [1, T]
                if (padding is not null) offsets = offsets - padding.Counts.unsqueeze(1);
                positions = positions + offsets;
            }
            h = model.forward(new BackboneInput(h, positions, padding, cache, InPlace: fused));
            cache.NextPosition.add_(padding is null ? T : (T - padding.Counts));
            if (fused) return new LMOutput(FusedHead(h, input.LastPositionOnly).MoveToOuterDisposeScope());
        }
        if (input.LastPositionOnly) h = h.narrow(1, h.shape[1] - 1, 1);
        h = model.FinalNorm.forward(h);
        var logits = Linear.Project(h, LmHeadWeight, LmHeadScale);
        if (!Config.HymbaLayout) logits = logits * LmHeadInverseNorms();
        return new LMOutput(logits.to(ScalarType.Float32).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Whether forwards through a cache may take the fused layer form (<see cref="DecodeForm.FusesLayers"/>; default on).
    /// Off, they run the libtorch-op form, which gives the same logits up to fp32 round-off (A/B measurements, tests).
    /// </summary>
    public bool FusedDecode { get; set; } = true;

    /// <summary>
    /// The fused head: the final norm of each row (of the last position only with <paramref name="lastOnly"/>) of h
    /// [B, T, H] into a scratch row, then one lm_head pass whose epilogue multiplies each chunk of logits by
    /// 1/‖W_lm[v]‖, written straight into the fp32 logits [B, T or 1, V]: no libtorch op but the allocation.
    /// </summary>
    unsafe Tensor FusedHead(Tensor h, bool lastOnly)
    {
        long B = h.shape[0], T = h.shape[1], H = h.shape[2], positions = lastOnly ? 1 : T, rows = B * positions;
        var head = MatVec.Bind(LmHeadWeight, LmHeadScale, "lm_head", Config.HiddenSize);
        long V = head.Rows;
        using var inverse = Config.HymbaLayout ? null : LmHeadInverseNorms();
        if (inverse is not null) KernelTensors.RequireInPlace(inverse, "lm_head inverse norms", ScalarType.Float32, V);
        KernelTensors.RequireInPlace(h, "hidden", ScalarType.Float32, B, T, H);
        var logits = empty([B, positions, V], ScalarType.Float32);
        float* hidden = KernelTensors.Floats(h), y = KernelTensors.Floats(logits);
        float* scale = inverse is null ? null : KernelTensors.Floats(inverse);
        var buffer = ArrayPool<float>.Shared.Rent(checked((int)(rows * H)));
        try
        {
            fixed (float* x = buffer)
            {
                for (long r = 0; r < rows; r++)
                {
                    long source = lastOnly ? (r + 1) * T - 1 : r;
                    model.FinalNorm.NormalizeInto(hidden + source * H, null, x + r * H, 1);
                }
                MatVec.MultiplyInto([head], x, rows, [(IntPtr)y], scale is null ? null : (first, end) =>
                {
                    for (long m = 0; m < rows; m++) MatVec.ScaleInto(y + m * V + first, scale + first, end - first);
                });
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
        return logits;
    }

    /// <summary>The released Nemotron-Flash forward divides every logit by the L2 norm of its lm_head row (Hymba's does not).</summary>
    Tensor LmHeadInverseNorms()
    {
        if (training) return LmHeadWeight.norm(1, keepdim: false, p: 2).reciprocal();
        lock (inferenceGate)
        {
            if (inverseRowNorms is null)
                using (no_grad())
                    inverseRowNorms = Linear.RowNorms(LmHeadWeight, LmHeadScale, Config.HiddenSize).reciprocal_().DetachFromDisposeScope();
            return inverseRowNorms.alias();
        }
    }

    /// <summary>
    /// A request cache for <paramref name="batch"/> rows and up to <paramref name="maxTokens"/> tokens per row
    /// (prompt + generated, left padding included in <paramref name="maxLeftPad"/>), starting after the meta tokens,
    /// whose state is copied from the once-computed meta-token state.
    /// </summary>
    public ModelCache NewCache(int batch, int maxTokens, int maxLeftPad = 0)
    {
        int M = Config.NumMemoryTokens;
        var cache = EmptyCache(new CacheShape(batch, M + maxTokens, maxLeftPad));
        if (M == 0) return cache;
        if (training)
        {
            using var fresh = ComputeMetaTokenState();   // weights are changing: nothing to reuse
            cache.CopyPrefixFrom(fresh);
        }
        else cache.CopyPrefixFrom(MetaTokenState());
        return cache;
    }

    /// <summary>
    /// A cache for <paramref name="batch"/> rows that all continue <paramref name="row"/> (a batch-1 cache), with room
    /// for <paramref name="maxTokens"/> tokens per row in all: n samples of one prompt, or a long-context throughput
    /// measurement without prefilling every row.
    /// </summary>
    public ModelCache NewCacheFrom(ModelCache row, int batch, int maxTokens)
    {
        if (row.Batch != 1) throw new ArgumentException("the source cache must hold one row", nameof(row));
        var cache = EmptyCache(new CacheShape(batch, Config.NumMemoryTokens + maxTokens));
        cache.CopyPrefixFrom(row);
        cache.NextPosition.copy_(row.NextPosition.expand(batch));
        return cache;
    }

    ModelCache EmptyCache(CacheShape shape)
    {
        var device = model.EmbedTokens.Weight.device;
        var states = model.Layers.Select(l => l.Mixer?.NewState(shape, device)).ToArray();
        return new ModelCache(states, shape, Config.NumMemoryTokens, device);
    }

    /// <summary>The meta tokens' state after every layer (batch 1), computed once per loaded model; every request starts from a
    /// copy.</summary>
    internal ModelCache MetaTokenState()
    {
        lock (inferenceGate) return metaTokenState ??= ComputeMetaTokenState();
    }

    ModelCache ComputeMetaTokenState()
    {
        int M = Config.NumMemoryTokens;
        var state = EmptyCache(new CacheShape(1, M));
        using (no_grad())
        using (NewDisposeScope())
        {
            var positions = arange(M, device: state.NextPosition.device).unsqueeze(0);
            model.forward(new BackboneInput(model.MemoryTokens!.unsqueeze(0), positions, null, state));
        }
        return state;
    }

    /// <summary>Forgets values derived from the weights (lm_head norms, meta-token state); call after changing weights.</summary>
    public void InvalidateInferenceCaches()
    {
        lock (inferenceGate)
        {
            inverseRowNorms?.Dispose();
            inverseRowNorms = null;
            metaTokenState?.Dispose();
            metaTokenState = null;
        }
    }

    public override void train(bool on = true)
    {
        base.train(on);
        InvalidateInferenceCaches();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) InvalidateInferenceCaches();
        base.Dispose(disposing);
    }
}

/// <summary>
/// Input of the layer stack: hidden states, positions, padding, the request cache (or null). With
/// <paramref name="InPlace"/> (the fused layer form, <see cref="DecodeForm.FusesLayers"/>) Hidden is a contiguous fp32
/// buffer the caller hands over: the layers update it in place and return it.
/// </summary>
internal sealed record BackboneInput(Tensor Hidden, Tensor Positions, LeftPadding? Padding, ModelCache? Cache, bool InPlace = false);

/// <summary>The <c>model.</c> part of the checkpoint: embeddings, meta tokens, decoder layers, final norm.</summary>
internal sealed class HybridModel : nn.Module<BackboneInput, Tensor>
{
    public Embedding EmbedTokens { get; }
    public Parameter? MemoryTokens { get; }
    public ModuleList Layers { get; }
    public RmsNorm FinalNorm { get; }

    /// <summary>The observer installed by <see cref="HybridForCausalLM.Observe"/>, or null.</summary>
    internal ILayerObserver? Observer { get; set; }

    public HybridModel(HybridConfig config, Placement placement) : base(nameof(HybridModel))
    {
        EmbedTokens = new Embedding(config.VocabSize, config.HiddenSize, placement);
        register_module("embed_tokens", EmbedTokens);
        if (config.NumMemoryTokens > 0)
        {
            MemoryTokens = placement.Empty(config.NumMemoryTokens, config.HiddenSize);
            register_parameter("memory_tokens", MemoryTokens);
        }
        Layers = new ModuleList(Enumerable.Range(0, config.NumLayers).Select(i => new HybridDecoderLayer(config, i, placement)).ToArray());
        register_module("layers", Layers);
        FinalNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, placement);
        register_module("final_layernorm", FinalNorm);
    }

    /// <summary>Runs every layer over [B, T, H] (no final norm), all sharing one <see cref="LayerCarry"/> for this forward.</summary>
    public override Tensor forward(BackboneInput input)
    {
        using var scope = NewDisposeScope();
        var h = input.Hidden;
        using var carry = new LayerCarry();
        for (int i = 0; i < Layers.Count; i++)
        {
            var observer = Observer;
            observer?.Entering(i);
            var layerInput = new MixerInput(h, input.Positions, input.Padding, input.Cache?.Layers[i], carry);
            if (input.InPlace) Layers[i].DecodeInPlace(layerInput);
            else h = Layers[i].forward(layerInput);
            observer?.Left(i, h);
        }
        return input.InPlace ? h : h.MoveToOuterDisposeScope();   // in place: h stays in the caller's scope
    }
}
