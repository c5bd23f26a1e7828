#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/neuron.h"
#include "metalnn/backend/cuda/neuron_math.cuh"

namespace metalnn::cuda {
namespace {

// Element-wise kernels take 16-byte packs when every pointer is aligned (vec), then the
// last n % pack items one by one; with vec false every item takes the scalar loop.
template <uint32_t T, class S>
__global__ void neuron_forward_kernel(const S* x, S* y, int64_t n, Co q, bool vec) {
  constexpr int V = Pack<S>::n;
  const int64_t first = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t packs = vec ? n / V : 0;
  for (int64_t i = first; i < packs; i += stride) {
    float f[V];
    load_pack(x, i, f);
#pragma unroll
    for (int k = 0; k < V; ++k) f[k] = fwd<T>(f[k], q);
    store_pack(y, i, f);
  }
  for (int64_t i = packs * V + first; i < n; i += stride) store(y, i, fwd<T>(load(x, i), q));
}

// A NaN input gives a NaN gradient, as on the CPU.
template <uint32_t T>
__device__ __forceinline__ float grad(float g, float xv, const Co& q) {
  return xv != xv ? xv : g * deriv<T>(xv, q);
}

template <uint32_t T, class S>
__global__ void neuron_backward_kernel(const S* dy, const S* x, S* dx, int64_t n, Co q, bool vec) {
  constexpr int V = Pack<S>::n;
  const int64_t first = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t packs = vec ? n / V : 0;
  for (int64_t i = first; i < packs; i += stride) {
    float g[V], xv[V];
    load_pack(dy, i, g);
    load_pack(x, i, xv);
#pragma unroll
    for (int k = 0; k < V; ++k) g[k] = grad<T>(g[k], xv[k], q);
    store_pack(dx, i, g);
  }
  for (int64_t i = packs * V + first; i < n; i += stride) store(dx, i, grad<T>(load(dy, i), load(x, i), q));
}

template <uint32_t T, class S>
void launch(bool backward, const Tensor* dy, const Tensor& x, const Tensor& out, const MnnNeuronParams& p) {
  int64_t n = x.numel();
  if (!n) return;
  auto s = current_stream();
  bool vec = aligned16(x.raw()) && aligned16(out.raw()) && (!backward || aligned16(dy->raw()));
  unsigned grid = grid_for_items(n, vec ? Pack<S>::n : 1);
  if (backward)
    neuron_backward_kernel<T, S><<<grid, kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), out.data<S>(), n,
                                                         coefficients(p), vec);
  else
    neuron_forward_kernel<T, S><<<grid, kBlock, 0, s>>>(x.data<S>(), out.data<S>(), n, coefficients(p), vec);
}

template <class S>
void by_type(bool backward, const Tensor* dy, const Tensor& x, const Tensor& out, const MnnNeuronParams& p) {
  switch (p.type) {
#define MNN_CASE(T) \
  case T: launch<T, S>(backward, dy, x, out, p); break;
    MNN_FOR_EACH_NEURON(MNN_CASE)
#undef MNN_CASE
    default: break;
  }
}

void run(const char* op, bool backward, const Tensor* dy, const Tensor& x, const Tensor& out,
         const MnnNeuronParams& p) {
  if (x.dtype() == DType::float16) by_type<__half>(backward, dy, x, out, p);
  else by_type<float>(backward, dy, x, out, p);
  check_launch(op);
}

// ---- PReLU over x as (outer, channels, inner); slopes (channels).
template <class S>
__global__ void prelu_forward_kernel(const S* x, const S* slopes, S* y, int64_t n, int64_t inner, int64_t channels) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = load(x, i);
    store(y, i, v >= 0.f ? v : load(slopes, (i / inner) % channels) * v);
  }
}

template <class S>
__global__ void prelu_backward_input_kernel(const S* dy, const S* x, const S* slopes, S* dx, int64_t n, int64_t inner,
                                            int64_t channels) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = load(x, i), g = load(dy, i);
    // A NaN input gives a NaN gradient, as on the CPU.
    store(dx, i, v != v ? v : (v >= 0.f ? g : load(slopes, (i / inner) % channels) * g));
  }
}

// One block (kBlock threads) per channel: strided partials, then a shared-memory tree sum.
template <class S>
__global__ void prelu_backward_slopes_kernel(const S* dy, const S* x, S* ds, int64_t outer, int64_t inner,
                                             int64_t channels) {
  __shared__ float part[kBlock];
  const int64_t c = blockIdx.x, per = outer * inner;
  float acc = 0.f;
  for (int64_t e = threadIdx.x; e < per; e += blockDim.x) {
    const int64_t i = ((e / inner) * channels + c) * inner + e % inner;
    const float v = load(x, i);
    acc += v >= 0.f ? 0.f : load(dy, i) * v;  // a NaN x propagates
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) store(ds, c, part[0]);
}

template <class S>
void prelu_launch(int which, const Tensor* dy, const Tensor& x, const Tensor& slopes, const Tensor& out,
                  const MnnPReLUParams& p) {
  const int64_t n = x.numel(), inner = p.inner, channels = p.channels;
  auto s = current_stream();
  if (which == 2) {
    if (channels)
      prelu_backward_slopes_kernel<S><<<(unsigned)channels, kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), out.data<S>(),
                                                                            (int64_t)p.outer, inner, channels);
    return;
  }
  if (!n) return;
  if (which == 0)
    prelu_forward_kernel<S><<<grid_for(n), kBlock, 0, s>>>(x.data<S>(), slopes.data<S>(), out.data<S>(), n, inner,
                                                            channels);
  else
    prelu_backward_input_kernel<S><<<grid_for(n), kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), slopes.data<S>(),
                                                                   out.data<S>(), n, inner, channels);
}

void prelu_run(const char* op, int which, const Tensor* dy, const Tensor& x, const Tensor& slopes, const Tensor& out,
               const MnnPReLUParams& p) {
  if (x.dtype() == DType::float16) prelu_launch<__half>(which, dy, x, slopes, out, p);
  else prelu_launch<float>(which, dy, x, slopes, out, p);
  check_launch(op);
}

}  // namespace

void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p) {
  prelu_run("prelu_forward", 0, nullptr, x, slopes, y, p);
}

void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p) {
  prelu_run("prelu_backward_input", 1, &dy, x, slopes, dx, p);
}

// The slopes tensor is unused here: prelu_run takes one for the elementwise kernels.
void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p) {
  prelu_run("prelu_backward_slopes", 2, &dy, x, ds, ds, p);
}

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p) {
  run("neuron_forward", false, nullptr, x, y, p);
}

void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p) {
  run("neuron_backward", true, &dy, x, dx, p);
}

}  // namespace metalnn::cuda
