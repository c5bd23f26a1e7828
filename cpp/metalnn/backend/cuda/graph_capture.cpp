#include "metalnn/backend/cuda/graph_capture.h"

#include <cstdlib>
#include <cstring>

#include "metalnn/backend/cuda/allocator.h"
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/device.h"

namespace metalnn::cuda {
namespace {

// Restores the thread's allocator even when the body throws.
struct ArenaScope {
  explicit ArenaScope(std::shared_ptr<Arena> a) { set_thread_arena(std::move(a)); }
  ~ArenaScope() { set_thread_arena(nullptr); }
};

struct AccessScope {
  explicit AccessScope(HostAccess* a) { set_host_access(a); }
  ~AccessScope() { set_host_access(nullptr); }
};

}  // namespace

bool graphs_enabled() {
  const char* v = std::getenv("METALNN_CUDA_GRAPHS");
  return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0));
}

GraphRunner::GraphRunner() : arena_(std::make_shared<Arena>()) {}

GraphRunner::~GraphRunner() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

bool GraphRunner::probe(const std::function<void()>& body, const Ranges& inputs) {
  HostAccess access;
  access.inputs = inputs;
  access.probing = true;
  {
    AccessScope scope(&access);
    body();
  }
  if (access.blocked) reason_ = access.what;
  return !access.blocked;
}

void GraphRunner::run(const std::function<void()>& body, const Ranges& inputs) {
  const char* op = "graph";
  cudaStream_t s = current_stream();
  HostAccess access;
  access.inputs = inputs;
  AccessScope access_scope(&access);
  // Relaxed: cudaMalloc (arena growth) stays legal; waits on the stream still fail.
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), op);
  cudaGraph_t graph = nullptr;
  try {
    ArenaScope scope(arena_);
    body();
  } catch (...) {
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    release_deferred_frees();
    throw;
  }
  cudaError_t e = cudaStreamEndCapture(s, &graph);
  if (e != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    release_deferred_frees();
    fail(ErrorKind::Runtime, op, "CUDA graph capture failed: ", cudaGetErrorName(e));
  }
  auto exec = static_cast<cudaGraphExec_t>(exec_);
  if (exec) {
    cudaGraphExecUpdateResultInfo info;
    if (cudaGraphExecUpdate(exec, graph, &info) != cudaSuccess) {
      cudaGetLastError();
      cudaStreamSynchronize(s);  // its last launch may still run (rare: topology changed)
      cudaGraphExecDestroy(exec);
      exec = nullptr;
    }
  }
  if (!exec) {
    e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) {
      cudaGraphDestroy(graph);
      exec_ = nullptr;
      release_deferred_frees();
      check(e, op);
    }
    ++instantiations_;
  }
  exec_ = exec;
  cudaGraphDestroy(graph);
  cudaError_t launched = cudaGraphLaunch(exec, s);
  release_deferred_frees();  // ordered after the graph that last read them
  check(launched, op);
  ++launches_;
}

}  // namespace metalnn::cuda
