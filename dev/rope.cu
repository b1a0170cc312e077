/*
 * dev/rope.cu: the rotary embedding workbench (rotate-half, as HF Qwen2), in
 * place on x (N,NH,HD), checked against s1.c's rope_forward() and rope_backward().
 *
 *   make dev && dev/run rope [VERSION]
 *
 *   v1  one thread per (token, head) rotates its HD/2 pairs in a loop, computing
 *       each angle (powf, cosf, sinf): the 32 lanes of a warp are HD elements
 *       apart at each step, one sector each.
 *   v2  one thread per pair, grid-stride, still computing its angle: lane l
 *       rotates pair base + l, so a warp's reads of x[i] and of x[i + HD/2]
 *       are each 64 contiguous bytes: 2 sectors. ~100 FLOPs a pair go to the
 *       full-precision powf, cosf and sinf (their slow path for large angles
 *       also costs registers and a stack frame).
 *   v3  v2 reading cos and sin from the bf16 tables (common/rope.cuh's
 *       rope_qkv_kernel(), the programs' fallback): 4 more bytes a pair,
 *       which the NH heads of a token share in cache, for no transcendental.
 *   v4  8 pairs a thread in 16-byte accesses of x and of the tables
 *       (common/rope.cuh's rope_qkv_vec_kernel(), what the programs run):
 *       8x fewer requests for the same bytes.
 *   b1  the backward pass: v2 rotating by -angle.
 *   b2  the backward pass the programs run: v4 rotating by -angle (common/rope.cuh).
 * The programs' kernels move a fused q|k|v projection into q, k and v as they
 * rotate (and dq, dk, dv back); here they run on x alone, in place: NKV = 0 and
 * the fused rows are x itself (rope_qkv_forward()'s in-place case).
 */
#include "dev/dev.cuh"
#include "common/rope.cuh"   // v3, v4 and b2 are the programs' kernels: included, never copied

__global__ void rope_forward_v1_kernel(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;   // (token, head)
    if (row >= N * NH) return;
    int half = HD / 2, n = row / NH;
    floatX *v = x + (size_t)row * HD;
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        float angle = (float)pos[n] * inv_freq;
        float c = __bfloat162float(round_bf16(cosf(angle))), s = __bfloat162float(round_bf16(sinf(angle)));
        float a = __bfloat162float(cu_ld(&v[i])), b = __bfloat162float(cu_ld(&v[i + half]));
        cu_st(&v[i], round_bf16(a * c - b * s));
        cu_st(&v[i + half], round_bf16(b * c + a * s));
    }
}

// The angle pos * theta^(-2i/HD), cos and sin in fp32 with the expression of
// s1.c's rope_table_ensure(), cos and sin rounded to bf16 (HF's cast point).
__global__ void rope_forward_v2_kernel(floatX *x, const int *pos, int N, int NH, int HD, float theta, float direction) {
    int half = HD / 2;
    size_t total = (size_t)N * NH * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t row = idx / half;   // (n, head)
        int n = (int)(row / NH);
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        float angle = (float)pos[n] * inv_freq;
        float c = __bfloat162float(round_bf16(cosf(angle))), s = __bfloat162float(round_bf16(sinf(angle)));
        floatX *v = x + row * HD;
        float ra, rb;
        rope_pair(__bfloat162float(cu_ld(&v[i])), __bfloat162float(cu_ld(&v[i + half])), c, s, direction, &ra, &rb);
        cu_st(&v[i], round_bf16(ra));
        cu_st(&v[i + half], round_bf16(rb));
    }
}

// Every version has this signature: v1, v2 and b1 compute their angles from
// theta, v3, v4 and b2 read the table t (built for theta).
typedef void (*RopeFn)(floatX *x, const int *pos, const RopeTable *t, int N, int NH, int HD, float theta);

static void rope_forward_v1(floatX *x, const int *pos, const RopeTable *, int N, int NH, int HD, float theta) {
    CU_LAUNCH(rope_forward_v1_kernel, (N * NH + 63) / 64, 64, 0, 0)(x, pos, N, NH, HD, theta);
    cudaCheck(cudaGetLastError());
}
static void rope_v2(floatX *x, const int *pos, int N, int NH, int HD, float theta, float direction) {
    CU_LAUNCH(rope_forward_v2_kernel, grid_for((size_t)N * NH * (HD / 2), 256), 256, 0, 0)(x, pos, N, NH, HD, theta, direction);
    cudaCheck(cudaGetLastError());
}
static void rope_forward_v2(floatX *x, const int *pos, const RopeTable *, int N, int NH, int HD, float theta) {
    rope_v2(x, pos, N, NH, HD, theta, 1.0f);
}
static void rope_backward_b1(floatX *x, const int *pos, const RopeTable *, int N, int NH, int HD, float theta) {
    rope_v2(x, pos, N, NH, HD, theta, -1.0f);
}
static void rope_forward_v3(floatX *x, const int *pos, const RopeTable *t, int N, int NH, int HD, float) {
    CU_LAUNCH(rope_qkv_kernel, grid_for((size_t)N * NH * (HD / 2), 256), 256, 0, 0)(
        qkv_split<floatX>(x, NULL, NULL, NH, 0, HD), qkv_fused<const floatX>(x, NH, 0, HD), pos, t->cos, t->sin, N, NH, 0, HD, 1.0f);
    cudaCheck(cudaGetLastError());
}
// HD/2 a multiple of 8 in every check and the benchmark: the vector kernel
static void rope_forward_v4(floatX *x, const int *pos, const RopeTable *t, int N, int NH, int HD, float) {
    rope_qkv_forward(x, NULL, NULL, x, pos, t, N, NH, 0, HD, 0);
}
static void rope_backward_b2(floatX *x, const int *pos, const RopeTable *t, int N, int NH, int HD, float) {
    rope_qkv_backward(x, x, NULL, NULL, pos, t, N, NH, 0, HD, 0);
}

