// RNN step parameters shared by host code, MSL and CUDA: fixed-width fields only.
// One step kernel updates the gates of one time step for the whole batch (B rows x H units);
// the matrix products around it (input projections of all steps, the per-step recurrent
// product) run through each backend's GEMM.
//
// Gate blocks of a layer's (B, G*H) gate row, in order:
//   single gate  G = 1: a                      h = act(a)
//   LSTM         G = 4: i, f, g, o             c = f*c' + i*g, h = o*tanh(c)   (peephole: i, f see c', o sees c)
//   GRU          G = 3: r, z, n                n = tanh(Wn x + Un (r*h') + bn), h = (1-z)*n + z*h'
//   MGU          G = 2: f, n                   n = tanh(Wn x + Un (f*h') + bn), h = (1-f)*h' + f*n
// flip_output_gates swaps the two weights of the GRU/MGU output mix.
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnRnnCell {
  MNN_RNN_SINGLE_GATE = 0,
  MNN_RNN_LSTM = 1,
  MNN_RNN_GRU = 2,
  MNN_RNN_MGU = 3,
  MNN_RNN_CELL_COUNT = 4
};

enum MnnRnnActivation {
  MNN_RNN_TANH = 0,
  MNN_RNN_RELU = 1,
  MNN_RNN_SIGMOID = 2,
  MNN_RNN_ACTIVATION_COUNT = 3
};

struct MnnRnnStepParams {
  uint32_t cell;        // MnnRnnCell
  uint32_t activation;  // MnnRnnActivation (single gate only)
  uint32_t batch;       // B rows
  uint32_t hidden;      // H units
  uint32_t gates;       // G blocks of H in a gate row (row stride G*H)
  uint32_t peephole;    // LSTM: diagonal peephole weights (3, H) for i, f, o
  uint32_t flip_output_gates;
  uint32_t has_lengths; // rows b with time >= lengths[b] are inactive: state carried, output 0
  int32_t time;         // the time index this step processes
  uint32_t y_stride;    // elements between rows of the output y / dy (D*H for D directions)
  // Element offsets into the bound buffers (GPU step kernels; the CPU uses pointers):
  uint32_t off_gates;   // this step's (B, G*H) gate rows (gates and their gradients)
  uint32_t off_hp;      // state before the step (B, H) in the hp buffer (h, c, rh share it)
  uint32_t off_hn;      // state after the step in the hn buffer (the next step's hp, or h_last)
  uint32_t off_y;       // this step's first output / output-gradient element (row stride y_stride)
  uint32_t has_dy;      // backward: 0 when no output gradient is bound (dy = 0)
  uint32_t pad0;
};

// C (M x N, row stride ldc, from element c_off) = alpha * A B + beta * C, where element (m, k)
// of A is a[a_off + m * a_rs + k * a_cs] and (k, n) of B is b[b_off + k * b_rs + n * b_cs]
// (strides express the transposes). float32 operands.
struct MnnRnnGemmParams {
  uint32_t M, N, K;
  uint32_t a_off, a_rs, a_cs;
  uint32_t b_off, b_rs, b_cs;
  uint32_t c_off, ldc;
  float alpha, beta;
  uint32_t pad0, pad1, pad2;
};

// Whole-sequence reductions (column sums of a (rows, cols) matrix, the peephole gradients) and
// the copies around them (casts, state copies, zero fills).
struct MnnRnnReduceParams {
  uint32_t rows, cols;
  uint32_t time, batch, hidden;  // peephole: T, B, H
  uint32_t reverse;              // peephole: the direction runs from t = T-1 down
  uint32_t count;                // copies: elements, in[in_off + i] -> out[out_off + i]
  uint32_t in_off, out_off;
  uint32_t pad0, pad1, pad2;
};

#ifndef MNN_SHARED_INLINE
#if defined(__CUDACC__)
#define MNN_SHARED_INLINE __host__ __device__ inline
#else
#define MNN_SHARED_INLINE inline
#endif
#endif

// The number of gate blocks of a cell.
MNN_SHARED_INLINE uint32_t mnn_rnn_gate_count(uint32_t cell) {
  return cell == MNN_RNN_LSTM ? 4u : cell == MNN_RNN_GRU ? 3u : cell == MNN_RNN_MGU ? 2u : 1u;
}
