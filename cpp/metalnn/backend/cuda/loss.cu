#include "kernels/loss_math.h"
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/loss.h"

namespace metalnn::cuda {
namespace {

// One thread per position (n, s); channels are s apart, so neighbours read coalesced.
template <class S>
__global__ void sce_forward_kernel(const S* x, const int32_t* idx, const float* lab, const float* w, float* probs,
                                   float* out, MnnSoftmaxCrossEntropyParams p) {
  const int64_t positions = (int64_t)p.n * p.s;
  const float ls = p.label_smoothing, keep = 1.f - ls, spread = ls / (float)p.c;
  for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < positions;
       q += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = q / p.s, s = q % p.s, base = n * (int64_t)p.c * p.s + s;
    float m = -INFINITY;
    bool nan = false;
    for (int c = 0; c < p.c; ++c) {
      float v = load(x, base + (int64_t)c * p.s);
      nan |= v != v;
      m = fmaxf(m, v);
    }
    if (nan) m = NAN;
    float sum = 0.f;
    for (int c = 0; c < p.c; ++c) sum += expf(load(x, base + (int64_t)c * p.s) - m);
    float lse = m + logf(sum);
    float l = 0.f, lsum = 0.f;
    int32_t label = idx ? idx[q] : -1;
    for (int c = 0; c < p.c; ++c) {
      int64_t i = base + (int64_t)c * p.s;
      float lp = load(x, i) - lse;
      probs[i] = expf(lp);
      if (idx) {
        if (c == label) l -= keep * lp;
        lsum += lp;
      } else {
        float t = keep * lab[i] + spread;
        if (t != 0.f) l -= t * lp;  // 0 * log(0) counts as 0
      }
    }
    if (idx && ls > 0.f) l -= spread * lsum;
    if (w) l *= w[n];
    out[q] = l;
  }
}

// One block sums the per-position losses in double (as the CPU does), then scales.
__global__ void reduce_kernel(const float* v, int64_t n, float* out, int mean) {
  __shared__ double part[kBlock];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += v[i];
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = (float)(mean ? part[0] / (double)n : part[0]);
}

template <class S, class D>
__global__ void sce_backward_kernel(const float* probs, const int32_t* idx, const float* lab, const float* w,
                                    const D* dloss, S* g, MnnSoftmaxCrossEntropyParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.s;
  const float ls = p.label_smoothing, keep = 1.f - ls, spread = ls / (float)p.c;
  const float scalar = p.dloss_per_position ? 1.f : load(dloss, 0);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t s = i % p.s, c = (i / p.s) % p.c, n = i / ((int64_t)p.s * p.c), q = n * p.s + s;
    float f = p.scale * scalar;
    if (p.dloss_per_position) f *= load(dloss, q);
    if (w) f *= w[n];
    float t = idx ? (idx[q] == c ? keep : 0.f) + spread : keep * lab[i] + spread;
    store(g, i, f * (probs[i] - t));
  }
}

template <class S, class D>
void backward_launch(const Tensor& probs, const int32_t* idx, const float* lab, const float* w, const Tensor& dloss,
                     const Tensor& dlogits, const MnnSoftmaxCrossEntropyParams& p) {
  int64_t n = dlogits.numel();
  sce_backward_kernel<S, D><<<grid_for(n), kBlock, 0, current_stream()>>>(probs.data<float>(), idx, lab, w,
                                                                          dloss.data<D>(), dlogits.data<S>(), p);
}

}  // namespace

void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& per_position, const Tensor& loss,
                                   const MnnSoftmaxCrossEntropyParams& p) {
  const int32_t* idx = p.index_labels ? labels.data<int32_t>() : nullptr;
  const float* lab = p.index_labels ? nullptr : labels.data<float>();
  const float* w = p.has_weights ? weights.data<float>() : nullptr;
  int64_t positions = (int64_t)p.n * p.s;
  auto s = current_stream();
  if (logits.dtype() == DType::float16)
    sce_forward_kernel<<<grid_for(positions), kBlock, 0, s>>>(logits.data<__half>(), idx, lab, w, probs.data<float>(),
                                                              per_position.data<float>(), p);
  else
    sce_forward_kernel<<<grid_for(positions), kBlock, 0, s>>>(logits.data<float>(), idx, lab, w, probs.data<float>(),
                                                              per_position.data<float>(), p);
  if (p.reduction != MNN_REDUCTION_NONE)
    reduce_kernel<<<1, kBlock, 0, s>>>(per_position.data<float>(), positions, loss.data<float>(),
                                       p.reduction == MNN_REDUCTION_MEAN);
  check_launch("softmax_cross_entropy_forward");
}

