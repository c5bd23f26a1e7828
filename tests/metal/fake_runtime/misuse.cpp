// Deliberate host bugs, one per scenario, to show the fake Metal runtime catches them, and
// host paths Python cannot reach (tests/test_metal_fake_runtime.py runs each in its own process):
//
//   fake_metal_misuse <scenario>
//
// Scenarios that Metal's API validation rejects abort with "validation error: ..." (the
// process dies of SIGABRT); `ok` and `optimizer_arenas*` exit 0, and `kernel_fault` (a kernel writing past its
// buffer) must make metal::run throw: it prints "exception: ..." and exits 3.
// The first ones go through the backend's own KernelCall / metal::run, as an op would.
#include <cstdio>
#include <cstring>
#include <string>

#include <cmath>
#include <vector>

#include "kernels/neuron_params.h"
#include "kernels/optimizer_params.h"
#include "metalnn/backend/cpu/optimizer.h"
#include "metalnn/backend/metal/optimizer.h"
#include "metalnn/backend/metal/buffers.h"
#include "metalnn/backend/metal/context.h"
#include "metalnn/backend/metal/device.h"
#include "metalnn/backend/metal/kernel.h"
#include "metalnn/backend/metal/pipelines.h"
#include "metalnn/backend/metal/stream.h"
#include "metalnn/core/error.h"
#include "metalnn/core/half.h"

using namespace metalnn;

namespace {

constexpr uint32_t kCount = 37;

Tensor input() {
  Tensor x = Tensor::empty({kCount}, DType::float32, Device{DeviceType::metal, 0});
  for (uint32_t i = 0; i < kCount; ++i) x.data<float>()[i] = (float)i - 18.0f;
  return x;
}

// A params struct one field short: what a host/MSL struct mismatch looks like.
struct ShortParams {
  uint32_t type;
  float a;
  float b;
};

MTL::Buffer* raw_buffer(size_t bytes) {
  return metal::require_device("misuse")->newBuffer(bytes, MTL::ResourceStorageModeShared);
}

// A raw command buffer with the neuron kernel bound correctly except for what `mess` changes.
template <class Mess>
void raw_dispatch(Mess mess) {
  NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
  const metal::Pipeline& p = metal::pipeline("neuron_forward_float32", "misuse");
  MTL::Buffer* x = raw_buffer(kCount * 4);
  MTL::Buffer* y = raw_buffer(kCount * 4);
  MTL::CommandBuffer* cb = metal::default_queue()->commandBuffer();
  MTL::ComputeCommandEncoder* e = cb->computeCommandEncoder();
  MnnNeuronParams params{MNN_NEURON_RELU, 0, 0, 0};
  uint32_t count = kCount;
  e->setComputePipelineState(p.state);
  e->setBuffer(x, 0, 0);
  e->setBuffer(y, 0, 1);
  e->setBytes(&params, sizeof params, 2);
  e->setBytes(&count, sizeof count, 3);
  mess(cb, e, y, count);
  pool->release();
}

// `kind` ("sgd", "adam", "rmsprop") over `sizes` tensors packed in arenas (one block each for
// weights, gradients and every state): the *_step_many path, which Python cannot reach (its
// tensors never share a block). With many slots the range table exceeds setBytes' 4 KiB and
// goes in a host-memory tensor. Two steps, compared with the CPU backend on copies.
int optimizer_arenas(const std::string& kind, DType dtype, const std::vector<int64_t>& sizes) {
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  const int nstate = kind == "adam" ? 3 : 1;
  const Device gpu{DeviceType::metal, 0};
  Tensor w = Tensor::empty({total}, dtype, gpu), g = Tensor::empty({total}, dtype, gpu);
  Tensor wc = Tensor::empty({total}, dtype), gc = Tensor::empty({total}, dtype);
  std::vector<Tensor> state, state_cpu;
  for (int i = 0; i < nstate; ++i) {
    state.push_back(Tensor::zeros({total}, DType::float32, gpu));
    state_cpu.push_back(Tensor::zeros({total}, DType::float32));
  }
  for (int64_t i = 0; i < total; ++i) {
    const float wv = std::sin(0.1f * (float)i), gv = std::cos(0.37f * (float)i);
    if (dtype == DType::float32) {
      w.data<float>()[i] = wc.data<float>()[i] = wv;
      g.data<float>()[i] = gc.data<float>()[i] = gv;
    } else {
      w.data<half>()[i] = wc.data<half>()[i] = half{float_to_half(wv)};
      g.data<half>()[i] = gc.data<half>()[i] = half{float_to_half(gv)};
    }
  }
  std::vector<Tensor> views, cpu_views;  // per slot: weights, gradients, states
  const size_t es = dtype_size(dtype);
  int64_t at = 0;
  for (int64_t n : sizes) {
    views.emplace_back(w.buffer(), Shape{n}, dtype, at * es);
    views.emplace_back(g.buffer(), Shape{n}, dtype, at * es);
    for (Tensor& t : state) views.emplace_back(t.buffer(), Shape{n}, DType::float32, at * 4);
    cpu_views.emplace_back(wc.buffer(), Shape{n}, dtype, at * es);
    cpu_views.emplace_back(gc.buffer(), Shape{n}, dtype, at * es);
    at += n;
  }
  const size_t per = 2 + nstate;
  std::vector<metal::OptimizerSlot> slots;
  std::vector<cpu::OptimizerSlot> cpu_slots;
  at = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    metal::OptimizerSlot ms{&views[per * i], &views[per * i + 1], {nullptr, nullptr, nullptr}};
    cpu::OptimizerSlot cs{&cpu_views[2 * i], &cpu_views[2 * i + 1], {nullptr, nullptr, nullptr}};
    for (int k = 0; k < nstate; ++k) {
      ms.state[k] = &views[per * i + 2 + k];
      cs.state[k] = state_cpu[k].data<float>() + at;
    }
    slots.push_back(ms);
    cpu_slots.push_back(cs);
    at += sizes[i];
  }
  MnnOptimizerParams common{};
  common.learning_rate = 0.01f;
  common.gradient_rescale = 1.0f;
  for (int step = 1; step <= 2; ++step) {
    if (kind == "sgd") {
      MnnSgdParams p{common, 0.9f, 0, 1, 0};
      metal::run("sgd_step_many", [&] { metal::sgd_step(slots, p); });
      cpu::sgd_step(cpu_slots, p);
    } else if (kind == "adam") {
      const double b1 = 0.9, b2 = 0.999;
      const float lr_t = (float)(0.01 * std::sqrt(1 - std::pow(b2, step)) / (1 - std::pow(b1, step)));
      MnnAdamParams p{common, (float)b1, (float)b2, (float)(1 - b1), (float)(1 - b2), 1e-8f, lr_t, 1, 0};
      metal::run("adam_step_many", [&] { metal::adam_step(slots, p); });
      cpu::adam_step(cpu_slots, p);
    } else {
      MnnRmsPropParams p{common, 0.9f, 0.1f, 1e-8f, 0};
      metal::run("rmsprop_step_many", [&] { metal::rmsprop_step(slots, p); });
      cpu::rmsprop_step(cpu_slots, p);
    }
  }
  const float tol = dtype == DType::float32 ? 1e-6f : 1e-3f;
  for (int64_t i = 0; i < total; ++i) {
    const float a = dtype == DType::float32 ? w.data<float>()[i] : half_to_float(w.data<half>()[i].bits);
    const float b = dtype == DType::float32 ? wc.data<float>()[i] : half_to_float(wc.data<half>()[i].bits);
    if (!(std::fabs(a - b) <= tol * (1 + std::fabs(b))))
      return printf("%s weight %lld: metal %g, cpu %g\n", kind.c_str(), (long long)i, a, b), 1;
    for (int k = 0; k < nstate; ++k) {
      const float x = state[k].data<float>()[i], y = state_cpu[k].data<float>()[i];
      if (!(std::fabs(x - y) <= 1e-6f * (1 + std::fabs(y))))
        return printf("%s state %d at %lld: metal %g, cpu %g\n", kind.c_str(), k, (long long)i, x, y), 1;
    }
  }
  printf("ok %s %s %zu slots\n", kind.c_str(), dtype_name(dtype), sizes.size());
  return 0;
}

