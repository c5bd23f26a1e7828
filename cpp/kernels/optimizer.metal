// Optimizer steps in place: SGD (momentum, Nesterov), Adam (AMSGrad), RMSProp, with the common
// gradient preprocessing of optimizer_params.h (rescale, clip, L1/L2) in the CPU backend's order
// of operations. Weights and gradients share a dtype (float32 or float16: read, updated in float,
// rounded once); state is float32 with the weights' layout.
//
// Single-tensor kernels, grid: count threads, one element each:
//   sgd_step_{float32,float16}(w T [[buffer(0)]], g T [[buffer(1)]], v float [[buffer(2)]],
//                              MnnSgdParams [[buffer(3)]], uint count [[buffer(4)]])
//   adam_step_{float32,float16}(w [[buffer(0)]], g [[buffer(1)]], m float [[buffer(2)]], v float [[buffer(3)]],
//                               v_max float [[buffer(4)]], MnnAdamParams [[buffer(5)]], uint count [[buffer(6)]])
//   rmsprop_step_{float32,float16}(w [[buffer(0)]], g [[buffer(1)]], s float [[buffer(2)]],
//                                  MnnRmsPropParams [[buffer(3)]], uint count [[buffer(4)]])
// A state buffer the options do not use (v without has_momentum_buffer, v_max without amsgrad)
// is not read: bind any buffer.
//
// Multi-tensor kernels (one dispatch updates many tensors), grid: nranges threadgroups of any
// size; threadgroup r strides over range r of the table:
//   sgd_step_many_{float32,float16}(w, g, v, MnnSgdParams, ranges [[buffer(4)]], uint nranges [[buffer(5)]])
//   adam_step_many_{float32,float16}(w, g, m, v, v_max, MnnAdamParams, ranges [[buffer(6)]],
//                                    uint nranges [[buffer(7)]])
//   rmsprop_step_many_{float32,float16}(w, g, s, MnnRmsPropParams, ranges [[buffer(4)]], uint nranges [[buffer(5)]])
// with buffers at the same indices as the single-tensor kernels; w, g and the state buffers each
// hold all tensors (e.g. one arena each). ranges: uint4 per entry = (weight offset, gradient
// offset, state offset, count), in elements; the host may split a large tensor into several
// entries so threadgroups get similar work.
#include <metal_stdlib>
#include "metal_common.h"
#include "optimizer_params.h"
using namespace metal;

// A thread copy of the constant params, field by field (a constant-to-thread struct copy is fine
// in MSL but not in the emulator's strict address-space check), for mnn_optimizer_gradient.
inline MnnOptimizerParams optimizer_common(constant MnnOptimizerParams& c) {
  MnnOptimizerParams p;
  p.learning_rate = c.learning_rate;
  p.gradient_rescale = c.gradient_rescale;
  p.apply_gradient_clipping = c.apply_gradient_clipping;
  p.gradient_clip_min = c.gradient_clip_min;
  p.gradient_clip_max = c.gradient_clip_max;
  p.regularization_type = c.regularization_type;
  p.regularization_scale = c.regularization_scale;
  p.pad0 = 0u;
  return p;
}

// v = momentum * v - lr * g; w += v (Nesterov: w += momentum * v - lr * g). Without a momentum
// buffer v = -lr * g.
template <typename T>
inline void sgd_element(device T* w, device const T* g, device float* v, constant MnnSgdParams& sp, uint iw,
                        uint ig, uint is) {
  const MnnOptimizerParams p = optimizer_common(sp.common);
  const float lr = p.learning_rate, mom = sp.momentum;
  float wi = mnn_load(w, iw);
  const float gi = mnn_optimizer_gradient(p, mnn_load(g, ig), wi);
  float vn;
  if (sp.has_momentum_buffer != 0u) {
    vn = mom * v[is] - lr * gi;
    v[is] = vn;
  } else {
    vn = -lr * gi;
  }
  wi += sp.nesterov != 0u ? mom * vn - lr * gi : vn;
  mnn_store(w, iw, wi);
}

