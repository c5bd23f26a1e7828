// Data-parallel graph steps: a bucket's gradient all-reduce starts right after the step that
// produces its last gradient (overlapping the remaining gradient work), and one finish step
// before the optimizer update waits for every bucket. The engine behind them is a
// GradientReducer (NCCL on CUDA; CPU graphs reduce through MPI in Python steps).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "metalnn/graph/program.h"

namespace metalnn::graph {

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual size_t buckets() const = 0;
  // Starts averaging bucket `bucket` across ranks, in place in `grads` (float32).
  virtual void start(size_t bucket, const std::vector<Tensor>& grads) = 0;
  // Returns once every started bucket has been averaged (later steps may read the gradients).
  virtual void finish() = 0;
};
using GradientReducerRef = std::shared_ptr<GradientReducer>;

#ifdef METALNN_HAS_CUDA
// NCCL on the CUDA backend; `nccl_comm` is a std::shared_ptr<cuda::NcclComm>. `capture`
// false keeps programs using it out of CUDA graphs (eager steps, the fallback).
GradientReducerRef make_nccl_reducer(std::shared_ptr<void> nccl_comm, std::vector<size_t> bucket_elements,
                                     bool deterministic, bool capture = true);
#endif

namespace steps {
Step allreduce_start(const std::string& label, GradientReducerRef reducer, size_t bucket, std::vector<int> slots);
Step allreduce_finish(const std::string& label, GradientReducerRef reducer);
}  // namespace steps

}  // namespace metalnn::graph
