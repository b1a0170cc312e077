/*
 * dev/exercises/06-attention-pv-tensor-cores.cu: the stub of exercise 6 (sheet:
 * 06-attention-pv-tensor-cores.md): P.V of attention on tensor cores.
 *
 *   dev/grade 6 my-attention.cu
 *
 * Waiting for the tensor-core primitives of issue 11 (common/mma.cuh and their
 * emulation): until they exist the grader reports that and fails.
 */

// TODO: once common/mma.cuh exists, the sheet gives the signature to fill in.
