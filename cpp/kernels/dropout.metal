// Dropout kernels, float32 and float16 storage. The mask is the counter hash of
// dropout_params.h, so it equals the CPU backend's bit for bit; y = x * (mask ? scale : 0)
// in float (a multiply, so NaN/Inf inputs give NaN where dropped), rounded once.
//
// Kernels and buffers (one thread per element, 1-D grid of `count` threads rounded up):
//   dropout_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], uchar mask [[buffer(2)]],
//                                     MnnDropoutParams [[buffer(3)]], uint count [[buffer(4)]])
//   dropout_backward_{float32,float16}(dy [[buffer(0)]], uchar mask [[buffer(1)]], dx [[buffer(2)]],
//                                      MnnDropoutParams [[buffer(3)]], uint count [[buffer(4)]])
#include <metal_stdlib>
#include "metal_common.h"
#include "dropout_params.h"
using namespace metal;

template <typename T>
inline void dropout_forward(device const T* x, device T* y, device uchar* mask, constant MnnDropoutParams& p,
                            uint count, uint gid) {
  if (gid >= count) return;
  // The key is recomputed per thread: two 64-bit mixes are cheaper than another buffer.
  uint keep = mnn_dropout_keep(mnn_dropout_key(p.seed), (uint64_t)gid, p.threshold);
  mask[gid] = (uchar)keep;
  mnn_store(y, gid, mnn_load(x, gid) * (keep ? p.scale : 0.0f));
}

template <typename T>
inline void dropout_backward(device const T* dy, device const uchar* mask, device T* dx,
                             constant MnnDropoutParams& p, uint count, uint gid) {
  if (gid >= count) return;
  mnn_store(dx, gid, mnn_load(dy, gid) * (mask[gid] ? p.scale : 0.0f));
}

kernel void dropout_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                    device uchar* mask [[buffer(2)]], constant MnnDropoutParams& p [[buffer(3)]],
                                    constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  dropout_forward(x, y, mask, p, count, gid);
}

kernel void dropout_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                    device uchar* mask [[buffer(2)]], constant MnnDropoutParams& p [[buffer(3)]],
                                    constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  dropout_forward(x, y, mask, p, count, gid);
}

kernel void dropout_backward_float32(device const float* dy [[buffer(0)]], device const uchar* mask [[buffer(1)]],
                                     device float* dx [[buffer(2)]], constant MnnDropoutParams& p [[buffer(3)]],
                                     constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  dropout_backward(dy, mask, dx, p, count, gid);
}

kernel void dropout_backward_float16(device const half* dy [[buffer(0)]], device const uchar* mask [[buffer(1)]],
                                     device half* dx [[buffer(2)]], constant MnnDropoutParams& p [[buffer(3)]],
                                     constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  dropout_backward(dy, mask, dx, p, count, gid);
}
