// Fully connected layer (x (N, F) = an NCHW batch flattened, weight (O, F)), float32 and float16
// storage, matching cpp/metalnn/backend/cpu/linear.cpp. Forward, backward_input and
// backward_weight are tiled products (mnn_gemm_tile in metal_common.h: 32x32 output tiles,
// 16-deep K steps through threadgroup memory). Products accumulate in float32 unless
// p.accumulation == MNN_ACCUMULATE_HALF (float16 only, forward and backward_input: every
// multiply-add rounded to half over f (forward) / o (backward_input) in order, then half(acc + bias)).
//
// Tiled kernels: threadgroup (16, 16, 1) = 256 threads, grid in threads (ceil(cols / 32) * 16,
//   ceil(rows / 32) * 16, 1), 4 KiB of threadgroup memory (declared in the kernels).
//   fully_connected_forward_{float32,float16}            rows = N, cols = O, K = F
//     x [[buffer(0)]] (N,F), w [[buffer(1)]] (O,F), bias [[buffer(2)]] (O) (read only if p.has_bias; bind any
//     buffer otherwise), y [[buffer(3)]] (N,O), pre [[buffer(4)]] (N,O: z = x w^T + bias, written only if
//     store_pre != 0; bind any buffer otherwise), MnnFullyConnectedParams p [[buffer(5)]],
//     MnnNeuronParams neuron [[buffer(6)]] (y = f(z); type NONE: y = z), uint store_pre [[buffer(7)]]
//   fully_connected_backward_input_{float32,float16}     rows = N, cols = F, K = O
//     dy [[buffer(0)]] (N,O), w [[buffer(1)]], dx [[buffer(2)]] (N,F), MnnFullyConnectedParams p [[buffer(3)]]
//   fully_connected_backward_weight_{float32,float16}    rows = O, cols = F, K = N (float sums)
//     dy [[buffer(0)]], x [[buffer(1)]], dw [[buffer(2)]] (O,F), MnnFullyConnectedParams p [[buffer(3)]]
// One thread per output feature, 1-D grid of O threads rounded up (any threadgroup size):
//   fully_connected_backward_bias_{float32,float16}
//     dy [[buffer(0)]] (N,O), db [[buffer(1)]] (O), MnnFullyConnectedParams p [[buffer(2)]]
#include <metal_stdlib>
#include "linear_params.h"
#include "metal_common.h"
#include "neuron_params.h"
using namespace metal;

// A row-major operand with strides: element (r, c) = ptr[r * rs + c * cs].
template <typename T>
struct FcOperands {
  device const T* a_ptr;
  uint a_rs, a_cs;
  device const T* b_ptr;
  uint b_rs, b_cs;
  float a(uint m, uint k) const { return mnn_load(a_ptr, m * a_rs + k * a_cs); }
  float b(uint k, uint n) const { return mnn_load(b_ptr, k * b_rs + n * b_cs); }
};

// y (N x O) = x (N x F) * w^T (F x O), then bias and the neuron per element.
template <typename T>
inline void fully_connected_forward(device const T* x, device const T* w, device const T* bias, device T* y,
                                    device T* pre, constant MnnFullyConnectedParams& p,
                                    constant MnnNeuronParams& neuron, uint store_pre, uint2 tid, uint3 tg,
                                    threadgroup float* as_, threadgroup float* bs) {
  const uint N = uint(p.batch), F = uint(p.in_features), O = uint(p.out_features);
  const uint m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  const bool half_acc = p.accumulation == MNN_ACCUMULATE_HALF;
  FcOperands<T> op = {x, F, 1, w, 1, F};
  float acc[4];
  mnn_gemm_tile(op, N, O, F, m0, n0, tid, as_, bs, half_acc, acc);
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint n = m0 + tid.y + 16 * i, o = n0 + tid.x + 16 * j;
      if (n >= N || o >= O) continue;
      float z = acc[2 * i + j];
      if (p.has_bias) z = half_acc ? float(half(z + mnn_load(bias, o))) : z + mnn_load(bias, o);
      if (store_pre != 0) mnn_store(pre, n * O + o, z);
      mnn_store(y, n * O + o, neuron.type == MNN_NEURON_NONE ? z : mnn_neuron(z, neuron));
    }
}

// dx (N x F) = dy (N x O) * w (O x F).
template <typename T>
inline void fully_connected_backward_input(device const T* dy, device const T* w, device T* dx,
                                           constant MnnFullyConnectedParams& p, uint2 tid, uint3 tg,
                                           threadgroup float* as_, threadgroup float* bs) {
  const uint N = uint(p.batch), F = uint(p.in_features), O = uint(p.out_features);
  const uint m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  FcOperands<T> op = {dy, O, 1, w, F, 1};
  float acc[4];
  mnn_gemm_tile(op, N, F, O, m0, n0, tid, as_, bs, p.accumulation == MNN_ACCUMULATE_HALF, acc);
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint n = m0 + tid.y + 16 * i, f = n0 + tid.x + 16 * j;
      if (n < N && f < F) mnn_store(dx, n * F + f, acc[2 * i + j]);
    }
}