template <typename T>
inline void adam_element(device T* w, device const T* g, device float* m, device float* v, device float* vmax,
                         constant MnnAdamParams& ap, uint iw, uint ig, uint is) {
  const MnnOptimizerParams p = optimizer_common(ap.common);
  float wi = mnn_load(w, iw);
  const float gi = mnn_optimizer_gradient(p, mnn_load(g, ig), wi);
  float vi = ap.beta2 * v[is] + ap.one_minus_beta2 * (gi * gi);
  const float mi = ap.beta1 * m[is] + ap.one_minus_beta1 * gi;
  m[is] = mi;
  v[is] = vi;
  if (ap.amsgrad != 0u) {
    const float old = vmax[is];
    vi = old >= vi ? old : vi;  // a NaN v reaches v_max too
    vmax[is] = vi;
  }
  wi -= ap.lr_t * mi / (sqrt(vi) + ap.epsilon);
  mnn_store(w, iw, wi);
}

template <typename T>
inline void rmsprop_element(device T* w, device const T* g, device float* s, constant MnnRmsPropParams& rp, uint iw,
                            uint ig, uint is) {
  const MnnOptimizerParams p = optimizer_common(rp.common);
  float wi = mnn_load(w, iw);
  const float gi = mnn_optimizer_gradient(p, mnn_load(g, ig), wi);
  const float si = rp.decay * s[is] + rp.one_minus_decay * (gi * gi);
  s[is] = si;
  wi -= p.learning_rate * gi / (sqrt(si) + rp.epsilon);
  mnn_store(w, iw, wi);
}

// ---------------------------------------------------------------- single tensor

kernel void sgd_step_float32(device float* w [[buffer(0)]], device const float* g [[buffer(1)]],
                             device float* v [[buffer(2)]], constant MnnSgdParams& p [[buffer(3)]],
                             constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  sgd_element(w, g, v, p, gid, gid, gid);
}

kernel void sgd_step_float16(device half* w [[buffer(0)]], device const half* g [[buffer(1)]],
                             device float* v [[buffer(2)]], constant MnnSgdParams& p [[buffer(3)]],
                             constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  sgd_element(w, g, v, p, gid, gid, gid);
}

