// Normalization kernels, float32 and float16 storage (float accumulation). The input is viewed
// as (n, c, s) (normalization_params.h); gamma, beta, statistics and parameter gradients are
// float buffers. Reductions: each thread strides over its threadgroup's elements, then
// simd_sum and one partial per simd-group (mnn_threadgroup_sum); any threadgroup size up to
// 1024 works. Statistics are two-pass (mean, then the sum of squared deviations).
//
// Kernels and buffers (T = float or half by the dtype suffix):
//   batch_norm_statistics_{float32,float16}     grid: c threadgroups (one per channel)
//     x [[buffer(0)]], mean [[buffer(1)]] float, var [[buffer(2)]] float (biased), MnnNormParams [[buffer(3)]]
//   batch_norm_update_running_float32            grid: c threads
//     running_mean [[buffer(0)]], running_var [[buffer(1)]], mean [[buffer(2)]], var [[buffer(3)]],
//     MnnNormParams [[buffer(4)]]:  r = (1 - momentum) r + momentum * batch (var * count / (count - 1))
//   batch_norm_forward_{float32,float16}         grid: n*c*s threads
//     x 0, gamma 1, beta 2, mean 3, var 4, y 5, MnnNormParams 6:  y = (x - mean) / sqrt(var + eps) * gamma + beta
//   batch_norm_backward_params_{float32,float16} grid: c threadgroups
//     dy 0, x 1, mean 2, var 3, dgamma 4, dbeta 5, MnnNormParams 6:  dbeta = sum dy, dgamma = sum dy xhat
//   batch_norm_backward_{float32,float16}        grid: n*c*s threads
//     dy 0, x 1, gamma 2, mean 3, var 4, dgamma 5, dbeta 6, dx 7, MnnNormParams 8
//       batch statistics (flags): dx = gamma is (dy - dbeta / M - xhat dgamma / M); else dx = gamma is dy
//   group_norm_forward_{float32,float16}         grid: n*groups threadgroups
//     x 0, gamma 1, beta 2, y 3, mean 4 (n, groups), inv_std 5 (n, groups), MnnNormParams 6
//   group_norm_backward_{float32,float16}        grid: n*groups threadgroups
//     dy 0, x 1, gamma 2, mean 3, inv_std 4, dx 5, MnnNormParams 6
//       dx = is (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)) over the group
//   group_norm_backward_params_{float32,float16} grid: c threadgroups
//     dy 0, x 1, mean 2, inv_std 3, dgamma 4, dbeta 5, MnnNormParams 6
//   cross_channel_norm_forward_{float32,float16}  grid: n*c*s threads
//     x 0, y 1, MnnNormParams 2:  y = x q^-beta, q = delta + alpha / size * sum_{W(c)} x^2
//   cross_channel_norm_backward_{float32,float16} grid: n*c*s threads
//     dy 0, x 1, dx 2, MnnNormParams 3
#include <metal_stdlib>
#include "metal_common.h"
#include "normalization_params.h"
using namespace metal;

struct NormThread {
  uint group, tid, ntg, lane, sg, nsg;
};

inline float norm_inv_std(float var, float eps) { return 1.0f / sqrt(var + eps); }

// ---- batch norm

template <typename T>
inline void batch_norm_statistics(device const T* x, device float* mean, device float* var,
                                  constant MnnNormParams& p, threadgroup float* partial, NormThread t) {
  if (t.group >= (uint)p.c) return;  // whole threadgroup leaves together
  const uint c = t.group, C = (uint)p.c, S = (uint)p.s, count = (uint)p.n * S;
  float acc = 0.0f;
  for (uint k = t.tid; k < count; k += t.ntg) acc += mnn_load(x, ((k / S) * C + c) * S + k % S);
  const float m = mnn_threadgroup_sum(acc, partial, t.lane, t.sg, t.nsg) / float(count);
  float sq = 0.0f;
  for (uint k = t.tid; k < count; k += t.ntg) {
    const float d = mnn_load(x, ((k / S) * C + c) * S + k % S) - m;
    sq += d * d;
  }
  sq = mnn_threadgroup_sum(sq, partial, t.lane, t.sg, t.nsg);
  if (t.tid == 0) {
    mean[c] = m;
    var[c] = sq / float(count);
  }
}

template <typename T>
inline void batch_norm_forward(device const T* x, device const float* gamma, device const float* beta,
                               device const float* mean, device const float* var, device T* y,
                               constant MnnNormParams& p, uint gid) {
  const uint total = (uint)p.n * (uint)p.c * (uint)p.s;
  if (gid >= total) return;
  const uint c = (gid / (uint)p.s) % (uint)p.c;
  const float scale = gamma[c] * norm_inv_std(var[c], p.epsilon);
  mnn_store(y, gid, (mnn_load(x, gid) - mean[c]) * scale + beta[c]);
}

