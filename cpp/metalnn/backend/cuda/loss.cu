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
