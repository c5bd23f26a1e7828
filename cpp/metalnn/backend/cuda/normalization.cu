#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/normalization.h"

#include <type_traits>

namespace metalnn::cuda {
namespace {

// Reductions run one block per statistic (channel or (sample, group)); 256 threads = whole warps.
constexpr int kReduceBlock = 256;

// Sum over the block: warp shuffles, one partial per warp in `shared` (32 floats), then warp 0.
// Every thread of the block must call it; all get the result.
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? shared[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const float r = shared[0];
  __syncthreads();  // callers may reuse `shared` at once
  return r;
}

__device__ __forceinline__ float inv_std(float var, float eps) { return 1.f / sqrtf(var + eps); }

// Element k of channel c's (n, s) range.
__device__ __forceinline__ int64_t channel_index(int64_t k, int c, const MnnNormParams& p) {
  return ((k / p.s) * p.c + c) * (int64_t)p.s + k % p.s;
}

template <class S>
__global__ void bn_statistics_kernel(const S* x, float* mean, float* var, MnnNormParams p) {
  __shared__ float shared[32];
  const int c = blockIdx.x;
  const int64_t count = (int64_t)p.n * p.s;
  float acc = 0.f;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) acc += load(x, channel_index(k, c, p));
  const float m = block_sum(acc, shared) / (float)count;
  float sq = 0.f;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const float d = load(x, channel_index(k, c, p)) - m;
    sq += d * d;
  }
  sq = block_sum(sq, shared);
  if (threadIdx.x == 0) {
    mean[c] = m;
    var[c] = sq / (float)count;
  }
}

__global__ void bn_update_running_kernel(float* rm, float* rv, const float* mean, const float* var, MnnNormParams p) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= p.c) return;
  const float k = p.momentum, unbias = p.count / (p.count - 1.f);
  rm[c] = (1.f - k) * rm[c] + k * mean[c];
  rv[c] = (1.f - k) * rv[c] + k * var[c] * unbias;
}

template <class S>
__global__ void bn_forward_kernel(const S* x, const float* gamma, const float* beta, const float* mean,
                                  const float* var, S* y, MnnNormParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.s;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int c = (int)((i / p.s) % p.c);
    store(y, i, (load(x, i) - mean[c]) * (gamma[c] * inv_std(var[c], p.epsilon)) + beta[c]);
  }
}

template <class S>
__global__ void bn_backward_params_kernel(const S* dy, const S* x, const float* mean, const float* var,
                                          float* dgamma, float* dbeta, MnnNormParams p) {
  __shared__ float shared[32];
  const int c = blockIdx.x;
  const int64_t count = (int64_t)p.n * p.s;
  const float m = mean[c];
  float sd = 0.f, sxd = 0.f;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const int64_t i = channel_index(k, c, p);
    const float d = load(dy, i);
    sd += d;
    sxd += d * (load(x, i) - m);
  }
  sd = block_sum(sd, shared);
  sxd = block_sum(sxd, shared);
  if (threadIdx.x == 0) {
    dbeta[c] = sd;
    dgamma[c] = sxd * inv_std(var[c], p.epsilon);
  }
}

template <class S>
__global__ void bn_backward_kernel(const S* dy, const S* x, const float* gamma, const float* mean, const float* var,
                                   const float* dgamma, const float* dbeta, S* dx, MnnNormParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.s;
  const bool batch = p.flags & MNN_NORM_BATCH_STATISTICS;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int c = (int)((i / p.s) % p.c);
    const float is = inv_std(var[c], p.epsilon), a = gamma[c] * is, d = load(dy, i);
    if (!batch) {
      store(dx, i, a * d);
      continue;
    }
    // dx = gamma is (dy - dbeta / M - xhat dgamma / M)
    store(dx, i, a * (d - dbeta[c] / p.count - (load(x, i) - mean[c]) * is * dgamma[c] / p.count));
  }
}

