// The fused layer epilogue on CUDA: bias + neuron after a convolution or fully connected GEMM
// (one pass over the output, 16-byte packs where the pointers allow).
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/layer.h"
#include "metalnn/backend/cuda/neuron.h"
#include "metalnn/backend/cuda/neuron_math.cuh"

namespace metalnn::cuda {
namespace {

// Fused layer epilogue: z = acc + bias, y = f(z), rounded once. acc (float32, or float16
// from a float16 cuDNN convolution) is (N, O, P), or (O, N, P) when o_major (a convolution's
// GEMM); y and z are (N, O, P). I: the index type (32-bit divisions when the sizes fit).
template <uint32_t T, class A, class S, class I>
__global__ void epilogue_kernel(const A* acc, const S* bias, S* y, S* z, I N, I O, I P, bool o_major, Co q) {
  const I total = N * O * P;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    I p = i % P, o = (i / P) % O, n = i / (P * O);
    float v = load(acc, o_major ? (o * N + n) * P + p : i);
    if (bias) v += load(bias, o);
    if (z) store(z, i, v);
    store(y, i, fwd<T>(v, q));
  }
}

// Packs of V = Pack<S>::n outputs (acc read as V / Pack<A>::n packs); the channel advances
// within a pack, so any P works. The last total % V items go one by one.
template <uint32_t T, class A, class S, class I>
__global__ void epilogue_vec_kernel(const A* acc, const S* bias, S* y, S* z, I total, I O, I P, Co q) {
  constexpr int V = Pack<S>::n, VA = Pack<A>::n;
  static_assert(V % VA == 0, "acc packs must tile an output pack");
  const I first = blockIdx.x * (I)blockDim.x + threadIdx.x, stride = (I)gridDim.x * blockDim.x, packs = total / V;
  for (I i = first; i < packs; i += stride) {
    float f[V], zf[V];
#pragma unroll
    for (int k = 0; k < V / VA; ++k) load_pack(acc, (int64_t)i * (V / VA) + k, f + k * VA);
    I r = (i * V) % P, o = ((i * V) / P) % O;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      zf[k] = bias ? f[k] + load(bias, o) : f[k];
      f[k] = fwd<T>(zf[k], q);
      if (++r == P) {
        r = 0;
        o = o + 1 == O ? 0 : o + 1;
      }
    }
    if (z) store_pack(z, i, zf);
    store_pack(y, i, f);
  }
  for (I i = packs * V + first; i < total; i += stride) {
    float v = load(acc, i);
    if (bias) v += load(bias, (i / P) % O);
    if (z) store(z, i, v);
    store(y, i, fwd<T>(v, q));
  }
}

template <uint32_t T, class A, class S, class I>
void launch_epilogue_i(const A* acc, const S* bias, S* y, S* z, I N, I O, I P, bool o_major, const Co& q) {
  const I n = N * O * P;
  auto s = current_stream();
  // Packs for 32-bit indices only (tensors past 2^31 elements take the scalar kernel): half the
  // instantiations to compile.
  if constexpr (sizeof(I) == 4) {
    if (!o_major && aligned16(acc) && aligned16(y) && aligned16(z)) {
      epilogue_vec_kernel<T, A, S, I><<<grid_for_items(n, Pack<S>::n), kBlock, 0, s>>>(acc, bias, y, z, n, O, P, q);
      return;
    }
  }
  epilogue_kernel<T, A, S, I><<<grid_for(n), kBlock, 0, s>>>(acc, bias, y, z, N, O, P, o_major, q);
}

template <uint32_t T, class A, class S>
void launch_epilogue(const A* acc, const Tensor* bias, const Tensor& y, const Tensor* z, int64_t N, int64_t O,
                     int64_t P, bool o_major, const MnnNeuronParams& p) {
  const S* b = bias ? bias->data<S>() : nullptr;
  S* zp = z ? z->data<S>() : nullptr;
  // 32-bit indices when every index (plus one grid stride) fits.
  if (N * O * P < ((int64_t)1 << 31) - ((int64_t)65535 * kBlock))
    launch_epilogue_i<T, A, S, uint32_t>(acc, b, y.data<S>(), zp, (uint32_t)N, (uint32_t)O, (uint32_t)P, o_major,
                                         coefficients(p));
  else
    launch_epilogue_i<T, A, S, int64_t>(acc, b, y.data<S>(), zp, N, O, P, o_major, coefficients(p));
}

template <class A, class S>
void epilogue_by_type(const A* acc, const Tensor* bias, const Tensor& y, const Tensor* z, int64_t N, int64_t O,
                      int64_t P, bool o_major, const MnnNeuronParams& p) {
  switch (p.type) {
#define MNN_CASE(T) \
  case T: launch_epilogue<T, A, S>(acc, bias, y, z, N, O, P, o_major, p); break;
    MNN_FOR_EACH_NEURON(MNN_CASE)
#undef MNN_CASE
    default: break;
  }
}

}  // namespace

void bias_neuron_epilogue(const char* op, const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z,
                          int64_t N, int64_t O, int64_t P, bool o_major, const MnnNeuronParams& p) {
  if (N * O * P == 0) return;
  if (y.dtype() == DType::float16) epilogue_by_type<float, __half>(acc, bias, y, z, N, O, P, o_major, p);
  else epilogue_by_type<float, float>(acc, bias, y, z, N, O, P, o_major, p);
  check_launch(op);
}

void bias_neuron_epilogue_half_acc(const char* op, const void* acc, const Tensor* bias, const Tensor& y,
                                   const Tensor* z, int64_t N, int64_t O, int64_t P, const MnnNeuronParams& p) {
  if (N * O * P == 0) return;
  epilogue_by_type<__half, __half>(static_cast<const __half*>(acc), bias, y, z, N, O, P, false, p);
  check_launch(op);
}

}  // namespace metalnn::cuda
