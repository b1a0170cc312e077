// Calls a CUDA graph capture forbids, one per mode, which the emulator must
// refuse as a GPU does (so code that captures cleanly here captures on a GPU),
// and a graph replayed after a buffer it uses was freed:
//   build/tests/cuemu_neg_graph MODE
// tests/test_cuemu_graph.sh runs each mode and checks the message: the error
// through cudaCheck names the file and line of the call. "ok" captures the same
// work cleanly and replays it. Also compiles with nvcc.
#include "common/cuemu.h"
#include <stdio.h>
#include <string.h>

#define N 64

__global__ void add_kernel(float *x, float a) {
    if (threadIdx.x < N) x[threadIdx.x] += a;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    float *d, host[N];
    cudaCheck(cudaMalloc(&d, N * sizeof(float)));
    cudaCheck(cudaMemset(d, 0, N * sizeof(float)));
    cudaStream_t s;   // non-blocking, as the programs' compute stream
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaGraph_t graph;
    cudaGraphExec_t exec;

    cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CU_LAUNCH(add_kernel, 1, N, 0, s)(d, 1.0f);
    if (!strcmp(mode, "sync_memcpy")) {
        cudaCheck(cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost));   // a synchronous copy in the capture
    } else if (!strcmp(mode, "stream_sync")) {
        cudaCheck(cudaStreamSynchronize(s));   // waits for the capturing stream
    } else if (!strcmp(mode, "device_sync")) {
        cudaCheck(cudaDeviceSynchronize());   // waits for the whole device
    } else if (!strcmp(mode, "malloc")) {
        float *more;
        cudaCheck(cudaMalloc(&more, sizeof host));   // an allocation a replay would not repeat
    } else if (!strcmp(mode, "legacy_launch")) {
        CU_LAUNCH(add_kernel, 1, N, 0, 0)(d, 1.0f);   // the legacy default stream in the capture
    } else if (!strcmp(mode, "invalidated")) {
        (void)cudaMemsetAsync(d, 0, sizeof host, 0);   // refused (unchecked): the capture is broken
        cudaCheck(cudaStreamEndCapture(s, &graph));    // so ending it fails
    } else if (strcmp(mode, "ok") != 0 && strcmp(mode, "replay_after_free") != 0) {
        fprintf(stderr, "usage: %s sync_memcpy|stream_sync|device_sync|malloc|legacy_launch|invalidated|replay_after_free|ok\n",
                argv[0]);
        return 2;
    }
    cudaCheck(cudaStreamEndCapture(s, &graph));
    cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
    if (!strcmp(mode, "replay_after_free")) {
        cudaCheck(cudaFree(d));
        cudaCheck(cudaGraphLaunch(exec, s));   // the kernel's buffer is gone
        cudaCheck(cudaStreamSynchronize(s));
    }
    for (int i = 0; i < 3; i++) cudaCheck(cudaGraphLaunch(exec, s));
    cudaCheck(cudaMemcpyAsync(host, d, sizeof host, cudaMemcpyDeviceToHost, s));
    cudaCheck(cudaStreamSynchronize(s));
    if (host[0] != 3.0f || host[N - 1] != 3.0f) {
        fprintf(stderr, "ok: after 3 launches x = %g %g, want 3\n", host[0], host[N - 1]);
        return 1;
    }
    printf("ok: 3 launches of the captured kernel\n");
    cudaCheck(cudaGraphExecDestroy(exec));
    cudaCheck(cudaGraphDestroy(graph));
    cudaCheck(cudaStreamDestroy(s));
    cudaCheck(cudaFree(d));
    return 0;
}
