#include "metalnn/backend/cuda/blas.h"
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/cudnn.h"
#include "metalnn/backend/cuda/layer.h"
#include "metalnn/backend/cuda/neuron.h"
#include "metalnn/backend/cuda/device.h"

namespace metalnn::cuda {
namespace {

#define MNN_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

bool is_half(const Tensor& t) { return t.dtype() == DType::float16; }

// The im2col fallback (no cuDNN, or parameters it does not take) sums in float32 only.
void no_half_accumulation(const char* op, uint32_t acc) {
  if (acc == MNN_ACCUMULATE_HALF)
    fail(ErrorKind::Value, op, "accumulation='half' needs cuDNN on CUDA for these parameters (use 'float')");
}

// The layer epilogue is needed unless it would copy y onto itself.
bool needs_epilogue(const MnnConv2dParams& p, const MnnNeuronParams& neuron, const Tensor& z) {
  return p.has_bias || neuron.type != MNN_NEURON_NONE || z.defined();
}

Tensor scratch(int64_t n, DType dt) { return Tensor::empty({n}, dt, Device{DeviceType::cuda, 0}); }

// col[r][n * P + q], r = (c * kH + i) * kW + j: the input patch values of output q.
template <class S>
__global__ void im2col_kernel(const S* x, S* col, MnnConv2dParams p) {
  const int64_t P = (int64_t)p.out_height * p.out_width, NP = P * p.batch;
  const int64_t total = (int64_t)p.in_channels * p.kernel_height * p.kernel_width * NP;
  MNN_GRID_LOOP(e, total) {
    int64_t r = e / NP, col_i = e % NP, n = col_i / P, q = col_i % P;
    int j = (int)(r % p.kernel_width), i = (int)((r / p.kernel_width) % p.kernel_height);
    int64_t c = r / ((int64_t)p.kernel_width * p.kernel_height);
    int oh = (int)(q / p.out_width), ow = (int)(q % p.out_width);
    int h = oh * p.stride_y - p.pad_top + i * p.dilation_y, w = ow * p.stride_x - p.pad_left + j * p.dilation_x;
    float v = 0.f;
    if (h >= 0 && h < p.in_height && w >= 0 && w < p.in_width)
      v = load(x, ((n * p.in_channels + c) * p.in_height + h) * p.in_width + w);
    store(col, e, v);
  }
}

// dx[n, c, h, w] = sum of the column entries that read it (a gather: no atomics).
template <class S>
__global__ void col2im_kernel(const float* col, S* dx, MnnConv2dParams p) {
  const int64_t P = (int64_t)p.out_height * p.out_width, NP = P * p.batch;
  const int64_t total = (int64_t)p.batch * p.in_channels * p.in_height * p.in_width;
  MNN_GRID_LOOP(e, total) {
    int w = (int)(e % p.in_width), h = (int)((e / p.in_width) % p.in_height);
    int64_t c = (e / ((int64_t)p.in_width * p.in_height)) % p.in_channels;
    int64_t n = e / ((int64_t)p.in_width * p.in_height * p.in_channels);
    float acc = 0.f;
    for (int i = 0; i < p.kernel_height; ++i) {
      int t = h + p.pad_top - i * p.dilation_y;
      if (t < 0 || t % p.stride_y) continue;
      int oh = t / p.stride_y;
      if (oh >= p.out_height) continue;
      for (int j = 0; j < p.kernel_width; ++j) {
        int u = w + p.pad_left - j * p.dilation_x;
        if (u < 0 || u % p.stride_x) continue;
        int ow = u / p.stride_x;
        if (ow >= p.out_width) continue;
        int64_t r = (c * p.kernel_height + i) * p.kernel_width + j;
        acc += col[r * NP + n * P + (int64_t)oh * p.out_width + ow];
      }
    }
    store(dx, e, acc);
  }
}

// (N, O, P) -> (O, N, P), so each group's gradient is one matrix for the GEMMs.
template <class S>
__global__ void to_o_major_kernel(const S* src, S* dst, int64_t N, int64_t O, int64_t P) {
  MNN_GRID_LOOP(e, N * O * P) {
    int64_t q = e % P, n = (e / P) % N, o = e / (P * N);
    dst[e] = src[(n * O + o) * P + q];
  }
}

// Bias gradient in two or three passes, every one spread over the whole GPU (one block
// per channel left most SMs idle and took ~0.5 ms at batch 1024): (1) for images, one warp
// sums each (n, o) row of `inner` positions; (2) column sums of the (N, O) row sums over
// chunks of n; (3) the chunks' partial sums, in a fixed order (deterministic, no atomics).
template <class S>
__global__ void row_sum_kernel(const S* dy, float* rows, int64_t num_rows, int64_t inner) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; r < num_rows; r += warps) {
    const S* row = dy + r * inner;
    float acc = 0.f;
    for (int64_t q = lane; q < inner; q += 32) acc += load(row, q);
    for (int k = 16; k > 0; k >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, k);
    if (lane == 0) rows[r] = acc;
  }
}