int optimizer_arenas_all(const std::vector<int64_t>& sizes) {
  for (const char* kind : {"sgd", "adam", "rmsprop"})
    for (DType dtype : {DType::float32, DType::float16})
      if (int rc = optimizer_arenas(kind, dtype, sizes)) return rc;
  return 0;
}

int run(const std::string& s) {
  if (s == "ok") {  // the same calls done right
    Tensor x = input();
    Tensor y = Tensor::empty({kCount}, DType::float32, Device{DeviceType::metal, 0});
    metal::run("misuse", [&] {
      metal::KernelCall k("misuse", "neuron_forward_float32");
      k.buffer(0, x, metal::Access::read).buffer(1, y, metal::Access::write);
      k.bytes(2, MnnNeuronParams{MNN_NEURON_RELU, 0, 0, 0}).bytes(3, kCount).threads(kCount);
    });
    for (uint32_t i = 0; i < kCount; ++i)
      if (y.data<float>()[i] != (i < 18 ? 0.0f : (float)i - 18.0f)) return printf("wrong result at %u\n", i), 1;
    printf("ok\n");
    return 0;
  }
  if (s == "optimizer_arenas") return optimizer_arenas_all({37, 5, 1000, 3});
  if (s == "optimizer_arenas_large_table") return optimizer_arenas("sgd", DType::float32, std::vector<int64_t>(300, 7));
  if (s == "wrong_bytes_size") {  // setBytes of a struct that is not the kernel's
    Tensor x = input();
    Tensor y = Tensor::empty({kCount}, DType::float32, Device{DeviceType::metal, 0});
    metal::run("misuse", [&] {
      metal::KernelCall k("misuse", "neuron_forward_float32");
      k.buffer(0, x, metal::Access::read).buffer(1, y, metal::Access::write);
      k.bytes(2, ShortParams{MNN_NEURON_RELU, 0, 0}).bytes(3, kCount).threads(kCount);
    });
    return 0;
  }
  if (s == "unbound_buffer") {  // the output index never bound
    Tensor x = input();
    metal::run("misuse", [&] {
      metal::KernelCall k("misuse", "neuron_forward_float32");
      k.buffer(0, x, metal::Access::read).bytes(2, MnnNeuronParams{MNN_NEURON_RELU, 0, 0, 0}).bytes(3, kCount);
      k.threads(kCount);
    });
    return 0;
  }
  if (s == "stale_binding") {  // the second kernel's count left over from the first dispatch
    Tensor x = input();
    Tensor y = Tensor::empty({kCount}, DType::float32, Device{DeviceType::metal, 0});
    Tensor z = Tensor::empty({kCount}, DType::float32, Device{DeviceType::metal, 0});
    metal::run("misuse", [&] {
      metal::KernelCall a("misuse", "neuron_forward_float32");
      a.buffer(0, x, metal::Access::read).buffer(1, y, metal::Access::write);
      a.bytes(2, MnnNeuronParams{MNN_NEURON_RELU, 0, 0, 0}).bytes(3, kCount).threads(kCount);
      metal::KernelCall b("misuse", "neuron_forward_float32");
      b.buffer(0, y, metal::Access::read).buffer(1, z, metal::Access::write);
      b.bytes(2, MnnNeuronParams{MNN_NEURON_TANH, 1, 1, 0}).threads(kCount);
    });
    return 0;
  }
  if (s == "threadgroup_too_large") {  // more threads than the pipeline allows, bypassing KernelCall's check
    raw_dispatch([](MTL::CommandBuffer*, MTL::ComputeCommandEncoder* e, MTL::Buffer*, uint32_t) {
      e->dispatchThreadgroups(MTL::Size(1, 1, 1), MTL::Size(2048, 1, 1));
    });
    return 0;
  }
  if (s == "encoder_after_end") {
    raw_dispatch([](MTL::CommandBuffer*, MTL::ComputeCommandEncoder* e, MTL::Buffer* y, uint32_t) {
      e->dispatchThreadgroups(MTL::Size(2, 1, 1), MTL::Size(32, 1, 1));
      e->endEncoding();
      e->setBuffer(y, 0, 1);
    });
    return 0;
  }
  if (s == "commit_twice") {
    raw_dispatch([](MTL::CommandBuffer* cb, MTL::ComputeCommandEncoder* e, MTL::Buffer*, uint32_t) {
      e->dispatchThreadgroups(MTL::Size(2, 1, 1), MTL::Size(32, 1, 1));
      e->endEncoding();
      cb->commit();
      cb->commit();
    });
    return 0;
  }
  if (s == "commit_without_end_encoding") {
    raw_dispatch([](MTL::CommandBuffer* cb, MTL::ComputeCommandEncoder* e, MTL::Buffer*, uint32_t) {
      e->dispatchThreadgroups(MTL::Size(2, 1, 1), MTL::Size(32, 1, 1));
      cb->commit();
    });
    return 0;
  }
  if (s == "use_after_release") {
    MTL::Buffer* b = raw_buffer(64);
    b->release();
    b->contents();
    return 0;
  }
  if (s == "kernel_fault") {  // a count beyond the output's buffer: the kernel writes past its end
    Tensor y = Tensor::empty({kCount}, DType::float32, Device{DeviceType::metal, 0});
    MTL::Buffer* block = metal::find_buffer(y.buffer()->data());
    if (!block) return printf("the output is not an allocator block\n"), 1;
    // Past the block's last byte, but not past the runtime's guard bytes behind it.
    const uint32_t too_many = (uint32_t)(block->length() / sizeof(float)) + 8;
    Tensor x = Tensor::empty({(int64_t)too_many}, DType::float32, Device{DeviceType::metal, 0});
    for (uint32_t i = 0; i < too_many; ++i) x.data<float>()[i] = 1.0f;
    metal::run("misuse", [&] {
      metal::KernelCall k("misuse", "neuron_forward_float32");
      k.buffer(0, x, metal::Access::read).buffer(1, y, metal::Access::write);
      k.bytes(2, MnnNeuronParams{MNN_NEURON_RELU, 0, 0, 0}).bytes(3, too_many).threads(too_many);
    });
    printf("the fault went unnoticed\n");
    return 0;
  }
  fprintf(stderr, "unknown scenario %s\n", s.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fprintf(stderr, "usage: %s <scenario>\n", argv[0]), 2;
  try {
    return run(argv[1]);
  } catch (const std::exception& e) {
    printf("exception: %s\n", e.what());
    return 3;
  }
}
