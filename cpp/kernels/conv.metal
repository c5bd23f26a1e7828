// 2-D convolution (NCHW images, OIHW weights, groups, stride, dilation, asymmetric padding),
// float32 and float16 storage, matching cpp/metalnn/backend/cpu/conv.cpp and conv_half.cpp.
// Forward, backward_input and backward_weight are implicit GEMMs (mnn_gemm_tile in
// metal_common.h: 32x32 output tiles, 16-deep K steps through threadgroup memory), one group
// per grid z; patches are gathered from the image on the fly (no im2col buffer).
// Products accumulate in float32 unless p.accumulation == MNN_ACCUMULATE_HALF (float16
// only: every multiply-add rounded to half in the CPU's order, then half(acc + bias)).
//
// Notation: P = H_out*W_out, Cg = C/groups, Og = O/groups, KK = kH*kW, G = groups.
// Tiled kernels: threadgroup (16, 16, 1) = 256 threads, grid in threads
//   (ceil(cols / 32) * 16, ceil(rows / 32) * 16, G), 4 KiB of threadgroup memory (declared in the kernels).
//
//   conv2d_forward_{float32,float16}                      rows = Og, cols = N*P, K = Cg*KK
//     x [[buffer(0)]] (N,C,H,W), w [[buffer(1)]] (O,Cg,kH,kW), bias [[buffer(2)]] (O) (read only if p.has_bias;
//     bind any buffer otherwise), y [[buffer(3)]] (N,O,Ho,Wo), pre [[buffer(4)]] (y's shape: z = conv + bias,
//     written only if store_pre != 0; bind any buffer otherwise), MnnConv2dParams p [[buffer(5)]],
//     MnnNeuronParams neuron [[buffer(6)]] (y = f(z); type NONE: y = z), uint store_pre [[buffer(7)]]
//   conv2d_backward_input_{float32,float16}               rows = Cg, cols = N*H*W, K = Og*KK
//     dy [[buffer(0)]] (N,O,Ho,Wo), w [[buffer(1)]], dx [[buffer(2)]] (N,C,H,W), MnnConv2dParams p [[buffer(3)]]
//   conv2d_backward_weight_{float32,float16}              rows = Og, cols = Cg*KK, K = N*P (float sums)
//     dy [[buffer(0)]], x [[buffer(1)]], dw [[buffer(2)]] (O,Cg,kH,kW), MnnConv2dParams p [[buffer(3)]]
// Reduction kernel: one threadgroup per output channel, threadgroup size a multiple of 32 (<= 1024),
//   grid (O * threadgroup size):
//   conv2d_backward_bias_{float32,float16}
//     dy [[buffer(0)]] (N,O,Ho,Wo), db [[buffer(1)]] (O), MnnConv2dParams p [[buffer(2)]]
#include <metal_stdlib>
#include "conv_params.h"
#include "metal_common.h"
#include "neuron_params.h"
using namespace metal;

// Element (k, col) of group g's patch matrix: k = (c*kH + kh)*kW + kw, col = n*P + i*Wo + j;
// 0 where the tap falls in the padding.
template <typename T>
inline float conv_patch(device const T* x, constant MnnConv2dParams& p, uint g, uint k, uint col) {
  const uint KK = uint(p.kernel_height * p.kernel_width), P = uint(p.out_height * p.out_width);
  const uint n = col / P, pp = col % P, c = k / KK, r = k % KK;
  const int ih = int(pp / uint(p.out_width)) * p.stride_y - p.pad_top + int(r / uint(p.kernel_width)) * p.dilation_y;
  const int iw = int(pp % uint(p.out_width)) * p.stride_x - p.pad_left + int(r % uint(p.kernel_width)) * p.dilation_x;
  if (ih < 0 || ih >= p.in_height || iw < 0 || iw >= p.in_width) return 0.0f;
  const uint cg = uint(p.in_channels / p.groups);
  return mnn_load(x, ((n * uint(p.in_channels) + g * cg + c) * uint(p.in_height) + uint(ih)) * uint(p.in_width) +
                         uint(iw));
}

// y_g (Og x N*P) = W_g (Og x K) * patches (K x N*P).
template <typename T>
struct ConvForwardOperands {
  device const T* x;
  device const T* w;
  constant MnnConv2dParams* p;
  uint g;
  float a(uint o, uint k) const {
    const uint og = uint(p->out_channels / p->groups), K = uint(p->in_channels / p->groups * p->kernel_height *
                                                                  p->kernel_width);
    return mnn_load(w, (g * og + o) * K + k);
  }
  float b(uint k, uint col) const { return conv_patch(x, *p, g, k, col); }
};