// partial[s][o] = sum of m[n][o] over n in chunk s (m is (N, O) row-major).
template <class S>
__global__ void column_sum_kernel(const S* m, float* partial, int64_t N, int64_t O, int64_t chunk) {
  const int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o >= O) return;
  const int64_t n0 = blockIdx.y * chunk, n1 = n0 + chunk < N ? n0 + chunk : N;
  float acc = 0.f;
  for (int64_t n = n0; n < n1; ++n) acc += load(m, n * O + o);
  partial[blockIdx.y * O + o] = acc;
}

template <class S>
__global__ void partial_sum_kernel(const float* partial, S* db, int64_t O, int chunks) {
  const int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o >= O) return;
  float acc = 0.f;
  for (int c = 0; c < chunks; ++c) acc += partial[c * O + o];
  store(db, o, acc);
}

template <class S>
void bias_backward_by_type(const Tensor& dy, const Tensor& db, int64_t N, int64_t O, int64_t inner) {
  auto s = current_stream();
  const S* src = dy.data<S>();
  Tensor rows;
  if (inner > 1) {
    rows = scratch(N * O, DType::float32);
    row_sum_kernel<S><<<grid_for(N * O * 32), kBlock, 0, s>>>(src, rows.data<float>(), N * O, inner);
  }
  // Enough chunks of n to fill the GPU, each at least 16 rows long.
  const int64_t col_blocks = (O + 127) / 128;
  int64_t chunks = (int64_t)512 / col_blocks;
  chunks = chunks < 1 ? 1 : chunks;
  chunks = chunks > (N + 15) / 16 ? (N + 15) / 16 : chunks;
  chunks = chunks < 1 ? 1 : chunks;
  const int64_t chunk = (N + chunks - 1) / chunks;
  chunks = (N + chunk - 1) / chunk;
  Tensor partial = scratch(chunks * O, DType::float32);
  dim3 grid((unsigned)col_blocks, (unsigned)chunks);
  if (inner > 1)
    column_sum_kernel<float><<<grid, 128, 0, s>>>(rows.data<float>(), partial.data<float>(), N, O, chunk);
  else
    column_sum_kernel<S><<<grid, 128, 0, s>>>(src, partial.data<float>(), N, O, chunk);
  partial_sum_kernel<S><<<(unsigned)col_blocks, 128, 0, s>>>(partial.data<float>(), db.data<S>(), O, (int)chunks);
}

Tensor im2col(const Tensor& x, const MnnConv2dParams& p) {
  int64_t rows = (int64_t)p.in_channels * p.kernel_height * p.kernel_width;
  int64_t NP = (int64_t)p.batch * p.out_height * p.out_width;
  Tensor col = scratch(rows * NP, x.dtype());
  auto s = current_stream();
  if (is_half(x)) im2col_kernel<<<grid_for(rows * NP), kBlock, 0, s>>>(x.data<__half>(), col.data<__half>(), p);
  else im2col_kernel<<<grid_for(rows * NP), kBlock, 0, s>>>(x.data<float>(), col.data<float>(), p);
  return col;
}