void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& weights,
                                    const Tensor& dloss, const Tensor& dlogits, const MnnSoftmaxCrossEntropyParams& p) {
  const int32_t* idx = p.index_labels ? labels.data<int32_t>() : nullptr;
  const float* lab = p.index_labels ? nullptr : labels.data<float>();
  const float* w = p.has_weights ? weights.data<float>() : nullptr;
  bool gh = dlogits.dtype() == DType::float16, dh = dloss.dtype() == DType::float16;
  if (gh && dh) backward_launch<__half, __half>(probs, idx, lab, w, dloss, dlogits, p);
  else if (gh) backward_launch<__half, float>(probs, idx, lab, w, dloss, dlogits, p);
  else if (dh) backward_launch<float, __half>(probs, idx, lab, w, dloss, dlogits, p);
  else backward_launch<float, float>(probs, idx, lab, w, dloss, dlogits, p);
  check_launch("softmax_cross_entropy_backward");
}

}  // namespace metalnn::cuda

// ------------------------------------------------------------------ generic loss and YOLO loss

namespace metalnn::cuda {
namespace {

__device__ __forceinline__ float term_weight(const float* w, const MnnLossParams& p, int64_t term, int64_t sample) {
  float v = p.weight;
  if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_SAMPLE) v *= w[sample];
  else if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_TERM) v *= w[term];
  return v;
}

// One thread per element (grid-stride).
template <class S>
__global__ void loss_elementwise_kernel(const S* x, const float* lab, const float* w, float* loss, float* grad,
                                        MnnLossParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.s, per_sample = (int64_t)p.c * p.s;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const float t = mnn_smooth_target(p.type, lab[i], p.label_smoothing, (float)p.c);
    const MnnLossValue v = mnn_loss_elementwise(p.type, load(x, i), t, p.delta, p.epsilon);
    const float wi = term_weight(w, p, i, i / per_sample);
    loss[i] = wi * v.loss;
    grad[i] = wi * v.grad;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Softmax cross-entropy / cosine distance: one warp per position, lanes striding over c.
template <class S>
__global__ void loss_grouped_kernel(const S* x, const float* lab, const float* w, float* loss, float* grad,
                                    MnnLossParams p) {
  const int64_t positions = (int64_t)p.n * p.s;
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  const float ls = p.label_smoothing, fc = (float)p.c;
  for (int64_t q = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); q < positions; q += warps) {
    const int64_t n = q / p.s, base = n * (int64_t)p.c * p.s + q % p.s;
    const float wq = term_weight(w, p, q, n);
    float acc = 0.f;
    if (p.type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY) {
      float m = -INFINITY;
      bool nan = false;
      for (int c = lane; c < p.c; c += 32) {
        const float v = load(x, base + (int64_t)c * p.s);
        nan |= v != v;
        m = fmaxf(m, v);
      }
      m = warp_max(m);
      if (__any_sync(0xffffffffu, nan)) m = NAN;  // fmaxf drops NaN: the whole position turns NaN
      float sum = 0.f;
      for (int c = lane; c < p.c; c += 32) sum += expf(load(x, base + (int64_t)c * p.s) - m);
      const float lse = m + logf(warp_sum(sum));
      float tsum = 0.f;
      for (int c = lane; c < p.c; c += 32) {
        const int64_t i = base + (int64_t)c * p.s;
        const float t = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, lab[i], ls, fc);
        tsum += t;
        if (t != 0.f) acc -= t * (load(x, i) - lse);
      }
      tsum = warp_sum(tsum);
      for (int c = lane; c < p.c; c += 32) {
        const int64_t i = base + (int64_t)c * p.s;
        const float t = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, lab[i], ls, fc);
        grad[i] = wq * (expf(load(x, i) - lse) * tsum - t);
      }
    } else {  // cosine distance: 1 - sum_c y t
      for (int c = lane; c < p.c; c += 32) {
        const int64_t i = base + (int64_t)c * p.s;
        const float y = load(x, i);
        acc -= y * lab[i];
        grad[i] = y != y ? y : -wq * lab[i];
      }
      if (lane == 0) acc += 1.f;
    }
    acc = warp_sum(acc);
    if (lane == 0) loss[q] = wq * acc;
  }
}