kernel void adam_step_float32(device float* w [[buffer(0)]], device const float* g [[buffer(1)]],
                              device float* m [[buffer(2)]], device float* v [[buffer(3)]],
                              device float* vmax [[buffer(4)]], constant MnnAdamParams& p [[buffer(5)]],
                              constant uint& count [[buffer(6)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  adam_element(w, g, m, v, vmax, p, gid, gid, gid);
}

kernel void adam_step_float16(device half* w [[buffer(0)]], device const half* g [[buffer(1)]],
                              device float* m [[buffer(2)]], device float* v [[buffer(3)]],
                              device float* vmax [[buffer(4)]], constant MnnAdamParams& p [[buffer(5)]],
                              constant uint& count [[buffer(6)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  adam_element(w, g, m, v, vmax, p, gid, gid, gid);
}

kernel void rmsprop_step_float32(device float* w [[buffer(0)]], device const float* g [[buffer(1)]],
                                 device float* s [[buffer(2)]], constant MnnRmsPropParams& p [[buffer(3)]],
                                 constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  rmsprop_element(w, g, s, p, gid, gid, gid);
}

kernel void rmsprop_step_float16(device half* w [[buffer(0)]], device const half* g [[buffer(1)]],
                                 device float* s [[buffer(2)]], constant MnnRmsPropParams& p [[buffer(3)]],
                                 constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  rmsprop_element(w, g, s, p, gid, gid, gid);
}

// ---------------------------------------------------------------- many tensors, one dispatch

kernel void sgd_step_many_float32(device float* w [[buffer(0)]], device const float* g [[buffer(1)]],
                                  device float* v [[buffer(2)]], constant MnnSgdParams& p [[buffer(3)]],
                                  device const uint4* ranges [[buffer(4)]], constant uint& nranges [[buffer(5)]],
                                  uint r [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
                                  uint ntg [[threads_per_threadgroup]]) {
  if (r >= nranges) return;
  const uint4 e = ranges[r];
  for (uint i = tid; i < e.w; i += ntg) sgd_element(w, g, v, p, e.x + i, e.y + i, e.z + i);
}

kernel void sgd_step_many_float16(device half* w [[buffer(0)]], device const half* g [[buffer(1)]],
                                  device float* v [[buffer(2)]], constant MnnSgdParams& p [[buffer(3)]],
                                  device const uint4* ranges [[buffer(4)]], constant uint& nranges [[buffer(5)]],
                                  uint r [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
                                  uint ntg [[threads_per_threadgroup]]) {
  if (r >= nranges) return;
  const uint4 e = ranges[r];
  for (uint i = tid; i < e.w; i += ntg) sgd_element(w, g, v, p, e.x + i, e.y + i, e.z + i);
}

kernel void adam_step_many_float32(device float* w [[buffer(0)]], device const float* g [[buffer(1)]],
                                   device float* m [[buffer(2)]], device float* v [[buffer(3)]],
                                   device float* vmax [[buffer(4)]], constant MnnAdamParams& p [[buffer(5)]],
                                   device const uint4* ranges [[buffer(6)]], constant uint& nranges [[buffer(7)]],
                                   uint r [[threadgroup_position_in_grid]],
                                   uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]]) {
  if (r >= nranges) return;
  const uint4 e = ranges[r];
  for (uint i = tid; i < e.w; i += ntg) adam_element(w, g, m, v, vmax, p, e.x + i, e.y + i, e.z + i);
}

kernel void adam_step_many_float16(device half* w [[buffer(0)]], device const half* g [[buffer(1)]],
                                   device float* m [[buffer(2)]], device float* v [[buffer(3)]],
                                   device float* vmax [[buffer(4)]], constant MnnAdamParams& p [[buffer(5)]],
                                   device const uint4* ranges [[buffer(6)]], constant uint& nranges [[buffer(7)]],
                                   uint r [[threadgroup_position_in_grid]],
                                   uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]]) {
  if (r >= nranges) return;
  const uint4 e = ranges[r];
  for (uint i = tid; i < e.w; i += ntg) adam_element(w, g, m, v, vmax, p, e.x + i, e.y + i, e.z + i);
}

kernel void rmsprop_step_many_float32(device float* w [[buffer(0)]], device const float* g [[buffer(1)]],
                                      device float* s [[buffer(2)]], constant MnnRmsPropParams& p [[buffer(3)]],
                                      device const uint4* ranges [[buffer(4)]], constant uint& nranges [[buffer(5)]],
                                      uint r [[threadgroup_position_in_grid]],
                                      uint tid [[thread_position_in_threadgroup]],
                                      uint ntg [[threads_per_threadgroup]]) {
  if (r >= nranges) return;
  const uint4 e = ranges[r];
  for (uint i = tid; i < e.w; i += ntg) rmsprop_element(w, g, s, p, e.x + i, e.y + i, e.z + i);
}

kernel void rmsprop_step_many_float16(device half* w [[buffer(0)]], device const half* g [[buffer(1)]],
                                      device float* s [[buffer(2)]], constant MnnRmsPropParams& p [[buffer(3)]],
                                      device const uint4* ranges [[buffer(4)]], constant uint& nranges [[buffer(5)]],
                                      uint r [[threadgroup_position_in_grid]],
                                      uint tid [[thread_position_in_threadgroup]],
                                      uint ntg [[threads_per_threadgroup]]) {
  if (r >= nranges) return;
  const uint4 e = ranges[r];
  for (uint i = tid; i < e.w; i += ntg) rmsprop_element(w, g, s, p, e.x + i, e.y + i, e.z + i);
}