Tensor o_major(const Tensor& dy, int64_t N, int64_t O, int64_t P) {
  Tensor t = scratch(N * O * P, dy.dtype());
  auto s = current_stream();
  if (is_half(dy)) to_o_major_kernel<<<grid_for(N * O * P), kBlock, 0, s>>>(dy.data<__half>(), t.data<__half>(), N, O, P);
  else to_o_major_kernel<<<grid_for(N * O * P), kBlock, 0, s>>>(dy.data<float>(), t.data<float>(), N, O, P);
  return t;
}

}  // namespace

// Row-major Y (N, O) = X (N, F) W^T is column-major Y^T (O, N) = W^T' X^T: op(A) = T on W.
void fully_connected_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                             const MnnFullyConnectedParams& p, const MnnNeuronParams& neuron, const Tensor& z) {
  const char* op = "fully_connected_forward";
  int64_t N = p.batch, O = p.out_features, F = p.in_features;
  bool h = is_half(x);
  if (h && p.accumulation == MNN_ACCUMULATE_HALF) {
    // float16 sums: cuBLAS writes half, which the epilogue reads directly (no widening pass).
    Tensor hy = scratch(N * O, DType::float16);
    gemm(op, true, false, (int)O, (int)N, (int)F, w.raw(), (int)F, 0, x.raw(), (int)F, 0, hy.raw(), (int)O, 0, 1,
         true, true, 0.f, true);
    bias_neuron_epilogue_half_acc(op, hy.raw(), p.has_bias ? &bias : nullptr, y, z.defined() ? &z : nullptr, N, O,
                                  1, neuron);
    return;
  }
  Tensor acc = h ? scratch(N * O, DType::float32) : y;
  gemm(op, true, false, (int)O, (int)N, (int)F, w.raw(), (int)F, 0, x.raw(), (int)F, 0, acc.raw(), (int)O, 0, 1, h,
       false);
  bias_neuron_epilogue(op, acc.data<float>(), p.has_bias ? &bias : nullptr, y, z.defined() ? &z : nullptr, N, O, 1,
                       false, neuron);
}

// dX (N, F) = dY (N, O) W (O, F): column-major dX^T (F, N) = W^T (F, O) dY^T (O, N).
void fully_connected_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const MnnFullyConnectedParams& p) {
  const char* op = "fully_connected_backward_input";
  int N = p.batch, O = p.out_features, F = p.in_features;
  gemm(op, false, false, F, N, O, w.raw(), F, 0, dy.raw(), O, 0, dx.raw(), F, 0, 1, is_half(dy), is_half(dx), 0.f,
       is_half(dy) && p.accumulation == MNN_ACCUMULATE_HALF);
}

// dW (O, F) = dY^T X: column-major dW^T (F, O) = X^T (F, N) dY (N, O).
void fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                                     const MnnFullyConnectedParams& p) {
  int N = p.batch, O = p.out_features, F = p.in_features;
  gemm("fully_connected_backward_weight", false, true, F, O, N, x.raw(), F, 0, dy.raw(), O, 0, dw.raw(), F, 0, 1,
       is_half(dy), is_half(dw));
}

