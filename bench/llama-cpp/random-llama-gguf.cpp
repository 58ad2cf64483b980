// A random-weight F32 GGUF of Wren's llama-300m shape (configs/llama-300m.json: hidden 1024, 13 blocks, 16 heads, SwiGLU
// 4096, untied head), for measuring llama.cpp beside Wren on the same shape (docs/benchmarks.md, "Side by side with
// llama.cpp"). Written here against ggml's public gguf API; the vocabulary (32,000 tokens) is copied from one of
// llama.cpp's vocab-only test files, so the file loads like a converted checkpoint. Speed does not depend on the values.
//   g++ -O2 -std=c++17 random-llama-gguf.cpp -I$L/ggml/include -L$L/build/bin -lggml-base -lggml -Wl,-rpath,$L/build/bin
//   ./a.out $L/models/ggml-vocab-llama-spm.gguf llama-300m-f32.gguf
#include "ggml.h"
#include "gguf.h"
#include <cstdio>
#include <random>
#include <string>
#include <vector>
int main(int argc, char ** argv) {
    if (argc < 3) { fprintf(stderr, "usage: mkgguf vocab.gguf out.gguf\n"); return 1; }
    const int n_embd = 1024, n_layer = 13, n_ff = 4096, n_head = 16;
    ggml_context * vctx = nullptr;
    gguf_init_params vp = { true, &vctx };
    gguf_context * vocab = gguf_init_from_file(argv[1], vp);
    if (!vocab) { fprintf(stderr, "cannot read %s\n", argv[1]); return 2; }
    int64_t id = gguf_find_key(vocab, "tokenizer.ggml.tokens");
    if (id < 0) { fprintf(stderr, "%s has no tokenizer.ggml.tokens\n", argv[1]); return 2; }
    const int n_vocab = (int) gguf_get_arr_n(vocab, id);
    gguf_context * out = gguf_init_empty();
    gguf_set_kv(out, vocab);
    gguf_set_val_str(out, "general.architecture", "llama");
    gguf_set_val_str(out, "general.name", "llama-300m-shape");
    gguf_set_val_u32(out, "general.file_type", 0);
    gguf_set_val_u32(out, "llama.context_length", 8192);
    gguf_set_val_u32(out, "llama.embedding_length", n_embd);
    gguf_set_val_u32(out, "llama.block_count", n_layer);
    gguf_set_val_u32(out, "llama.feed_forward_length", n_ff);
    gguf_set_val_u32(out, "llama.attention.head_count", n_head);
    gguf_set_val_u32(out, "llama.attention.head_count_kv", n_head);
    gguf_set_val_u32(out, "llama.rope.dimension_count", n_embd / n_head);
    gguf_set_val_f32(out, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    gguf_set_val_f32(out, "llama.rope.freq_base", 10000.0f);
    size_t params = (size_t) 2 * n_vocab * n_embd + n_embd + (size_t) n_layer * (4 * n_embd * n_embd + 3 * n_embd * n_ff + 2 * n_embd);
    ggml_init_params ip = { params * sizeof(float) + 256 * ggml_tensor_overhead(), nullptr, false };   // 120 tensors
    ggml_context * ctx = ggml_init(ip);
    std::mt19937 rng(0);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    auto add = [&](const std::string & name, int64_t ne0, int64_t ne1, bool norm) {
        ggml_tensor * t = ne1 ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, ne0, ne1) : ggml_new_tensor_1d(ctx, GGML_TYPE_F32, ne0);
        ggml_set_name(t, name.c_str());
        float * d = (float *) t->data;
        for (int64_t i = 0; i < ggml_nelements(t); i++) d[i] = norm ? 1.0f : normal(rng);
        gguf_add_tensor(out, t);
    };
    add("token_embd.weight", n_embd, n_vocab, false);
    for (int l = 0; l < n_layer; l++) {
        std::string b = "blk." + std::to_string(l) + ".";
        add(b + "attn_norm.weight", n_embd, 0, true);
        add(b + "attn_q.weight", n_embd, n_embd, false);
        add(b + "attn_k.weight", n_embd, n_embd, false);
        add(b + "attn_v.weight", n_embd, n_embd, false);
        add(b + "attn_output.weight", n_embd, n_embd, false);
        add(b + "ffn_norm.weight", n_embd, 0, true);
        add(b + "ffn_gate.weight", n_embd, n_ff, false);
        add(b + "ffn_up.weight", n_embd, n_ff, false);
        add(b + "ffn_down.weight", n_ff, n_embd, false);
    }
    add("output_norm.weight", n_embd, 0, true);
    add("output.weight", n_embd, n_vocab, false);
    if (!gguf_write_to_file(out, argv[2], false)) { fprintf(stderr, "write failed\n"); return 2; }
    printf("%s: %zu parameters, vocab %d\n", argv[2], params, n_vocab);
}