// dx_g (Cg x N*H*W) = W_g^T (Cg x Og*KK) * dy taps (Og*KK x N*H*W): k = (o*kH + kh)*kW + kw, the
// order of the CPU's half loop; a tap exists where h + pad_top - kh*dil_y is a multiple of the stride.
template <typename T>
struct ConvBackwardInputOperands {
  device const T* dy;
  device const T* w;
  constant MnnConv2dParams* p;
  uint g;
  float a(uint c, uint k) const {
    const uint KK = uint(p->kernel_height * p->kernel_width), og = uint(p->out_channels / p->groups),
               cg = uint(p->in_channels / p->groups);
    return mnn_load(w, ((g * og + k / KK) * cg + c) * KK + k % KK);
  }
  float b(uint k, uint col) const {
    const uint KK = uint(p->kernel_height * p->kernel_width), HW = uint(p->in_height * p->in_width);
    const uint n = col / HW, hw = col % HW, o = k / KK, r = k % KK;
    const int ti = int(hw / uint(p->in_width)) + p->pad_top - int(r / uint(p->kernel_width)) * p->dilation_y;
    const int tj = int(hw % uint(p->in_width)) + p->pad_left - int(r % uint(p->kernel_width)) * p->dilation_x;
    if (ti < 0 || tj < 0 || ti % p->stride_y != 0 || tj % p->stride_x != 0) return 0.0f;
    const int i = ti / p->stride_y, j = tj / p->stride_x;
    if (i >= p->out_height || j >= p->out_width) return 0.0f;
    const uint og = uint(p->out_channels / p->groups);
    return mnn_load(dy, ((n * uint(p->out_channels) + g * og + o) * uint(p->out_height) + uint(i)) *
                            uint(p->out_width) + uint(j));
  }
};

// dw_g (Og x K) = dy_g (Og x N*P) * patches^T (N*P x K).
template <typename T>
struct ConvBackwardWeightOperands {
  device const T* dy;
  device const T* x;
  constant MnnConv2dParams* p;
  uint g;
  float a(uint o, uint col) const {
    const uint P = uint(p->out_height * p->out_width), og = uint(p->out_channels / p->groups);
    return mnn_load(dy, ((col / P) * uint(p->out_channels) + g * og + o) * P + col % P);
  }
  float b(uint col, uint k) const { return conv_patch(x, *p, g, k, col); }
};

template <typename T>
inline void conv2d_forward(device const T* x, device const T* w, device const T* bias, device T* y, device T* pre,
                           constant MnnConv2dParams& p, constant MnnNeuronParams& neuron, uint store_pre,
                           uint2 tid, uint3 tg, threadgroup float* as_, threadgroup float* bs) {
  const uint og = uint(p.out_channels / p.groups), P = uint(p.out_height * p.out_width);
  const uint cols = uint(p.batch) * P, K = uint(p.in_channels / p.groups * p.kernel_height * p.kernel_width);
  const uint g = tg.z, m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  const bool half_acc = p.accumulation == MNN_ACCUMULATE_HALF;
  ConvForwardOperands<T> op = {x, w, &p, g};
  float acc[4];
  mnn_gemm_tile(op, og, cols, K, m0, n0, tid, as_, bs, half_acc, acc);
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint m = m0 + tid.y + 16 * i, col = n0 + tid.x + 16 * j;
      if (m >= og || col >= cols) continue;
      const uint o = g * og + m, at = ((col / P) * uint(p.out_channels) + o) * P + col % P;
      float z = acc[2 * i + j];
      if (p.has_bias) z = half_acc ? float(half(z + mnn_load(bias, o))) : z + mnn_load(bias, o);
      if (store_pre != 0) mnn_store(pre, at, z);
      mnn_store(y, at, neuron.type == MNN_NEURON_NONE ? z : mnn_neuron(z, neuron));
    }
}

template <typename T>
inline void conv2d_backward_input(device const T* dy, device const T* w, device T* dx, constant MnnConv2dParams& p,
                                  uint2 tid, uint3 tg, threadgroup float* as_, threadgroup float* bs) {
  const uint og = uint(p.out_channels / p.groups), cg = uint(p.in_channels / p.groups);
  const uint HW = uint(p.in_height * p.in_width), cols = uint(p.batch) * HW;
  const uint K = og * uint(p.kernel_height * p.kernel_width);
  const uint g = tg.z, m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  ConvBackwardInputOperands<T> op = {dy, w, &p, g};
  float acc[4];
  mnn_gemm_tile(op, cg, cols, K, m0, n0, tid, as_, bs, p.accumulation == MNN_ACCUMULATE_HALF, acc);
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint c = m0 + tid.y + 16 * i, col = n0 + tid.x + 16 * j;
      if (c >= cg || col >= cols) continue;
      mnn_store(dx, ((col / HW) * uint(p.in_channels) + g * cg + c) * HW + col % HW, acc[2 * i + j]);
    }
}

template <typename T>
inline void conv2d_backward_weight(device const T* dy, device const T* x, device T* dw, constant MnnConv2dParams& p,
                                   uint2 tid, uint3 tg, threadgroup float* as_, threadgroup float* bs) {
  const uint og = uint(p.out_channels / p.groups), K = uint(p.in_channels / p.groups * p.kernel_height *
                                                             p.kernel_width);
  const uint NP = uint(p.batch * p.out_height * p.out_width);
  const uint g = tg.z, m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  ConvBackwardWeightOperands<T> op = {dy, x, &p, g};
  float acc[4];
  mnn_gemm_tile(op, og, K, NP, m0, n0, tid, as_, bs, false, acc);  // weight gradients: always float sums
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint m = m0 + tid.y + 16 * i, k = n0 + tid.x + 16 * j;
      if (m >= og || k >= K) continue;
      mnn_store(dw, (g * og + m) * K + k, acc[2 * i + j]);
    }
}