// Per group g: Y_g (Og, NP) = W_g (Og, K) col_g (K, NP), i.e. column-major
// Y_g^T (NP, Og) = col_g^T W_g^T, batched over the groups; the epilogue puts it in NCHW.
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, const MnnConv2dParams& p,
                    const MnnNeuronParams& neuron, const Tensor& z) {
  const char* op = "conv2d_forward";
  const int64_t P0 = (int64_t)p.out_height * p.out_width;
  if (!is_half(x)) {
    // cuDNN writes y; the epilogue then adds the bias and applies the neuron in place.
    if (cudnn_conv_forward(op, x, w, y.raw(), p)) {
      if (needs_epilogue(p, neuron, z))
        bias_neuron_epilogue(op, y.data<float>(), p.has_bias ? &bias : nullptr, y, z.defined() ? &z : nullptr,
                             p.batch, p.out_channels, P0, false, neuron);
      return;
    }
  } else {
    // Half: cuDNN rounds its float32 sums to float16 once; the epilogue adds the bias to that
    // value in float32 and rounds again (as the widening pass it replaces did). Without an
    // epilogue cuDNN writes y itself.
    if (!needs_epilogue(p, neuron, z)) {
      if (cudnn_conv_forward(op, x, w, y.raw(), p)) return;
    } else {
      Tensor h = scratch(y.numel(), DType::float16);
      if (cudnn_conv_forward(op, x, w, h.raw(), p)) {
        bias_neuron_epilogue_half_acc(op, h.raw(), p.has_bias ? &bias : nullptr, y, z.defined() ? &z : nullptr,
                                      p.batch, p.out_channels, P0, neuron);
        return;
      }
    }
  }
  no_half_accumulation(op, p.accumulation);
  const int64_t G = p.groups, Og = p.out_channels / G, K = (int64_t)(p.in_channels / G) * p.kernel_height * p.kernel_width;
  const int64_t P = (int64_t)p.out_height * p.out_width, NP = P * p.batch;
  Tensor col = im2col(x, p);
  Tensor acc = scratch((int64_t)p.out_channels * NP, DType::float32);
  gemm(op, false, false, (int)NP, (int)Og, (int)K, col.raw(), (int)NP, K * NP, w.raw(), (int)K, Og * K, acc.raw(),
       (int)NP, Og * NP, (int)G, is_half(x), false);
  bias_neuron_epilogue(op, acc.data<float>(), p.has_bias ? &bias : nullptr, y, z.defined() ? &z : nullptr, p.batch,
                       p.out_channels, P, true, neuron);
}

// dcol_g (K, NP) = W_g^T dY_g: column-major dcol_g^T (NP, K) = dY_g^T (NP, Og) W_g (Og, K); then col2im.
void conv2d_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p) {
  const char* op = "conv2d_backward_input";
  if (cudnn_conv_backward_data(op, dy, w, dx, p)) return;
  no_half_accumulation(op, p.accumulation);
  const int64_t G = p.groups, Og = p.out_channels / G, K = (int64_t)(p.in_channels / G) * p.kernel_height * p.kernel_width;
  const int64_t P = (int64_t)p.out_height * p.out_width, NP = P * p.batch;
  Tensor dyo = o_major(dy, p.batch, p.out_channels, P);
  Tensor dcol = scratch(G * K * NP, DType::float32);
  gemm(op, false, true, (int)NP, (int)K, (int)Og, dyo.raw(), (int)NP, Og * NP, w.raw(), (int)K, Og * K, dcol.raw(),
       (int)NP, K * NP, (int)G, is_half(dy), false);
  int64_t n = dx.numel();
  auto s = current_stream();
  if (is_half(dx)) col2im_kernel<<<grid_for(n), kBlock, 0, s>>>(dcol.data<float>(), dx.data<__half>(), p);
  else col2im_kernel<<<grid_for(n), kBlock, 0, s>>>(dcol.data<float>(), dx.data<float>(), p);
  check_launch(op);
}

// dW_g (Og, K) = dY_g (Og, NP) col_g^T: column-major dW_g^T (K, Og) = col_g (K, NP) dY_g^T (NP, Og).
void conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  if (cudnn_conv_backward_filter(op, dy, x, dw, p)) return;
  const int64_t G = p.groups, Og = p.out_channels / G, K = (int64_t)(p.in_channels / G) * p.kernel_height * p.kernel_width;
  const int64_t P = (int64_t)p.out_height * p.out_width, NP = P * p.batch;
  Tensor col = im2col(x, p);
  Tensor dyo = o_major(dy, p.batch, p.out_channels, P);
  gemm(op, true, false, (int)K, (int)Og, (int)NP, col.raw(), (int)NP, K * NP, dyo.raw(), (int)NP, Og * NP, dw.raw(),
       (int)K, Og * K, (int)G, is_half(x), is_half(dw));
  check_launch(op);
}

void bias_backward(const Tensor& dy, const Tensor& db, int64_t n, int64_t o, int64_t inner) {
  if (o == 0) return;
  if (n * inner == 0) {
    fill_zero(db.raw(), db.nbytes(), "bias_backward");
    return;
  }
  if (is_half(dy)) bias_backward_by_type<__half>(dy, db, n, o, inner);
  else bias_backward_by_type<float>(dy, db, n, o, inner);
  check_launch("bias_backward");
}

}  // namespace metalnn::cuda