template <typename T>
inline void batch_norm_backward_params(device const T* dy, device const T* x, device const float* mean,
                                       device const float* var, device float* dgamma, device float* dbeta,
                                       constant MnnNormParams& p, threadgroup float* partial, NormThread t) {
  if (t.group >= (uint)p.c) return;
  const uint c = t.group, C = (uint)p.c, S = (uint)p.s, count = (uint)p.n * S;
  const float m = mean[c];
  float sd = 0.0f, sxd = 0.0f;
  for (uint k = t.tid; k < count; k += t.ntg) {
    const uint i = ((k / S) * C + c) * S + k % S;
    const float d = mnn_load(dy, i);
    sd += d;
    sxd += d * (mnn_load(x, i) - m);
  }
  sd = mnn_threadgroup_sum(sd, partial, t.lane, t.sg, t.nsg);
  sxd = mnn_threadgroup_sum(sxd, partial, t.lane, t.sg, t.nsg);
  if (t.tid == 0) {
    dbeta[c] = sd;
    dgamma[c] = sxd * norm_inv_std(var[c], p.epsilon);
  }
}

template <typename T>
inline void batch_norm_backward(device const T* dy, device const T* x, device const float* gamma,
                                device const float* mean, device const float* var, device const float* dgamma,
                                device const float* dbeta, device T* dx, constant MnnNormParams& p, uint gid) {
  const uint total = (uint)p.n * (uint)p.c * (uint)p.s;
  if (gid >= total) return;
  const uint c = (gid / (uint)p.s) % (uint)p.c;
  const float is = norm_inv_std(var[c], p.epsilon), a = gamma[c] * is;
  const float d = mnn_load(dy, gid);
  if ((p.flags & MNN_NORM_BATCH_STATISTICS) == 0u) {
    mnn_store(dx, gid, a * d);
    return;
  }
  const float b = dbeta[c] / p.count, k = is * dgamma[c] / p.count;
  mnn_store(dx, gid, a * (d - b - (mnn_load(x, gid) - mean[c]) * k));
}

// ---- group norm: group q = (n, g) is the contiguous block [q * L, (q + 1) * L), L = (c / groups) * s

template <typename T>
inline void group_norm_forward(device const T* x, device const float* gamma, device const float* beta, device T* y,
                               device float* mean, device float* inv_std, constant MnnNormParams& p,
                               threadgroup float* partial, NormThread t) {
  const uint G = (uint)p.groups;
  if (t.group >= (uint)p.n * G) return;
  const uint S = (uint)p.s, cg = (uint)p.c / G, L = cg * S, base = t.group * L, c0 = (t.group % G) * cg;
  float acc = 0.0f;
  for (uint k = t.tid; k < L; k += t.ntg) acc += mnn_load(x, base + k);
  const float m = mnn_threadgroup_sum(acc, partial, t.lane, t.sg, t.nsg) / float(L);
  float sq = 0.0f;
  for (uint k = t.tid; k < L; k += t.ntg) {
    const float d = mnn_load(x, base + k) - m;
    sq += d * d;
  }
  const float is = norm_inv_std(mnn_threadgroup_sum(sq, partial, t.lane, t.sg, t.nsg) / float(L), p.epsilon);
  for (uint k = t.tid; k < L; k += t.ntg) {
    const uint c = c0 + k / S;
    mnn_store(y, base + k, (mnn_load(x, base + k) - m) * (gamma[c] * is) + beta[c]);
  }
  if (t.tid == 0) {
    mean[t.group] = m;
    inv_std[t.group] = is;
  }
}

template <typename T>
inline void group_norm_backward(device const T* dy, device const T* x, device const float* gamma,
                                device const float* mean, device const float* inv_std, device T* dx,
                                constant MnnNormParams& p, threadgroup float* partial, NormThread t) {
  const uint G = (uint)p.groups;
  if (t.group >= (uint)p.n * G) return;
  const uint S = (uint)p.s, cg = (uint)p.c / G, L = cg * S, base = t.group * L, c0 = (t.group % G) * cg;
  const float m = mean[t.group], is = inv_std[t.group];
  float sg = 0.0f, sgx = 0.0f;  // sum gamma dy, sum gamma dy (x - mean)
  for (uint k = t.tid; k < L; k += t.ntg) {
    const float g = gamma[c0 + k / S] * mnn_load(dy, base + k);
    sg += g;
    sgx += g * (mnn_load(x, base + k) - m);
  }
  sg = mnn_threadgroup_sum(sg, partial, t.lane, t.sg, t.nsg);
  sgx = mnn_threadgroup_sum(sgx, partial, t.lane, t.sg, t.nsg);
  const float mg = is * sg / float(L), mx = is * is * is * sgx / float(L);
  for (uint k = t.tid; k < L; k += t.ntg) {
    const float a = is * gamma[c0 + k / S];
    mnn_store(dx, base + k, a * mnn_load(dy, base + k) - mg - (mnn_load(x, base + k) - m) * mx);
  }
}

