/*
 * kernel_test.h: what the emulated kernel tests share (tests/emu_kernels.cu,
 * emu_kernels_attention.cu, emu_kernels_backward.cu, emu_kernels_train.cu,
 * emu_kernels_budget.cu, emu_kernels_graph.cu): the C-linkage declarations of the s1.c oracle's
 * wrappers (tests/s1_ref.c, linked in by the Makefile), a seeded generator of
 * bf16-valued inputs, host <-> device copies, and the element-wise check
 * against the oracle. C++ only (g++ against common/cuemu.h, or nvcc); include
 * it after the kernel headers, as it uses their floatX and checked calls.
 *
 * Every helper is static inline or a template, so a test that uses only some
 * of them compiles without unused-function warnings.
 */
#ifndef S1C_KERNEL_TEST_H
#define S1C_KERNEL_TEST_H

#include "common/cuda_common.cuh"   // floatX, cudaCheck, mallocCheck, the bf16 conversions
#include "tests/test.h"             // CHECK

// ----------------------------------------------------------------------------
// the oracle: s1.c's functions through tests/s1_ref.c (each declared exactly as
// defined there; the comments there say what each one computes)

extern "C" {
// forward layers
void s1ref_embedding(float *out, const uint32_t *ids, const float *table, size_t N, size_t C);
void s1ref_rmsnorm(float *out, const float *inp, const float *weight, size_t N, size_t C, float eps);
void s1ref_matmul(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C, size_t OC);
void s1ref_rope(float *x, const size_t *pos, size_t N, size_t NH, size_t HD, double theta);
void s1ref_rope_table(float *cos_t, float *sin_t, size_t P, size_t HD, double theta);
void s1ref_attention(float *out, const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD);
void s1ref_attention_decode(float *out, const float *q, const float *k, const float *v, size_t ntok, size_t NQ, size_t NKV, size_t HD);
void s1ref_swiglu(float *out, const float *gate, const float *up, size_t n);
float s1ref_lm_head_loss(const float *x, const float *w, const uint32_t *targets, const float *weights, size_t N, size_t H, size_t V);
// the whole model, the fixtures' batches
void *s1ref_model_load(const char *dir, int round_bf16);
float s1ref_model_loss(void *model, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S);
const float *s1ref_model_logits(void *model);
size_t s1ref_model_vocab(void *model);
void s1ref_model_free(void *model);
size_t s1ref_fixture_batch(const char *dir, uint32_t **ids, uint8_t **mask, size_t **offsets, float *hf_loss);
// KV-cache decoding
void *s1ref_kvcache_create(void *model, size_t max_len);
const float *s1ref_decode_step(void *model, void *kv, uint32_t token);
void s1ref_kvcache_free(void *kv);
size_t s1ref_kvcache_len(void *kv);
void s1ref_kvcache_truncate(void *kv, size_t len);
// attention with its lse, and its backward pass
void s1ref_attention_lse(float *out, float *lse, const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD);
void s1ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                              const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD);
// backward layers (they add into their outputs) and the optimizer
void s1ref_embedding_backward(float *dtable, const float *dout, const uint32_t *ids, size_t N, size_t C);
void s1ref_rmsnorm_backward(float *dinp, float *dweight, float *rstd, const float *dout, const float *inp,
                            const float *weight, size_t N, size_t C, float eps);
void s1ref_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, size_t N, size_t C, size_t OC);
void s1ref_rope_backward(float *dx, const size_t *pos, size_t N, size_t NH, size_t HD, double theta);
void s1ref_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);
float s1ref_classifier_backward(float *dx, float *dw, float *dlogits, const float *x, const float *w,
                                const uint32_t *targets, const float *weights, float grad_scale, size_t N, size_t H, size_t V);
float s1ref_grad_norm(const float *g, size_t n);
void *s1ref_tiny_model(size_t V, size_t H, size_t I, size_t L, size_t NQ, size_t NKV, size_t HD, int tied, uint64_t seed);
size_t s1ref_model_num_parameters(void *model);
float *s1ref_model_params(void *model);
float *s1ref_model_grads(void *model);
float *s1ref_model_adam_m(void *model);
float *s1ref_model_adam_v(void *model);
int s1ref_num_parameter_tensors(void);
size_t s1ref_model_tensor(void *model, int i, int *kind);
float s1ref_model_update(void *model, double lr, float beta1, float beta2, float eps, float weight_decay,
                         float max_grad_norm, int decay_norm_weights);
// the whole model's training step
void s1ref_model_zero_grad(void *model);
void s1ref_model_backward(void *model, float grad_scale);
const float *s1ref_model_grads_memory(void *model);
}

// ----------------------------------------------------------------------------
// seeded inputs: one LCG per test program. Each program calls kt_seed() with its
// own seed before its first test, so its inputs (and the errors it reports) are
// fixed by its own code, whatever the order of the cases.

