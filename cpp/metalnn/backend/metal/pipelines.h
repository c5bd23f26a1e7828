// Compute pipelines, cached by kernel name. Threadgroup sizes come from each
// pipeline's maxTotalThreadsPerThreadgroup (it depends on the kernel's register use),
// never from an assumed constant.
#pragma once
#include <cstddef>
#include <string>

#include "metalnn/backend/metal/mtl.h"

namespace metalnn::metal {

struct Pipeline {
  MTL::ComputePipelineState* state = nullptr;
  size_t max_threads = 0;        // maxTotalThreadsPerThreadgroup
  size_t simd_width = 0;         // threadExecutionWidth
  size_t static_threadgroup_memory = 0;
};

// The pipeline for `kernel` (e.g. "neuron_forward_float32"); built on first use.
// An unknown kernel or a failed build is a RuntimeError naming `op`.
const Pipeline& pipeline(const std::string& kernel, const char* op);

// A 1-D threadgroup width for `count` threads: a multiple of the SIMD width, at most
// the pipeline's limit (and `cap` when nonzero).
size_t threadgroup_width(const Pipeline& p, size_t count, size_t cap = 0);

}  // namespace metalnn::metal