template <typename T>
inline void group_norm_backward_params(device const T* dy, device const T* x, device const float* mean,
                                       device const float* inv_std, device float* dgamma, device float* dbeta,
                                       constant MnnNormParams& p, threadgroup float* partial, NormThread t) {
  if (t.group >= (uint)p.c) return;
  const uint c = t.group, C = (uint)p.c, S = (uint)p.s, G = (uint)p.groups, g = c / (C / G);
  const uint count = (uint)p.n * S;
  float sd = 0.0f, sxd = 0.0f;
  for (uint k = t.tid; k < count; k += t.ntg) {
    const uint n = k / S, i = (n * C + c) * S + k % S, q = n * G + g;
    const float d = mnn_load(dy, i);
    sd += d;
    sxd += d * (mnn_load(x, i) - mean[q]) * inv_std[q];
  }
  sd = mnn_threadgroup_sum(sd, partial, t.lane, t.sg, t.nsg);
  sxd = mnn_threadgroup_sum(sxd, partial, t.lane, t.sg, t.nsg);
  if (t.tid == 0) {
    dbeta[c] = sd;
    dgamma[c] = sxd;
  }
}

// ---- cross-channel: W(c) = [c - size/2, c + (size-1)/2] clipped to [0, C)

template <typename T>
inline float lrn_q(device const T* x, uint plane0, uint S, int c, constant MnnNormParams& p) {
  const int lo = max(0, c - p.size / 2), hi = min(p.c - 1, c + (p.size - 1) / 2);
  float acc = 0.0f;
  for (int j = lo; j <= hi; ++j) {
    const float v = mnn_load(x, plane0 + (uint)j * S);
    acc += v * v;
  }
  return p.delta + p.alpha / float(p.size) * acc;
}

template <typename T>
inline void cross_channel_norm_forward(device const T* x, device T* y, constant MnnNormParams& p, uint gid) {
  const uint S = (uint)p.s, C = (uint)p.c, total = (uint)p.n * C * S;
  if (gid >= total) return;
  const uint c = (gid / S) % C, plane0 = (gid / (C * S)) * C * S + gid % S;
  mnn_store(y, gid, mnn_load(x, gid) * pow(lrn_q(x, plane0, S, (int)c, p), -p.beta));
}

template <typename T>
inline void cross_channel_norm_backward(device const T* dy, device const T* x, device T* dx, constant MnnNormParams& p,
                                        uint gid) {
  const uint S = (uint)p.s, C = (uint)p.c, total = (uint)p.n * C * S;
  if (gid >= total) return;
  const int j = (int)((gid / S) % C);
  const uint plane0 = (gid / (C * S)) * C * S + gid % S;
  const float xj = mnn_load(x, gid);
  float out = mnn_load(dy, gid) * pow(lrn_q(x, plane0, S, j, p), -p.beta);
  // The channels c whose window holds j: c in [j - (size-1)/2, j + size/2].
  const int lo = max(0, j - (p.size - 1) / 2), hi = min(p.c - 1, j + p.size / 2);
  float acc = 0.0f;
  for (int c = lo; c <= hi; ++c) {
    const uint i = plane0 + (uint)c * S;
    const float q = lrn_q(x, plane0, S, c, p);
    acc += mnn_load(dy, i) * mnn_load(x, i) * pow(q, -p.beta) / q;
  }
  out -= 2.0f * p.alpha * p.beta / float(p.size) * xj * acc;
  mnn_store(dx, gid, out);
}

// ---- entry points

// ---- float32

