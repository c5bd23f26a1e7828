#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/optimizer.h"

namespace metalnn::cuda {
namespace {

constexpr int kMaxSlots = 48;

// The tensors of one launch, passed by value as the kernel argument (about 2.3 KB).
struct SlotTable {
  int count;
  int64_t start[kMaxSlots + 1];  // prefix sums of the element counts
  void* w[kMaxSlots];
  const void* g[kMaxSlots];
  float* st[3][kMaxSlots];
};

struct Sgd {
  MnnSgdParams p;
  __device__ void prepare() {}
  __device__ float operator()(float w, float g, float* const* st, int64_t i) const {
    g = mnn_optimizer_gradient(p.common, g, w);
    float lr = p.common.learning_rate;
    float vn = p.has_momentum_buffer ? p.momentum * st[0][i] - lr * g : -lr * g;
    if (p.has_momentum_buffer) st[0][i] = vn;
    return w + (p.nesterov ? p.momentum * vn - lr * g : vn);
  }
};

struct Adam {
  MnnAdamParams p;
  AdamDeviceStep ds;
  // Once per thread: the bias-corrected rate from the device's step counter.
  __device__ void prepare() {
    if (!ds.step) return;
    double t = (double)(*ds.step + ds.offset);
    p.lr_t = (float)(ds.learning_rate * sqrt(1.0 - pow(ds.beta2, t)) / (1.0 - pow(ds.beta1, t)));
  }
  __device__ float operator()(float w, float g, float* const* st, int64_t i) const {
    g = mnn_optimizer_gradient(p.common, g, w);
    float m = p.beta1 * st[0][i] + p.one_minus_beta1 * g;
    float v = p.beta2 * st[1][i] + p.one_minus_beta2 * (g * g);
    st[0][i] = m;
    st[1][i] = v;
    if (p.amsgrad) {
      v = st[2][i] >= v ? st[2][i] : v;  // a NaN v reaches v_max too
      st[2][i] = v;
    }
    return w - p.lr_t * m / (sqrtf(v) + p.epsilon);
  }
};

struct RmsProp {
  MnnRmsPropParams p;
  __device__ void prepare() {}
  __device__ float operator()(float w, float g, float* const* st, int64_t i) const {
    g = mnn_optimizer_gradient(p.common, g, w);
    float s = p.decay * st[0][i] + p.one_minus_decay * (g * g);
    st[0][i] = s;
    return w - p.common.learning_rate * g / (sqrtf(s) + p.epsilon);
  }
};

// Grid-stride over the concatenation of all tensors; a thread finds its tensor by a short
// scan of the prefix sums (consecutive elements mostly share one).
template <class S, class Rule>
__global__ void step_kernel(SlotTable t, Rule rule) {
  rule.prepare();
  const int64_t total = t.start[t.count];
  int k = 0;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    while (e >= t.start[k + 1]) ++k;
    int64_t i = e - t.start[k];
    float* st[3] = {t.st[0][k], t.st[1][k], t.st[2][k]};
    S* w = static_cast<S*>(t.w[k]);
    const S* g = static_cast<const S*>(t.g[k]);
    store(w, i, rule(load(w, i), load(g, i), st, i));
  }
}

template <class Rule>
void run(const char* op, const std::vector<cpu::OptimizerSlot>& slots, const Rule& rule) {
  auto s = current_stream();
  for (int half = 0; half < 2; ++half) {
    SlotTable t{};
    auto flush = [&] {
      if (t.count == 0 || t.start[t.count] == 0) {
        t.count = 0;
        return;
      }
      int64_t n = t.start[t.count];
      if (half) step_kernel<__half><<<grid_for(n), kBlock, 0, s>>>(t, rule);
      else step_kernel<float><<<grid_for(n), kBlock, 0, s>>>(t, rule);
      check_launch(op);
      t = SlotTable{};
    };
    for (const auto& sl : slots) {
      if ((sl.weights->dtype() == DType::float16) != (half == 1) || sl.weights->numel() == 0) continue;
      int k = t.count;
      t.w[k] = sl.weights->raw();
      t.g[k] = sl.gradients->raw();
      for (int j = 0; j < 3; ++j) t.st[j][k] = sl.state[j];
      t.start[k + 1] = t.start[k] + sl.weights->numel();
      if (++t.count == kMaxSlots) flush();
    }
    flush();
  }
}

}  // namespace

void sgd_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnSgdParams& p) { run("sgd_step", slots, Sgd{p}); }
void adam_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnAdamParams& p, const AdamDeviceStep& ds) {
  run("adam_step", slots, Adam{p, ds});
}
void rmsprop_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnRmsPropParams& p) {
  run("rmsprop_step", slots, RmsProp{p});
}

}  // namespace metalnn::cuda
