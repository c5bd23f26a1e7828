#include "metalnn/backend/metal/pipelines.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "metalnn/backend/metal/device.h"
#include "metalnn/backend/metal/library.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

const Pipeline& pipeline(const std::string& kernel, const char* op) {
  static std::mutex mutex;
  static std::unordered_map<std::string, Pipeline> cache;  // kept for the process's life
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(kernel); it != cache.end()) return it->second;
  }
  std::string file = file_defining(kernel);
  if (file.empty()) fail(ErrorKind::Runtime, op, "no Metal kernel named '", kernel, "' in this build");
  MTL::Library* lib = library(file, op);  // compiles outside our lock; it has its own

  NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
  MTL::Function* fn = lib->newFunction(ns_string(kernel));
  if (!fn) {
    pool->release();
    fail(ErrorKind::Runtime, op, "kernel '", kernel, "' missing from the compiled ", file);
  }
  NS::Error* error = nullptr;
  MTL::ComputePipelineState* state = require_device(op)->newComputePipelineState(fn, &error);
  fn->release();
  std::string message = state ? "" : describe(error);
  pool->release();
  if (!state) fail(ErrorKind::Runtime, op, "building the pipeline for '", kernel, "' failed: ", message);

  Pipeline p;
  p.state = state;
  p.max_threads = state->maxTotalThreadsPerThreadgroup();
  p.simd_width = state->threadExecutionWidth();
  p.static_threadgroup_memory = state->staticThreadgroupMemoryLength();
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, inserted] = cache.emplace(kernel, p);
  if (!inserted) state->release();  // another thread built it first
  return it->second;
}

size_t threadgroup_width(const Pipeline& p, size_t count, size_t cap) {
  size_t limit = p.max_threads;
  if (cap) limit = std::min(limit, cap);
  size_t simd = std::max<size_t>(p.simd_width, 1);
  // Whole SIMD groups, no wider than the work needs.
  size_t width = std::min(limit, (std::max<size_t>(count, 1) + simd - 1) / simd * simd);
  width = std::max(simd, width / simd * simd);
  return std::min(width, limit);
}

}  // namespace metalnn::metal