// Group q = (n, g) is the contiguous block [q L, (q + 1) L), L = (c / groups) s.
template <class S>
__global__ void gn_forward_kernel(const S* x, const float* gamma, const float* beta, S* y, float* mean,
                                  float* inv_std_out, MnnNormParams p) {
  __shared__ float shared[32];
  const int64_t q = blockIdx.x, cg = p.c / p.groups, L = cg * p.s, base = q * L, c0 = (q % p.groups) * cg;
  float acc = 0.f;
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) acc += load(x, base + k);
  const float m = block_sum(acc, shared) / (float)L;
  float sq = 0.f;
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) {
    const float d = load(x, base + k) - m;
    sq += d * d;
  }
  const float is = inv_std(block_sum(sq, shared) / (float)L, p.epsilon);
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) {
    const int64_t c = c0 + k / p.s;
    store(y, base + k, (load(x, base + k) - m) * (gamma[c] * is) + beta[c]);
  }
  if (threadIdx.x == 0) {
    mean[q] = m;
    inv_std_out[q] = is;
  }
}

template <class S>
__global__ void gn_backward_kernel(const S* dy, const S* x, const float* gamma, const float* mean,
                                   const float* inv_std_in, S* dx, MnnNormParams p) {
  __shared__ float shared[32];
  const int64_t q = blockIdx.x, cg = p.c / p.groups, L = cg * p.s, base = q * L, c0 = (q % p.groups) * cg;
  const float m = mean[q], is = inv_std_in[q];
  float sg = 0.f, sgx = 0.f;  // sum gamma dy, sum gamma dy (x - mean)
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) {
    const float g = gamma[c0 + k / p.s] * load(dy, base + k);
    sg += g;
    sgx += g * (load(x, base + k) - m);
  }
  sg = block_sum(sg, shared);
  sgx = block_sum(sgx, shared);
  const float mg = is * sg / (float)L, mx = is * is * is * sgx / (float)L;
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) {
    const float a = is * gamma[c0 + k / p.s];
    store(dx, base + k, a * load(dy, base + k) - mg - (load(x, base + k) - m) * mx);
  }
}

template <class S>
__global__ void gn_backward_params_kernel(const S* dy, const S* x, const float* mean, const float* inv_std_in,
                                          float* dgamma, float* dbeta, MnnNormParams p) {
  __shared__ float shared[32];
  const int c = blockIdx.x, g = c / (p.c / p.groups);
  const int64_t count = (int64_t)p.n * p.s;
  float sd = 0.f, sxd = 0.f;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const int64_t i = channel_index(k, c, p), q = (k / p.s) * p.groups + g;
    const float d = load(dy, i);
    sd += d;
    sxd += d * (load(x, i) - mean[q]) * inv_std_in[q];
  }
  sd = block_sum(sd, shared);
  sxd = block_sum(sxd, shared);
  if (threadIdx.x == 0) {
    dbeta[c] = sd;
    dgamma[c] = sxd;
  }
}

// Cross-channel: q_c = delta + alpha / size * sum_{j in [c - size/2, c + (size-1)/2]} x_j^2.
template <class S>
__device__ float lrn_q(const S* x, int64_t plane0, const MnnNormParams& p, int c) {
  const int lo = max(0, c - p.size / 2), hi = min(p.c - 1, c + (p.size - 1) / 2);
  float acc = 0.f;
  for (int j = lo; j <= hi; ++j) {
    const float v = load(x, plane0 + (int64_t)j * p.s);
    acc += v * v;
  }
  return p.delta + p.alpha / (float)p.size * acc;
}

template <class S>
__global__ void lrn_forward_kernel(const S* x, S* y, MnnNormParams p) {
  const int64_t cs = (int64_t)p.c * p.s, total = (int64_t)p.n * cs;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int c = (int)((i / p.s) % p.c);
    const int64_t plane0 = (i / cs) * cs + i % p.s;
    store(y, i, load(x, i) * powf(lrn_q(x, plane0, p, c), -p.beta));
  }
}

template <class S>
__global__ void lrn_backward_kernel(const S* dy, const S* x, S* dx, MnnNormParams p) {
  const int64_t cs = (int64_t)p.c * p.s, total = (int64_t)p.n * cs;
  const float k2 = 2.f * p.alpha * p.beta / (float)p.size;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int j = (int)((i / p.s) % p.c);
    const int64_t plane0 = (i / cs) * cs + i % p.s;
    float out = load(dy, i) * powf(lrn_q(x, plane0, p, j), -p.beta);
    // The channels whose window holds j: [j - (size-1)/2, j + size/2].
    const int lo = max(0, j - (p.size - 1) / 2), hi = min(p.c - 1, j + p.size / 2);
    float acc = 0.f;
    for (int c = lo; c <= hi; ++c) {
      const int64_t ic = plane0 + (int64_t)c * p.s;
      const float q = lrn_q(x, plane0, p, c);
      acc += load(dy, ic) * load(x, ic) * powf(q, -p.beta) / q;
    }
    store(dx, i, out - k2 * load(x, i) * acc);
  }
}