kernel void batch_norm_statistics_float32(device const float* x [[buffer(0)]], device float* mean [[buffer(1)]],
    device float* var [[buffer(2)]], constant MnnNormParams& p [[buffer(3)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  batch_norm_statistics(x, mean, var, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void batch_norm_forward_float32(device const float* x [[buffer(0)]], device const float* gamma [[buffer(1)]],
    device const float* beta [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device float* y [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint gid [[thread_position_in_grid]]) {
  batch_norm_forward(x, gamma, beta, mean, var, y, p, gid);
}

kernel void batch_norm_backward_params_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
    device const float* mean [[buffer(2)]], device const float* var [[buffer(3)]],
    device float* dgamma [[buffer(4)]], device float* dbeta [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  batch_norm_backward_params(dy, x, mean, var, dgamma, dbeta, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void batch_norm_backward_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
    device const float* gamma [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device const float* dgamma [[buffer(5)]],
    device const float* dbeta [[buffer(6)]], device float* dx [[buffer(7)]], constant MnnNormParams& p [[buffer(8)]],
    uint gid [[thread_position_in_grid]]) {
  batch_norm_backward(dy, x, gamma, mean, var, dgamma, dbeta, dx, p, gid);
}

kernel void group_norm_forward_float32(device const float* x [[buffer(0)]], device const float* gamma [[buffer(1)]],
    device const float* beta [[buffer(2)]], device float* y [[buffer(3)]], device float* mean [[buffer(4)]],
    device float* inv_std [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  group_norm_forward(x, gamma, beta, y, mean, inv_std, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void group_norm_backward_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
    device const float* gamma [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* inv_std [[buffer(4)]], device float* dx [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  group_norm_backward(dy, x, gamma, mean, inv_std, dx, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void group_norm_backward_params_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
    device const float* mean [[buffer(2)]], device const float* inv_std [[buffer(3)]],
    device float* dgamma [[buffer(4)]], device float* dbeta [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  group_norm_backward_params(dy, x, mean, inv_std, dgamma, dbeta, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void cross_channel_norm_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
    constant MnnNormParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  cross_channel_norm_forward(x, y, p, gid);
}

kernel void cross_channel_norm_backward_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
    device float* dx [[buffer(2)]], constant MnnNormParams& p [[buffer(3)]], uint gid [[thread_position_in_grid]]) {
  cross_channel_norm_backward(dy, x, dx, p, gid);
}

// ---- float16

kernel void batch_norm_statistics_float16(device const half* x [[buffer(0)]], device float* mean [[buffer(1)]],
    device float* var [[buffer(2)]], constant MnnNormParams& p [[buffer(3)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  batch_norm_statistics(x, mean, var, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void batch_norm_forward_float16(device const half* x [[buffer(0)]], device const float* gamma [[buffer(1)]],
    device const float* beta [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device half* y [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint gid [[thread_position_in_grid]]) {
  batch_norm_forward(x, gamma, beta, mean, var, y, p, gid);
}

kernel void batch_norm_backward_params_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
    device const float* mean [[buffer(2)]], device const float* var [[buffer(3)]],
    device float* dgamma [[buffer(4)]], device float* dbeta [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  batch_norm_backward_params(dy, x, mean, var, dgamma, dbeta, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void batch_norm_backward_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
    device const float* gamma [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device const float* dgamma [[buffer(5)]],
    device const float* dbeta [[buffer(6)]], device half* dx [[buffer(7)]], constant MnnNormParams& p [[buffer(8)]],
    uint gid [[thread_position_in_grid]]) {
  batch_norm_backward(dy, x, gamma, mean, var, dgamma, dbeta, dx, p, gid);
}

kernel void group_norm_forward_float16(device const half* x [[buffer(0)]], device const float* gamma [[buffer(1)]],
    device const float* beta [[buffer(2)]], device half* y [[buffer(3)]], device float* mean [[buffer(4)]],
    device float* inv_std [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  group_norm_forward(x, gamma, beta, y, mean, inv_std, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void group_norm_backward_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
    device const float* gamma [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* inv_std [[buffer(4)]], device half* dx [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  group_norm_backward(dy, x, gamma, mean, inv_std, dx, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void group_norm_backward_params_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
    device const float* mean [[buffer(2)]], device const float* inv_std [[buffer(3)]],
    device float* dgamma [[buffer(4)]], device float* dbeta [[buffer(5)]], constant MnnNormParams& p [[buffer(6)]],
    uint group [[threadgroup_position_in_grid]], uint tid [[thread_position_in_threadgroup]],
    uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  group_norm_backward_params(dy, x, mean, inv_std, dgamma, dbeta, p, partial, NormThread{group, tid, ntg, lane, sg, nsg});
}

kernel void cross_channel_norm_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
    constant MnnNormParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  cross_channel_norm_forward(x, y, p, gid);
}

kernel void cross_channel_norm_backward_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
    device half* dx [[buffer(2)]], constant MnnNormParams& p [[buffer(3)]], uint gid [[thread_position_in_grid]]) {
  cross_channel_norm_backward(dy, x, dx, p, gid);
}

// ---- statistics only (float32)

kernel void batch_norm_update_running_float32(device float* running_mean [[buffer(0)]],
                                              device float* running_var [[buffer(1)]],
                                              device const float* mean [[buffer(2)]],
                                              device const float* var [[buffer(3)]],
                                              constant MnnNormParams& p [[buffer(4)]],
                                              uint gid [[thread_position_in_grid]]) {
  if (gid >= (uint)p.c) return;
  const float k = p.momentum, unbias = p.count / (p.count - 1.0f);
  running_mean[gid] = (1.0f - k) * running_mean[gid] + k * mean[gid];
  running_var[gid] = (1.0f - k) * running_var[gid] + k * var[gid] * unbias;
}
