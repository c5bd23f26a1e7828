// Deliberate host bugs, one per scenario, to show the fake Metal runtime catches them
// (tests/test_metal_fake_runtime.py runs each in its own process):
//
//   fake_metal_misuse <scenario>
//
// Scenarios that Metal's API validation rejects abort with "validation error: ..." (the
// process dies of SIGABRT); `ok` exits 0, and `kernel_fault` (a kernel writing past its
// buffer) must make metal::run throw: it prints "exception: ..." and exits 3.
// The first ones go through the backend's own KernelCall / metal::run, as an op would.
#include <cstdio>
#include <cstring>
#include <string>

#include "kernels/neuron_params.h"
#include "metalnn/backend/metal/buffers.h"
#include "metalnn/backend/metal/context.h"
#include "metalnn/backend/metal/device.h"
#include "metalnn/backend/metal/kernel.h"
#include "metalnn/backend/metal/pipelines.h"
#include "metalnn/backend/metal/stream.h"
#include "metalnn/core/error.h"

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