static uint32_t kt_rng_state = 12345;
static inline void kt_seed(uint32_t seed) { kt_rng_state = seed; }
static inline uint32_t kt_next(void) {   // the next state of the generator
    kt_rng_state = kt_rng_state * 1664525u + 1013904223u;
    return kt_rng_state;
}

static inline float frand(float scale) {   // uniform in [-scale, scale), rounded to a bf16 number
    float x = ((float)(kt_next() >> 8) / 8388608.0f - 1.0f) * scale;
    return __bfloat162float(__float2bfloat16(x));
}

static inline float *host_random(size_t n, float scale) {
    float *x = (float *)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = frand(scale);
    return x;
}

// ----------------------------------------------------------------------------
// host <-> device

// The tests' stream: non-blocking, as the programs' compute stream is, so a
// launcher that ignored its stream or a read without its synchronisation gives
// wrong results here (the emulator runs such a stream's work only when waited for).
static cudaStream_t kt_stream_create(void) {
    cudaStream_t s;
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
}
static cudaStream_t stream = kt_stream_create();

static inline floatX *to_device(const float *x, size_t n) {   // rounds to bf16
    floatX *tmp = (floatX *)mallocCheck(n * sizeof(floatX)), *d;
    for (size_t i = 0; i < n; i++) tmp[i] = __float2bfloat16(x[i]);
    cudaCheck(cudaMalloc((void **)&d, n * sizeof(floatX)));
    copy_to_device(d, tmp, n * sizeof(floatX), stream);
    free(tmp);
    return d;
}

static inline float *from_device(const floatX *d, size_t n) {   // bf16 on the device, fp32 on the host
    floatX *tmp = (floatX *)mallocCheck(n * sizeof(floatX));
    float *x = (float *)mallocCheck(n * sizeof(float));
    copy_to_host(tmp, d, n * sizeof(floatX), stream);
    for (size_t i = 0; i < n; i++) x[i] = __bfloat162float(tmp[i]);
    free(tmp);
    return x;
}

// x rounded to bf16 at element `shift` of a device buffer of n + shift elements: for
// shift % 8 != 0 a base off the 16-byte boundary cudaMalloc gives, which the vectorised
// kernels must handle (scalar head, or their scalar fallback). Free with cudaFree(p - shift).
static inline floatX *to_device_shifted(const float *x, size_t n, size_t shift) {
    float *tmp = (float *)calloc(n + shift, sizeof(float));
    if (!tmp) { fprintf(stderr, "out of memory\n"); exit(1); }
    memcpy(tmp + shift, x, n * sizeof(float));
    floatX *d = to_device(tmp, n + shift);
    free(tmp);
    return d + shift;
}

template <class T> static T *device_copy(const T *x, size_t n) {   // as is, no conversion
    T *d;
    cudaCheck(cudaMalloc((void **)&d, n * sizeof(T)));
    copy_to_device(d, x, n * sizeof(T), stream);
    return d;
}

template <class T> static T *host_from(const T *d, size_t n) {   // as is, no conversion
    T *x = (T *)mallocCheck(n * sizeof(T));
    copy_to_host(x, d, n * sizeof(T), stream);
    return x;
}

template <class T> static T *device_alloc_nan(size_t n) {   // 0xFF bytes: NaN in bf16 and fp32
    T *d;
    cudaCheck(cudaMalloc((void **)&d, n * sizeof(T)));
    cudaCheck(cudaMemsetAsync(d, 0xFF, n * sizeof(T), stream));
    return d;
}

// x (n elements) rounded to bf16 at element `at` of a device buffer of `total` elements, NaN bytes
// elsewhere: a KV cache longer than the keys in use, or a layer of several, where a read outside shows.
static inline floatX *to_device_in_nan(const float *x, size_t n, size_t at, size_t total) {
    floatX *d = device_alloc_nan<floatX>(total);
    if (n == 0) return d;
    floatX *rows = to_device(x, n);
    cudaCheck(cudaMemcpyAsync(d + at, rows, n * sizeof(floatX), cudaMemcpyDeviceToDevice, stream));
    cudaCheck(cudaFree(rows));   // after the copy: cudaFree waits for the device
    return d;
}

// x in the first n of `rows` >= n elements, NaN bytes after them
static inline floatX *to_device_nan_tail(const float *x, size_t n, size_t rows) { return to_device_in_nan(x, n, 0, rows); }

// ----------------------------------------------------------------------------
// checks

// Checks |got - ref| <= rel*|ref| + abs (+ extra[i] when given) for every element;
// returns the largest |got - ref| and prints it with the largest fraction of the
// bound (at the first failing element: returns its error, prints nothing).
static inline float check_close(const char *what, const float *got, const float *ref, size_t n, float rel, float abs, const float *extra) {
    float worst = 0.0f, worst_ratio = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float err = fabsf(got[i] - ref[i]), bound = rel * fabsf(ref[i]) + abs + (extra ? extra[i] : 0.0f);
        worst = fmaxf(worst, err);
        worst_ratio = fmaxf(worst_ratio, bound > 0.0f ? err / bound : err > 0.0f ? INFINITY : 0.0f);
        CHECK(err <= bound, "%s[%zu]: got %.8g, want %.8g (error %.3g > bound %.3g)", what, i, got[i], ref[i], err, bound);
        if (!(err <= bound)) return err;
    }
    printf("note: %s max error %.3g, at most %.2f of its bound\n", what, worst, worst_ratio);
    return worst;
}