// db[o] = sum over n, i, j of dy[n, o, i, j]: each thread a strided partial, then a threadgroup sum.
template <typename T>
inline void conv2d_backward_bias(device const T* dy, device T* db, constant MnnConv2dParams& p, uint o, uint t,
                                 uint nt, uint lane, uint sg, uint nsg, threadgroup float* partial) {
  const uint P = uint(p.out_height * p.out_width), total = uint(p.batch) * P;
  float s = 0.0f;
  for (uint e = t; e < total; e += nt) s += mnn_load(dy, ((e / P) * uint(p.out_channels) + o) * P + e % P);
  s = mnn_threadgroup_sum(s, partial, lane, sg, nsg);
  if (t == 0) mnn_store(db, o, s);
}


kernel void conv2d_forward_float32(device const float* x [[buffer(0)]], device const float* w [[buffer(1)]],
                               device const float* bias [[buffer(2)]], device float* y [[buffer(3)]],
                               device float* pre [[buffer(4)]], constant MnnConv2dParams& p [[buffer(5)]],
                               constant MnnNeuronParams& neuron [[buffer(6)]], constant uint& store_pre [[buffer(7)]],
                               uint2 tid [[thread_position_in_threadgroup]], uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  conv2d_forward(x, w, bias, y, pre, p, neuron, store_pre, tid, tg, as_, bs);
}

kernel void conv2d_backward_input_float32(device const float* dy [[buffer(0)]], device const float* w [[buffer(1)]],
                                      device float* dx [[buffer(2)]], constant MnnConv2dParams& p [[buffer(3)]],
                                      uint2 tid [[thread_position_in_threadgroup]],
                                      uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  conv2d_backward_input(dy, w, dx, p, tid, tg, as_, bs);
}

kernel void conv2d_backward_weight_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
                                       device float* dw [[buffer(2)]], constant MnnConv2dParams& p [[buffer(3)]],
                                       uint2 tid [[thread_position_in_threadgroup]],
                                       uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  conv2d_backward_weight(dy, x, dw, p, tid, tg, as_, bs);
}

kernel void conv2d_backward_bias_float32(device const float* dy [[buffer(0)]], device float* db [[buffer(1)]],
                                     constant MnnConv2dParams& p [[buffer(2)]],
                                     uint3 tg [[threadgroup_position_in_grid]],
                                     uint t [[thread_index_in_threadgroup]],
                                     uint3 tgsize [[threads_per_threadgroup]],
                                     uint lane [[thread_index_in_simdgroup]],
                                     uint sg [[simdgroup_index_in_threadgroup]],
                                     uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  conv2d_backward_bias(dy, db, p, tg.x, t, tgsize.x, lane, sg, nsg, partial);
}

kernel void conv2d_forward_float16(device const half* x [[buffer(0)]], device const half* w [[buffer(1)]],
                               device const half* bias [[buffer(2)]], device half* y [[buffer(3)]],
                               device half* pre [[buffer(4)]], constant MnnConv2dParams& p [[buffer(5)]],
                               constant MnnNeuronParams& neuron [[buffer(6)]], constant uint& store_pre [[buffer(7)]],
                               uint2 tid [[thread_position_in_threadgroup]], uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  conv2d_forward(x, w, bias, y, pre, p, neuron, store_pre, tid, tg, as_, bs);
}

kernel void conv2d_backward_input_float16(device const half* dy [[buffer(0)]], device const half* w [[buffer(1)]],
                                      device half* dx [[buffer(2)]], constant MnnConv2dParams& p [[buffer(3)]],
                                      uint2 tid [[thread_position_in_threadgroup]],
                                      uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  conv2d_backward_input(dy, w, dx, p, tid, tg, as_, bs);
}

kernel void conv2d_backward_weight_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
                                       device half* dw [[buffer(2)]], constant MnnConv2dParams& p [[buffer(3)]],
                                       uint2 tid [[thread_position_in_threadgroup]],
                                       uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  conv2d_backward_weight(dy, x, dw, p, tid, tg, as_, bs);
}

kernel void conv2d_backward_bias_float16(device const half* dy [[buffer(0)]], device half* db [[buffer(1)]],
                                     constant MnnConv2dParams& p [[buffer(2)]],
                                     uint3 tg [[threadgroup_position_in_grid]],
                                     uint t [[thread_index_in_threadgroup]],
                                     uint3 tgsize [[threads_per_threadgroup]],
                                     uint lane [[thread_index_in_simdgroup]],
                                     uint sg [[simdgroup_index_in_threadgroup]],
                                     uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  conv2d_backward_bias(dy, db, p, tg.x, t, tgsize.x, lane, sg, nsg, partial);
}