template <class S>
const S* in(const Tensor& t) { return t.data<S>(); }
template <class S>
S* out(const Tensor& t) { return t.data<S>(); }

int64_t elements(const MnnNormParams& p) { return (int64_t)p.n * p.c * p.s; }

// Runs fn.template operator()<S>() with S the storage type of `t`.
template <class Fn>
void by_dtype(const Tensor& t, Fn&& fn) {
  if (t.dtype() == DType::float16) fn((__half*)nullptr);
  else fn((float*)nullptr);
}

}  // namespace

void batch_norm_statistics(const Tensor& x, const Tensor& mean, const Tensor& var, const MnnNormParams& p) {
  auto s = current_stream();
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    bn_statistics_kernel<S><<<p.c, kReduceBlock, 0, s>>>(in<S>(x), mean.data<float>(), var.data<float>(), p);
  });
  check_launch("batch_norm_forward");
}

void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, const MnnNormParams& p) {
  bn_update_running_kernel<<<grid_for(p.c), kBlock, 0, current_stream()>>>(
      running_mean.data<float>(), running_var.data<float>(), mean.data<float>(), var.data<float>(), p);
  check_launch("batch_norm_forward");
}

void batch_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                        const Tensor& var, const Tensor& y, const MnnNormParams& p) {
  auto s = current_stream();
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    bn_forward_kernel<S><<<grid_for(elements(p)), kBlock, 0, s>>>(in<S>(x), gamma.data<float>(), beta.data<float>(),
                                                                  mean.data<float>(), var.data<float>(), out<S>(y), p);
  });
  check_launch("batch_norm_forward");
}

void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& var, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p) {
  auto s = current_stream();
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    bn_backward_params_kernel<S><<<p.c, kReduceBlock, 0, s>>>(in<S>(dy), in<S>(x), mean.data<float>(),
                                                               var.data<float>(), dgamma.data<float>(),
                                                               dbeta.data<float>(), p);
    // Same stream: dx reads dgamma / dbeta after they are written.
    bn_backward_kernel<S><<<grid_for(elements(p)), kBlock, 0, s>>>(
        in<S>(dy), in<S>(x), gamma.data<float>(), mean.data<float>(), var.data<float>(), dgamma.data<float>(),
        dbeta.data<float>(), out<S>(dx), p);
  });
  check_launch("batch_norm_backward");
}

void group_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                        const Tensor& mean, const Tensor& inv_std, const MnnNormParams& p) {
  auto s = current_stream();
  const unsigned blocks = (unsigned)((int64_t)p.n * p.groups);
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    gn_forward_kernel<S><<<blocks, kReduceBlock, 0, s>>>(in<S>(x), gamma.data<float>(), beta.data<float>(),
                                                          out<S>(y), mean.data<float>(), inv_std.data<float>(), p);
  });
  check_launch("group_norm_forward");
}

void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& inv_std, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p) {
  auto s = current_stream();
  const unsigned blocks = (unsigned)((int64_t)p.n * p.groups);
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    gn_backward_kernel<S><<<blocks, kReduceBlock, 0, s>>>(in<S>(dy), in<S>(x), gamma.data<float>(),
                                                           mean.data<float>(), inv_std.data<float>(), out<S>(dx), p);
    gn_backward_params_kernel<S><<<p.c, kReduceBlock, 0, s>>>(in<S>(dy), in<S>(x), mean.data<float>(),
                                                               inv_std.data<float>(), dgamma.data<float>(),
                                                               dbeta.data<float>(), p);
  });
  check_launch("group_norm_backward");
}

void cross_channel_norm_forward(const Tensor& x, const Tensor& y, const MnnNormParams& p) {
  auto s = current_stream();
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    lrn_forward_kernel<S><<<grid_for(elements(p)), kBlock, 0, s>>>(in<S>(x), out<S>(y), p);
  });
  check_launch("cross_channel_norm_forward");
}

void cross_channel_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNormParams& p) {
  auto s = current_stream();
  by_dtype(x, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    lrn_backward_kernel<S><<<grid_for(elements(p)), kBlock, 0, s>>>(in<S>(dy), in<S>(x), out<S>(dx), p);
  });
  check_launch("cross_channel_norm_backward");
}

}  // namespace metalnn::cuda