// ----------------------------------------------------------------------------
// fused q|k|v rows (common/rope.cuh's rope_qkv_forward() and _backward())

// dst (N, width) = a block of `width` columns of src: rows dst_stride and src_stride apart
static inline void copy_columns(float *dst, size_t dst_stride, const float *src, size_t src_stride, size_t N, size_t width) {
    for (size_t n = 0; n < N; n++) memcpy(dst + n * dst_stride, src + n * src_stride, width * sizeof(float));
}

// The oracle of RoPE on fused rows x (N, NQ + 2 NKV, HD): ref = x with its q
// and k heads rotated by s1.c's rope_forward() (backward: rope_backward()) at
// positions pos (N,), its v heads as they are; extra = the bound of cos and sin
// rounded to bf16, u(|a| + |b|) for both elements of a rotated pair (a, b),
// 0 for v. ref and extra: (N, NQ + 2 NKV, HD).
static inline void rope_qkv_reference(float *ref, float *extra, const float *x, const size_t *pos, size_t N, size_t NQ,
                                      size_t NKV, size_t HD, double theta, int backward, float u) {
    size_t W = (NQ + 2 * NKV) * HD, half = HD / 2, heads[2] = {NQ, NKV};
    memcpy(ref, x, N * W * sizeof(float));
    memset(extra, 0, N * W * sizeof(float));
    for (int b = 0; b < 2; b++) {   // the q block, then the k block
        size_t width = heads[b] * HD, col = b == 0 ? 0 : NQ * HD;
        float *blk = (float *)mallocCheck(N * width * sizeof(float));
        copy_columns(blk, width, x + col, W, N, width);
        if (backward) s1ref_rope_backward(blk, pos, N, heads[b], HD, theta);
        else s1ref_rope(blk, pos, N, heads[b], HD, theta);
        copy_columns(ref + col, W, blk, width, N, width);
        for (size_t n = 0; n < N; n++)
            for (size_t h = 0; h < heads[b]; h++)
                for (size_t i = 0; i < half; i++) {
                    size_t a = n * W + col + h * HD + i;
                    extra[a] = extra[a + half] = u * (fabsf(x[a]) + fabsf(x[a + half]));
                }
        free(blk);
    }
}

// got against ref, both fused rows (N, NQ + 2 NKV, HD): the q and k blocks
// within u|ref| + 1e-6 + extra (one rounding, the tables', s1.c's fp32), the v
// block bit for bit (a copy).
static inline void check_qkv_close(const char *what, const float *got, const float *ref, const float *extra, size_t N,
                                   size_t NQ, size_t NKV, size_t HD, float u) {
    size_t W = (NQ + 2 * NKV) * HD, widths[3] = {NQ * HD, NKV * HD, NKV * HD}, col = 0;
    const char *names[3] = {"q", "k", "v"};
    for (int b = 0; b < 3; col += widths[b], b++) {
        float *g = (float *)mallocCheck(N * widths[b] * sizeof(float)), *r = (float *)mallocCheck(N * widths[b] * sizeof(float));
        float *e = (float *)mallocCheck(N * widths[b] * sizeof(float));
        copy_columns(g, widths[b], got + col, W, N, widths[b]);
        copy_columns(r, widths[b], ref + col, W, N, widths[b]);
        copy_columns(e, widths[b], extra + col, W, N, widths[b]);
        char label[64];
        snprintf(label, sizeof label, "%s %s", what, names[b]);
        if (b < 2) check_close(label, g, r, N * widths[b], u, 1e-6f, e);
        else check_close(label, g, r, N * widths[b], 0.0f, 0.0f, NULL);
        free(g); free(r); free(e);
    }
}

// N positions for the RoPE tests: 0, then steps of 517 through the 32K table, the last 32767
static inline void rope_test_positions(size_t *pos, int *pos_i, size_t N) {
    for (size_t i = 0; i < N; i++) pos_i[i] = (int)(pos[i] = i + 1 == N ? 32767 : i * 517 % 32768);
}

static inline float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

#endif // S1C_KERNEL_TEST_H

// ----------------------------------------------------------------------------
// wrappers the kernel workbench (dev/*.cu) adds to tests/s1_ref.c
#ifndef S1C_KERNEL_TEST_DEV_H
#define S1C_KERNEL_TEST_DEV_H
extern "C" {
void s1ref_residual(float *out, const float *inp, size_t n);
float s1ref_crossentropy(float *lse, float *dlogits, const float *logits, const uint32_t *targets, const float *weights,
                         float grad_scale, size_t N, size_t V);
}
#endif // S1C_KERNEL_TEST_DEV_H
