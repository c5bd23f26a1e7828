// CUDA-graph execution of a whole program (forward, gradients, updates) for the graph
// executor. Plain C++ interface (no CUDA headers) so graph/executor.cpp can include it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace metalnn::cuda {

class Arena;

// Each batch, the program's host code runs once with the executor's stream in capture mode
// (kernels are recorded, not launched; scalars such as Adam's bias correction or dropout
// seeds take their per-batch values), and the recording updates one instantiated graph in
// place (cudaGraphExecUpdate; re-instantiated only when the topology changes) which is then
// launched: the GPU runs the step back to back, without per-kernel launch gaps. Tensors
// made during capture come from a private arena, so the graph's addresses stay valid.
class GraphRunner {
 public:
  using Ranges = std::vector<std::pair<const void*, size_t>>;
  GraphRunner();
  ~GraphRunner();
  // Runs `body` eagerly and reports whether it could be captured: no host reads except of
  // the batch's `inputs`, no waits, no large host copies (else why, in reason()).
  bool probe(const std::function<void()>& body, const Ranges& inputs);
  // Runs `body` captured on the current stream and launches the result. Throws what `body`
  // throws, or a RuntimeError when the capture cannot be completed; nothing is launched then.
  void run(const std::function<void()>& body, const Ranges& inputs);
  const std::string& reason() const { return reason_; }

  int64_t launches() const { return launches_; }
  int64_t instantiations() const { return instantiations_; }

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
  std::shared_ptr<Arena> arena_;
  int64_t launches_ = 0, instantiations_ = 0;
  std::string reason_;
};

// METALNN_CUDA_GRAPHS=0 turns capture off (every batch runs eagerly); default on.
bool graphs_enabled();

}  // namespace metalnn::cuda