// dw (O x F) = dy^T (O x N) * x (N x F), float sums.
template <typename T>
inline void fully_connected_backward_weight(device const T* dy, device const T* x, device T* dw,
                                            constant MnnFullyConnectedParams& p, uint2 tid, uint3 tg,
                                            threadgroup float* as_, threadgroup float* bs) {
  const uint N = uint(p.batch), F = uint(p.in_features), O = uint(p.out_features);
  const uint m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  FcOperands<T> op = {dy, 1, O, x, F, 1};
  float acc[4];
  mnn_gemm_tile(op, O, F, N, m0, n0, tid, as_, bs, false, acc);
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint o = m0 + tid.y + 16 * i, f = n0 + tid.x + 16 * j;
      if (o < O && f < F) mnn_store(dw, o * F + f, acc[2 * i + j]);
    }
}

// db[o] = sum_n dy[n, o], in batch order as on the CPU.
template <typename T>
inline void fully_connected_backward_bias(device const T* dy, device T* db, constant MnnFullyConnectedParams& p,
                                          uint gid) {
  const uint O = uint(p.out_features);
  if (gid >= O) return;
  float s = 0.0f;
  for (uint n = 0; n < uint(p.batch); ++n) s += mnn_load(dy, n * O + gid);
  mnn_store(db, gid, s);
}

kernel void fully_connected_forward_float32(device const float* x [[buffer(0)]], device const float* w [[buffer(1)]],
                                        device const float* bias [[buffer(2)]], device float* y [[buffer(3)]],
                                        device float* pre [[buffer(4)]],
                                        constant MnnFullyConnectedParams& p [[buffer(5)]],
                                        constant MnnNeuronParams& neuron [[buffer(6)]],
                                        constant uint& store_pre [[buffer(7)]],
                                        uint2 tid [[thread_position_in_threadgroup]],
                                        uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  fully_connected_forward(x, w, bias, y, pre, p, neuron, store_pre, tid, tg, as_, bs);
}

kernel void fully_connected_backward_input_float32(device const float* dy [[buffer(0)]], device const float* w [[buffer(1)]],
                                               device float* dx [[buffer(2)]],
                                               constant MnnFullyConnectedParams& p [[buffer(3)]],
                                               uint2 tid [[thread_position_in_threadgroup]],
                                               uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  fully_connected_backward_input(dy, w, dx, p, tid, tg, as_, bs);
}

kernel void fully_connected_backward_weight_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
                                                device float* dw [[buffer(2)]],
                                                constant MnnFullyConnectedParams& p [[buffer(3)]],
                                                uint2 tid [[thread_position_in_threadgroup]],
                                                uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  fully_connected_backward_weight(dy, x, dw, p, tid, tg, as_, bs);
}

kernel void fully_connected_backward_bias_float32(device const float* dy [[buffer(0)]], device float* db [[buffer(1)]],
                                              constant MnnFullyConnectedParams& p [[buffer(2)]],
                                              uint gid [[thread_position_in_grid]]) {
  fully_connected_backward_bias(dy, db, p, gid);
}

kernel void fully_connected_forward_float16(device const half* x [[buffer(0)]], device const half* w [[buffer(1)]],
                                        device const half* bias [[buffer(2)]], device half* y [[buffer(3)]],
                                        device half* pre [[buffer(4)]],
                                        constant MnnFullyConnectedParams& p [[buffer(5)]],
                                        constant MnnNeuronParams& neuron [[buffer(6)]],
                                        constant uint& store_pre [[buffer(7)]],
                                        uint2 tid [[thread_position_in_threadgroup]],
                                        uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  fully_connected_forward(x, w, bias, y, pre, p, neuron, store_pre, tid, tg, as_, bs);
}

kernel void fully_connected_backward_input_float16(device const half* dy [[buffer(0)]], device const half* w [[buffer(1)]],
                                               device half* dx [[buffer(2)]],
                                               constant MnnFullyConnectedParams& p [[buffer(3)]],
                                               uint2 tid [[thread_position_in_threadgroup]],
                                               uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  fully_connected_backward_input(dy, w, dx, p, tid, tg, as_, bs);
}

kernel void fully_connected_backward_weight_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
                                                device half* dw [[buffer(2)]],
                                                constant MnnFullyConnectedParams& p [[buffer(3)]],
                                                uint2 tid [[thread_position_in_threadgroup]],
                                                uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  fully_connected_backward_weight(dy, x, dw, p, tid, tg, as_, bs);
}

kernel void fully_connected_backward_bias_float16(device const half* dy [[buffer(0)]], device half* db [[buffer(1)]],
                                              constant MnnFullyConnectedParams& p [[buffer(2)]],
                                              uint gid [[thread_position_in_grid]]) {
  fully_connected_backward_bias(dy, db, p, gid);
}
