/*
 * dev/exercises/solutions/06-attention-pv-tensor-cores.cu: exercise 6's solution is
 * the P.V step of version 3 of dev/attention.cu (AtcPvTensorCores in
 * common/attention.cuh: ldmatrix.trans for V's fragments, mma.sync m16n8k16);
 * this names it for the grader:
 *   dev/grade 6 dev/exercises/solutions/06-attention-pv-tensor-cores.cu
 */
struct ExercisePv : AtcPvTensorCores {};
