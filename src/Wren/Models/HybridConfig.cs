using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Wren.Checkpoints;

namespace Wren.Models;

/// <summary>
/// A hybrid model's shape, read from and written to a Hugging Face Nemotron-Flash <c>config.json</c>.
/// Keys the Nemotron-Flash code ignores are kept in <see cref="Extra"/> so a config round-trips unchanged.
/// Wren's own operators (e.g. "gdn") use the same keys plus those prefixed <c>wren_</c>.
/// </summary>
public sealed record HybridConfig
{
    [JsonPropertyName("layer_types")] public List<string> LayerTypes { get; init; } = [];
    /// <summary>"hymba" for a released Hymba config (modeling_hymba.py's <c>HymbaForCausalLM</c>): a plain lm_head (no division
    /// by its row norms), each layer's FFN under <c>moe.experts.0</c> after <c>pre_moe_layernorm</c>; null or another value for
    /// the Nemotron-Flash layout.</summary>
    [JsonPropertyName("model_type"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ModelType { get; init; }
    [JsonPropertyName("num_hidden_layers")] public int? NumHiddenLayers { get; init; }
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; }
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; }
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; init; }
    [JsonPropertyName("attn_hidden_size")] public int AttnHiddenSize { get; init; } = -1;
    [JsonPropertyName("kq_head_dim")] public int KqHeadDim { get; init; } = -1;
    [JsonPropertyName("v_head_dim")] public int VHeadDim { get; init; } = -1;
    [JsonPropertyName("kq_norm")] public string? KqNorm { get; init; }
    [JsonPropertyName("rope")] public bool Rope { get; init; }
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;
    [JsonPropertyName("rope_type")] public string? RopeType { get; init; }
    [JsonPropertyName("max_position_embeddings")] public int? MaxPositionEmbeddings { get; init; }
    [JsonPropertyName("orig_max_position_embeddings")] public int? OrigMaxPositionEmbeddings { get; init; }
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;
    [JsonPropertyName("mamba_d_state")] public int MambaDState { get; init; } = 16;
    [JsonPropertyName("mamba_d_conv")] public int MambaDConv { get; init; } = 4;
    [JsonPropertyName("mamba_expand")] public int MambaExpand { get; init; } = 2;
    [JsonPropertyName("mamba2_headdim")] public int Mamba2HeadDim { get; init; } = 64;
    /// <summary>Mamba-1's Δ rank (mamba_ssm's <c>dt_rank</c>, Hymba's key); null: mamba_ssm's "auto", ⌈hidden_size / 16⌉.</summary>
    [JsonPropertyName("mamba_dt_rank")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? MambaDtRank { get; init; }
    /// <summary>Hymba: a bias on the Mamba conv (null: true, as released).</summary>
    [JsonPropertyName("mamba_conv_bias")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? MambaConvBias { get; init; }
    /// <summary>Hymba: biases on in_proj and out_proj (null: false, as released; true is refused).</summary>
    [JsonPropertyName("mamba_proj_bias")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? MambaProjBias { get; init; }
    /// <summary>Hymba: RMSNorms on the Mamba heads' dt, B and C (null: false).</summary>
    [JsonPropertyName("mamba_inner_layernorms")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? MambaInnerLayernorms { get; init; }
    /// <summary>Wren extension: Mamba2 B/C groups (the Nemotron-Flash code fixes this to 1).</summary>
    [JsonPropertyName("wren_mamba_ngroups")] public int MambaNGroups { get; init; } = 1;
    /// <summary>GLA (fla's GLAConfig): key width int(hidden_size·expand_k) and value width int(hidden_size·expand_v) over
    /// num_attention_heads heads.</summary>
    [JsonPropertyName("expand_k")] public double ExpandK { get; init; } = 0.5;
    [JsonPropertyName("expand_v")] public double ExpandV { get; init; } = 1.0;
    /// <summary>mLSTM (xLSTM's mLSTMLayerConfig): inner width ⌈proj_factor·hidden_size / round_proj_up_to_multiple_of⌉ ·
    /// round_proj_up_to_multiple_of, q/k/v block-diagonal in blocks of qkv_proj_blocksize, a causal conv of conv1d_kernel_size.
    /// </summary>
    [JsonPropertyName("proj_factor")] public double ProjFactor { get; init; } = 2.0;
    [JsonPropertyName("round_proj_up_to_multiple_of")] public int RoundProjUpToMultipleOf { get; init; } = 64;
    [JsonPropertyName("qkv_proj_blocksize")] public int QkvProjBlocksize { get; init; } = 4;
    [JsonPropertyName("conv1d_kernel_size")] public int Conv1dKernelSize { get; init; } = 4;
    /// <summary>RWKV-7 LoRA ranks under fla's RWKV7Config keys (w, g, a, v); null: fla's layer default from hidden size and head
    /// width (<see cref="Operators.Rwkv7"/>).</summary>
    [JsonPropertyName("decay_low_rank_dim"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DecayLowRankDim { get; init; }
    [JsonPropertyName("gate_low_rank_dim"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? GateLowRankDim { get; init; }
    [JsonPropertyName("a_low_rank_dim"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? ALowRankDim { get; init; }
    [JsonPropertyName("v_low_rank_dim"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? VLowRankDim { get; init; }
    [JsonPropertyName("ffn_expand_ratio")] public double? FfnExpandRatio { get; init; }
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; }
    /// <summary>Wren extension: the multiple the FFN width from ffn_expand_ratio is rounded down to; null: 128, the released
    /// rule. The operator study sets a finer step so that small models can match a parameter count within ±2 %.</summary>
    [JsonPropertyName("wren_ffn_multiple_of"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? FfnMultipleOf { get; init; }
    [JsonPropertyName("mlp_hidden_act")] public string MlpHiddenAct { get; init; } = "silu";
    [JsonPropertyName("num_memory_tokens")] public int NumMemoryTokens { get; init; }
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; }
    [JsonPropertyName("global_attn_idx")] public List<int>? GlobalAttnIdx { get; init; }
    /// <summary>Hymba's cross-layer KV sharing (configuration_hymba.py, modeling_hymba.py's <c>HymbaModel</c>): groups of hymba
    /// layer indices whose first layer (the producer) computes k/v, after k_norm and RoPE, for the later ones (the consumers),
    /// which have no k/v rows in in_proj and no KV cache of their own (<see cref="KvSourceOf"/>).</summary>
    [JsonPropertyName("kv_reuse_group"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<List<int>>? KvReuseGroup { get; init; }
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }
    [JsonPropertyName("attn_implementation_new")] public string AttnImplementation { get; init; } = "flash_attention_2";
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; }
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }
    [JsonPropertyName("eos_token_id")] public JsonNode? EosTokenId { get; init; }
    /// <summary>Wren extension: a tiktoken encoding name ("cl100k_base", "o200k_base") used when the folder has no
    /// tokenizer.json.</summary>
    [JsonPropertyName("wren_tiktoken_encoding")] public string? TiktokenEncoding { get; init; }

    /// <summary>Every other key of the file, written back unchanged.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    // ---- derived sizes (the released modeling_nemotron_flash.py) ----
    [JsonIgnore] public int KvHeads => NumKeyValueHeads ?? NumAttentionHeads;
    [JsonIgnore] public int AttnQkHeadDim => KqHeadDim > 0 ? KqHeadDim : HiddenSize / NumAttentionHeads;
    [JsonIgnore] public int AttnVHeadDim => VHeadDim > 0 ? VHeadDim : HiddenSize / NumAttentionHeads;
    [JsonIgnore] public int MambaDInner => MambaExpand * HiddenSize;
    [JsonIgnore] public int MambaHeads => MambaDInner / Mamba2HeadDim;
    [JsonIgnore] public int MambaTimestepRank => MambaDtRank ?? (HiddenSize + 15) / 16;
    [JsonIgnore] public int LinearHeadDim => HiddenSize / NumAttentionHeads;
    [JsonIgnore] public int NumLayers => LayerTypes.Count;
    /// <summary>True for the released Hymba layout (<see cref="ModelType"/> "hymba").</summary>
    [JsonIgnore] public bool HymbaLayout => ModelType == "hymba";

    /// <summary>The layer whose keys and values layer <paramref name="layer"/> attends over: the producer of its kv_reuse_group,
    /// or the layer itself.</summary>
    public int KvSourceOf(int layer) => KvReuseGroup?.FirstOrDefault(g => g is { Count: > 1 } && g.Skip(1).Contains(layer))?[0] ?? layer;

    /// <summary>True when a later layer of a kv_reuse_group reads the keys and values of <paramref name="layer"/>.</summary>
    public bool SharesKv(int layer) => KvReuseGroup?.Any(g => g is { Count: > 1 } && g[0] == layer) ?? false;

    /// <summary>FFN width: <c>int(ratio·H) // 128 · 128</c> when ffn_expand_ratio is set (128 or <see cref="FfnMultipleOf"/>),
    /// else intermediate_size.</summary>
    [JsonIgnore]
    public int FfnSize => FfnExpandRatio is { } ratio ? (int)(ratio * HiddenSize) / FfnStep * FfnStep : IntermediateSize;

    [JsonIgnore] int FfnStep => FfnMultipleOf ?? 128;

    /// <summary>intermediate_size &gt; 0 gives every mixer layer its own FFN sub-block as well.</summary>
    [JsonIgnore] public bool MixerLayersHaveFfn => IntermediateSize > 0;

    /// <summary>True when layer <paramref name="layer"/> has an FFN sub-block: FFN-only layers, and every layer when <see
    /// cref="MixerLayersHaveFfn"/>.</summary>
    public bool HasFfn(int layer) => OperatorRegistry.Of(this, layer).Create is null || MixerLayersHaveFfn;

    /// <summary>Sliding window of attention layer <paramref name="layer"/>, or null for full attention.</summary>
    /// <remarks>The released "fused_mha" attention ignores sliding_window (the released modeling_nemotron_flash.py), so it does here
    /// too.</remarks>
    public int? WindowOf(int layer) =>
        SlidingWindow is { } w && AttnImplementation != "fused_mha" && !(GlobalAttnIdx ?? []).Contains(layer) ? w : null;

    /// <summary>
    /// This config with a sliding window on the <paramref name="windowed"/> layers only: every other layer whose cost grows with
    /// the context (attention, Hymba) is listed in global_attn_idx. No windowed layer: no window at all.
    /// </summary>
    public HybridConfig WithWindowOn(IReadOnlyCollection<int> windowed, int window)
    {
        if (windowed.Count == 0) return this with { SlidingWindow = null, GlobalAttnIdx = [] };
        var global = Enumerable.Range(0, NumLayers)
            .Where(i => !windowed.Contains(i) && OperatorRegistry.Of(this, i).CostGrowsWithContext).ToList();
        return this with { SlidingWindow = window, GlobalAttnIdx = global };
    }

    /// <summary>
    /// This config with other layers and width, keeping head widths (attention, DeltaNet, Mamba2), the KV grouping
    /// and the FFN ratio: the shape family a depth–width study or an architecture search moves through.
    /// </summary>
    public HybridConfig WithShape(IReadOnlyList<string> layerTypes, int hiddenSize)
    {
        int headDim = HiddenSize / NumAttentionHeads;
        if (hiddenSize % headDim != 0) throw new WrenException($"width {hiddenSize} is not a multiple of the head dimension {headDim}");
        int heads = hiddenSize / headDim, group = NumAttentionHeads / KvHeads;
        var shaped = this with
        {
            LayerTypes = layerTypes.ToList(),
            NumHiddenLayers = layerTypes.Count,
            HiddenSize = hiddenSize,
            NumAttentionHeads = heads,
            NumKeyValueHeads = Math.Max(1, heads / group),
            IntermediateSize = FfnExpandRatio is null
                && IntermediateSize > 0 ? (int)((long)IntermediateSize * hiddenSize / HiddenSize) : IntermediateSize,
            GlobalAttnIdx = GlobalAttnIdx is null ? null : [],
        };
        shaped.Validate($"{layerTypes.Count} layers at width {hiddenSize}");
        return shaped;
    }

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    /// <summary>Parses and validates a config.json text.</summary>
    public static HybridConfig Parse(string json, string source = "config.json")
    {
        var obj = StrictJson.ParseObject(json, source);
        if (obj["model_type"]?.GetValueKind() == JsonValueKind.String && (string?)obj["model_type"] == "hymba") FromHymba(obj, source);
        foreach (var required in new[] { "layer_types", "hidden_size", "vocab_size", "num_attention_heads" })
            if (!obj.ContainsKey(required) || obj[required] is null)
                throw new WrenException($"{source}: missing required key '{required}'" +
                                        (required == "layer_types" && obj["model_type"] is { } type
                                            ? $" (model_type {type.ToJsonString()} is not one Wren maps: \"hymba\" configs are mapped, " +
                                              "Nemotron-Flash configs carry layer_types)"
                                            : ""));
        HybridConfig config;
        try { config = obj.Deserialize<HybridConfig>(JsonOptions)!; }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NotSupportedException
                                       or ArgumentException)
        {
            throw new WrenException($"{source}: a key has the wrong type ({e.Message.Split('\n')[0]})", e);
        }
        config.Validate(source);
        return config;
    }

    /// <summary>
    /// Maps a released Hymba config.json (<c>"model_type": "hymba"</c>, configuration_hymba.py) onto Wren's keys in place:
    /// no <c>layer_types</c> → one "hymba" layer per <c>num_hidden_layers</c> (the released <c>layer_type</c> entries must
    /// all be "h", hybrid heads); <c>mamba_dt_rank</c> "auto" → absent (⌈hidden_size / 16⌉); <c>attn_implementation_new</c>
    /// "flex" → the window rule of <see cref="WindowOf"/> (with the meta tokens always in view, <see cref="Operators.Hymba"/>);
    /// <c>kv_reuse_every_i_layer</c> n (when there is no kv_reuse_group) → groups of n consecutive layers. Every other key keeps
    /// its Nemotron-Flash meaning.
    /// </summary>
    static void FromHymba(JsonObject obj, string source)
    {
        if (obj["layer_types"] is null)
        {
            if (obj["num_hidden_layers"]?.GetValueKind() != JsonValueKind.Number)
                throw new WrenException($"{source}: a Hymba config needs num_hidden_layers (a number)");
            int n = (int)obj["num_hidden_layers"]!;
            if (obj["layer_type"] is JsonArray released
                && (released.Count != n || released.Any(t => t?.GetValueKind() != JsonValueKind.String || (string?)t != "h")))
                throw new WrenException($"{source}: layer_type must list \"h\" (hybrid heads) once per layer ({n}); other Hymba " +
                                        "layer types are not supported");
            obj["layer_types"] = new JsonArray(Enumerable.Range(0, n).Select(_ => (JsonNode?)JsonValue.Create("hymba")).ToArray());
        }
        if (obj["mamba_dt_rank"]?.GetValueKind() == JsonValueKind.String && (string?)obj["mamba_dt_rank"] == "auto")
            obj.Remove("mamba_dt_rank");
        if (obj["attn_implementation_new"]?.GetValueKind() == JsonValueKind.String && (string?)obj["attn_implementation_new"] == "flex")
            obj["attn_implementation_new"] = "flash_attention_2";
        static int? IntOf(JsonNode? node) => node is JsonValue value && value.TryGetValue<int>(out int i) ? i : null;
        if (obj["memory_tokens_interspersed_every"] is { } interspersed && IntOf(interspersed) is null or > 0)
            throw new WrenException($"{source}: memory_tokens_interspersed_every > 0 (meta tokens repeated inside the sequence) is not " +
                                    "supported; the released models use 0");
        if (obj["kv_reuse_every_i_layer"] is { } reuseEvery && IntOf(reuseEvery) is null)
            throw new WrenException($"{source}: kv_reuse_every_i_layer must be an integer (-1: no sharing), got " +
                                    reuseEvery.ToJsonString());
        // kv_reuse_every_i_layer = n without kv_reuse_group: layer i computes k/v when i % n == 0, the next n − 1 reuse them.
        if (obj["kv_reuse_group"] is null && IntOf(obj["kv_reuse_every_i_layer"]) is > 1 and { } every
            && obj["layer_types"] is JsonArray types)
        {
            int n = types.Count;
            obj["kv_reuse_group"] = new JsonArray(Enumerable.Range(0, (n + every - 1) / every)
                .Select(g => (JsonNode?)new JsonArray(Enumerable.Range(g * every, Math.Min(every, n - g * every))
                                                          .Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()))
                .ToArray());
        }
    }

    /// <summary>Reads a config.json, a model folder's config, or a built-in preset by name (see <see cref="Presets"/>).</summary>
    public static HybridConfig Load(string pathOrPreset)
    {
        if (Directory.Exists(pathOrPreset)) pathOrPreset = Path.Combine(pathOrPreset, "config.json");
        if (File.Exists(pathOrPreset) && pathOrPreset.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new WrenException($"{pathOrPreset} is a weights file; give the model folder that holds it, or its config.json");
        if (File.Exists(pathOrPreset)) return Parse(File.ReadAllText(pathOrPreset), pathOrPreset);
        using var preset = typeof(HybridConfig).Assembly.GetManifestResourceStream($"Wren.Presets.{pathOrPreset}.json");
        if (preset is null)
            throw new WrenException($"config not found: '{pathOrPreset}' is neither a file, a model folder nor a preset " +
                                    $"({string.Join(", ", Presets)})");
        return Parse(new StreamReader(preset).ReadToEnd(), $"preset {pathOrPreset}");
    }

    /// <summary>Names of the built-in preset configs (the repository's configs/ folder).</summary>
    public static IEnumerable<string> Presets =>
        typeof(HybridConfig).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("Wren.Presets.", StringComparison.Ordinal))
            .Select(n => n["Wren.Presets.".Length..^".json".Length]);

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>kv_reuse_group: hymba layer indices in range, consumers after their producer (modeling_hymba.py reads the
    /// producer's output), no layer in two groups, no global layer as a consumer (a consumer keeps its own window type but reads
    /// its producer's keys, which a global layer's full view would outrun).</summary>
    void ValidateKvReuseGroups(Action<string> fail)
    {
        if (KvReuseGroup is null) return;
        var seen = new HashSet<int>();
        for (int g = 0; g < KvReuseGroup.Count; g++)
        {
            var group = KvReuseGroup[g] ?? [];
            if (group.Count == 0) fail($"kv_reuse_group[{g}] is empty: list a producer layer and the layers that reuse its KV");
            for (int j = 0; j < group.Count; j++)
            {
                int layer = group[j];
                if (layer < 0 || layer >= NumLayers) fail($"kv_reuse_group[{g}] names layer {layer}, outside 0..{NumLayers - 1}");
                if (!seen.Add(layer)) fail($"kv_reuse_group[{g}] names layer {layer}, already in another group (groups overlap)");
                if (group.Count > 1 && LayerTypes[layer] != "hymba")
                    fail($"kv_reuse_group[{g}] names layer {layer}, a '{LayerTypes[layer]}' layer: only hymba layers share KV");
                if (j > 0 && layer <= group[0])
                    fail($"kv_reuse_group[{g}] lists layer {layer} after its producer {group[0]}: consumers must come later");
                if (j > 0 && (GlobalAttnIdx ?? []).Contains(layer))
                    fail($"kv_reuse_group[{g}] makes global layer {layer} (global_attn_idx) a consumer of layer {group[0]}'s KV");
            }
        }
    }

    /// <summary>Checks everything the forward relies on; the message names the key and the fix.</summary>
    public void Validate(string source = "config.json")
    {
        void Fail(string message) => throw new WrenException($"{source}: {message}");
        if (LayerTypes.Count == 0) Fail("layer_types is empty");
        if (NumHiddenLayers is { } n && n != LayerTypes.Count)
            Fail($"num_hidden_layers is {n} but layer_types has {LayerTypes.Count} entries");
        for (int i = 0; i < LayerTypes.Count; i++)
            if (LayerTypes[i] is null || !OperatorRegistry.IsKnown(LayerTypes[i]))
                Fail($"layer_types[{i}] = '{LayerTypes[i]}' is not a known layer type (known: " +
                     $"{string.Join(", ", OperatorRegistry.Names)})");
        if (HiddenSize <= 0) Fail("hidden_size must be positive");
        if (VocabSize <= 0) Fail("vocab_size must be positive");
        if (NumAttentionHeads <= 0) Fail("num_attention_heads must be positive");
        if (NumMemoryTokens < 0) Fail("num_memory_tokens must be >= 0");
        if (RmsNormEps <= 0) Fail("rms_norm_eps must be positive");
        if (MlpHiddenAct is not ("silu" or "relu2")) Fail($"mlp_hidden_act '{MlpHiddenAct}' is not supported (use \"silu\" or \"relu2\")");
        var globals = GlobalAttnIdx ?? [];
        for (int i = 0; i < globals.Count; i++)
        {
            if (globals[i] < 0 || globals[i] >= LayerTypes.Count)
                Fail($"global_attn_idx[{i}] = {globals[i]} is outside the layers 0..{LayerTypes.Count - 1}");
            if (globals.IndexOf(globals[i]) < i) Fail($"global_attn_idx lists layer {globals[i]} twice");
        }
        ValidateKvReuseGroups(Fail);
        foreach (var spec in LayerTypes.Select(OperatorRegistry.Get).Distinct()) spec.Validate(this, Fail);
        if (Enumerable.Range(0, NumLayers).Any(HasFfn) && FfnSize <= 0)
            Fail(FfnExpandRatio is { } r
                ? $"ffn_expand_ratio {r} × hidden_size {HiddenSize} floors to an FFN width of 0 (it is rounded down to a " +
                  $"multiple of {FfnStep} and takes precedence over intermediate_size: raise it, or remove it to use intermediate_size)"
                : "intermediate_size must be positive when \"f\" layers exist (or set ffn_expand_ratio)");
        if (IntermediateSize < 0) Fail("intermediate_size must be >= 0");
        if (FfnMultipleOf is <= 0) Fail("wren_ffn_multiple_of must be positive");
        if (TiktokenEncoding is not (null or "cl100k_base" or "o200k_base")) Fail($"wren_tiktoken_encoding '{TiktokenEncoding}' is not " +
                                                                                  $"supported (cl100k_base, o200k_base)");
    }
}
