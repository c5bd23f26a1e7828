#include "metalnn/graph/steps_distributed.h"

#include "metalnn/core/error.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/nccl.h"
#endif

namespace metalnn::graph {

#ifdef METALNN_HAS_CUDA
namespace {

class NcclReducer final : public GradientReducer {
 public:
  NcclReducer(std::shared_ptr<cuda::NcclComm> comm, std::vector<size_t> sizes, bool deterministic, bool capture)
      : buckets_(std::move(comm), std::move(sizes), deterministic, capture) {}
  size_t buckets() const override { return buckets_.buckets(); }
  void start(size_t bucket, const std::vector<Tensor>& grads) override {
    std::vector<std::pair<void*, size_t>> ptrs;
    for (const auto& g : grads) {
      if (g.device().type != DeviceType::cuda)
        fail(ErrorKind::Value, "allreduce", "NCCL reduces cuda gradients, got one on ", g.device().str());
      ptrs.emplace_back(g.raw(), (size_t)g.numel());
    }
    buckets_.start(bucket, ptrs);
  }
  void finish() override { buckets_.finish(); }

 private:
  cuda::NcclBuckets buckets_;
};

}  // namespace

GradientReducerRef make_nccl_reducer(std::shared_ptr<void> nccl_comm, std::vector<size_t> bucket_elements,
                                     bool deterministic, bool capture) {
  auto comm = std::static_pointer_cast<cuda::NcclComm>(nccl_comm);
  return std::make_shared<NcclReducer>(std::move(comm), std::move(bucket_elements), deterministic, capture);
}
#endif

namespace steps {

Step allreduce_start(const std::string& label, GradientReducerRef reducer, size_t bucket, std::vector<int> slots) {
  if (!reducer) fail(ErrorKind::Value, "graph", "allreduce_start: no reducer");
  if (bucket >= reducer->buckets())
    fail(ErrorKind::Value, "graph", "allreduce_start: bucket ", bucket, " out of range (", reducer->buckets(), ")");
  return Step{label, [reducer, bucket, slots](Frame& f) {
    std::vector<Tensor> grads;
    grads.reserve(slots.size());
    for (int s : slots) {
      const Tensor& g = slot(f, s, "allreduce");
      if (g.dtype() != DType::float32)
        fail(ErrorKind::Type, "allreduce", "gradients must be float32, got ", dtype_name(g.dtype()));
      grads.push_back(g);
    }
    reducer->start(bucket, grads);
  }, {}, {}, {}};
}

Step allreduce_finish(const std::string& label, GradientReducerRef reducer) {
  if (!reducer) fail(ErrorKind::Value, "graph", "allreduce_finish: no reducer");
  return Step{label, [reducer](Frame&) { reducer->finish(); }, {}, {}, {}};
}

}  // namespace steps
}  // namespace metalnn::graph