// One block folds every term in double (as the CPU does), then scales.
__global__ void reduce_terms_kernel(const float* v, int64_t n, float* out, float scale) {
  __shared__ double part[kBlock];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += v[i];
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = (float)(part[0] * (double)scale);
}

template <class S, class D>
__global__ void loss_backward_kernel(const float* grad, const D* dloss, S* out, MnnLossParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.s, cs = (int64_t)p.c * p.s;
  const bool grouped = mnn_loss_grouped(p.type);
  const float scalar = p.dloss_per_term ? 1.f : load(dloss, 0);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    float f = p.scale * scalar;
    if (p.dloss_per_term) f *= load(dloss, grouped ? (i / cs) * p.s + i % p.s : i);
    store(out, i, f * grad[i]);
  }
}

template <class S>
__global__ void yolo_kernel(const S* x, const float* lab, float* loss, float* grad, MnnYoloLossParams p) {
  const int64_t total = (int64_t)p.n * p.anchors * p.s;
  for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < total; q += (int64_t)gridDim.x * blockDim.x) {
    const int j = (int)(q % p.s), a = (int)((q / p.s) % p.anchors), n = (int)(q / ((int64_t)p.s * p.anchors));
    mnn_yolo_anchor(x, lab, loss, grad, p, n, a, j);
  }
}

template <class S, class D>
void backward_launch(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p) {
  const int64_t n = dpred.numel();
  loss_backward_kernel<S, D><<<grid_for(n), kBlock, 0, current_stream()>>>(grad.data<float>(), dloss.data<D>(),
                                                                           dpred.data<S>(), p);
}

}  // namespace

void loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& weights, const Tensor& loss,
                  const Tensor& grad, const MnnLossParams& p) {
  const float* lab = labels.data<float>();
  const float* w = p.weights_mode != MNN_LOSS_WEIGHTS_NONE ? weights.data<float>() : nullptr;
  float *l = loss.data<float>(), *g = grad.data<float>();
  auto s = current_stream();
  const bool half = predictions.dtype() == DType::float16;
  if (mnn_loss_grouped(p.type)) {
    const int64_t positions = (int64_t)p.n * p.s;
    const unsigned blocks = grid_for(positions, kBlock / 32);
    if (half) loss_grouped_kernel<<<blocks, kBlock, 0, s>>>(predictions.data<__half>(), lab, w, l, g, p);
    else loss_grouped_kernel<<<blocks, kBlock, 0, s>>>(predictions.data<float>(), lab, w, l, g, p);
  } else {
    const unsigned blocks = grid_for(predictions.numel());
    if (half) loss_elementwise_kernel<<<blocks, kBlock, 0, s>>>(predictions.data<__half>(), lab, w, l, g, p);
    else loss_elementwise_kernel<<<blocks, kBlock, 0, s>>>(predictions.data<float>(), lab, w, l, g, p);
  }
  check_launch("loss_forward");
}

void reduce_loss_terms(const Tensor& loss, const Tensor& out, const MnnLossParams& p) {
  reduce_terms_kernel<<<1, kBlock, 0, current_stream()>>>(loss.data<float>(), loss.numel(), out.data<float>(),
                                                          p.scale);
  check_launch("loss_forward");
}

void loss_backward(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p) {
  const bool gh = dpred.dtype() == DType::float16, dh = dloss.dtype() == DType::float16;
  if (gh && dh) backward_launch<__half, __half>(grad, dloss, dpred, p);
  else if (gh) backward_launch<__half, float>(grad, dloss, dpred, p);
  else if (dh) backward_launch<float, __half>(grad, dloss, dpred, p);
  else backward_launch<float, float>(grad, dloss, dpred, p);
  check_launch("loss_backward");
}

void yolo_loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& loss, const Tensor& grad,
                       const MnnYoloLossParams& p) {
  const int64_t total = (int64_t)p.n * p.anchors * p.s;
  auto s = current_stream();
  const float* lab = labels.data<float>();
  if (predictions.dtype() == DType::float16)
    yolo_kernel<<<grid_for(total), kBlock, 0, s>>>(predictions.data<__half>(), lab, loss.data<float>(),
                                                   grad.data<float>(), p);
  else
    yolo_kernel<<<grid_for(total), kBlock, 0, s>>>(predictions.data<float>(), lab, loss.data<float>(),
                                                   grad.data<float>(), p);
  check_launch("yolo_loss_forward");
}

}  // namespace metalnn::cuda