#define ROPE_POSITIONS 32768   // the checks' and the benchmark's table: Qwen2.5's max_position_embeddings

// bound as tests/emu_kernels.cu: one bf16 rounding (u |ref|) and cos, sin rounded to bf16 (u (|a| + |b|))
static void check_rope(const char *label, RopeFn fn, int backward, int N, int NH, int HD, double theta) {
    char name[160];
    snprintf(name, sizeof name, "rope %s vs s1.c, N=%d, NH=%d, HD=%d, theta=%g", label, N, NH, HD, theta);
    TEST_BEGIN(name);
    kt_seed(31);
    size_t n = (size_t)N * NH * HD, half = HD / 2;
    size_t *pos = (size_t *)mallocCheck(N * sizeof(size_t));
    int *pos_i = (int *)mallocCheck(N * sizeof(int));
    for (int i = 0; i < N; i++) pos_i[i] = (int)(pos[i] = (size_t)(i * 517) % ROPE_POSITIONS);
    float *x = host_random(n, 2.0f), *ref = (float *)mallocCheck(n * sizeof(float)), *extra = (float *)mallocCheck(n * sizeof(float));
    memcpy(ref, x, n * sizeof(float));
    if (backward) s1ref_rope_backward(ref, pos, N, NH, HD, theta);
    else s1ref_rope(ref, pos, N, NH, HD, theta);
    for (size_t r = 0; r < (size_t)N * NH; r++)
        for (size_t i = 0; i < half; i++)
            extra[r * HD + i] = extra[r * HD + i + half] = DEV_U * (fabsf(x[r * HD + i]) + fabsf(x[r * HD + i + half]));
    floatX *d_x = to_device(x, n);
    int *d_pos = device_copy(pos_i, N);
    RopeTable t;
    rope_table_create(&t, ROPE_POSITIONS, HD, theta, 0);
    fn(d_x, d_pos, &t, N, NH, HD, (float)theta);
    float *got = from_device(d_x, n);
    check_close("rope", got, ref, n, DEV_U, 1e-6f, extra);
    rope_table_free(&t);
    free(pos); free(pos_i); free(x); free(ref); free(extra); free(got);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_pos));
    TEST_END();
}

static void check_forward(const char *label, RopeFn fn) {
    check_rope(label, fn, 0, 32, 4, 128, 1e6);
    check_rope(label, fn, 0, 7, 3, 16, 1e4);
}
static void check_v1(void) { check_forward("v1", rope_forward_v1); }
static void check_v2(void) { check_forward("v2", rope_forward_v2); }
static void check_v3(void) { check_forward("v3", rope_forward_v3); }
static void check_v4(void) { check_forward("v4", rope_forward_v4); }
static void check_b1(void) { check_rope("b1", rope_backward_b1, 1, 32, 4, 128, 1e6); }
static void check_b2(void) { check_rope("b2", rope_backward_b2, 1, 32, 4, 128, 1e6); }

#define NB 16384   // the benchmark: 16K tokens, 14 heads of 64 (Qwen2.5-0.5B's queries)
#define NHB 14
#define HDB 64
static floatX *bx;
static int *bpos;
static RopeTable btable;
static void bench_setup(void) {
    if (bx) return;
    bx = dev_alloc<floatX>((size_t)NB * NHB * HDB);
    bpos = dev_alloc<int>(NB);
    rope_table_create(&btable, ROPE_POSITIONS, HDB, 1e6, 0);
}
#define BENCH(name, fn) static void name(void) { bench_setup(); fn(bx, bpos, &btable, NB, NHB, HDB, 1e6f); }
BENCH(bench_v1, rope_forward_v1)
BENCH(bench_v2, rope_forward_v2)
BENCH(bench_v3, rope_forward_v3)
BENCH(bench_v4, rope_forward_v4)
BENCH(bench_b1, rope_backward_b1)
BENCH(bench_b2, rope_backward_b2)

// model: x read and written once (bf16): 4 bytes an element; ~6 FLOPs a pair plus,
// v1 v2 b1, the angle's powf, cosf, sinf. The tables add 4 bytes a pair, read
// from DRAM once per token (its NH heads share the row in cache).
#define ROPE_BYTES (4.0 * NB * NHB * HDB)
#define ROPE_TABLE_BYTES (ROPE_BYTES + 4.0 * NB * (HDB / 2))
#define ROPE_FLOPS (3.0 * NB * NHB * HDB)
static const DevVersion versions[] = {
    {"1", "one thread per (token, head), a loop over the pairs (lanes HD elements apart)", check_v1, bench_v1, ROPE_BYTES, ROPE_FLOPS},
    {"2", "one thread per pair, grid-stride, angles computed (2 sectors per request)", check_v2, bench_v2, ROPE_BYTES, ROPE_FLOPS},
    {"3", "v2 reading bf16 cos/sin tables (common/rope.cuh's fallback)", check_v3, bench_v3, ROPE_TABLE_BYTES, ROPE_FLOPS},
    {"4", "8 pairs per thread in 16-byte accesses of x and the tables (common/rope.cuh)", check_v4, bench_v4, ROPE_TABLE_BYTES,
     ROPE_FLOPS},
    {"b1", "backward: v2 rotating by -angle", check_b1, bench_b1, ROPE_BYTES, ROPE_FLOPS},
    {"b2", "backward: v4 rotating by -angle (common/rope.cuh)", check_b2, bench_b2, ROPE_TABLE_BYTES, ROPE_FLOPS},
};

int main(int argc, char **argv) { return dev_main("rope", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
