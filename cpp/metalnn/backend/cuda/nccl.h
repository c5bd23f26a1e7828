// NCCL, loaded at run time (dlopen, like cuBLAS and cuDNN): the build needs no NCCL headers.
// Plain C++ (no CUDA headers), so graph/ and the bindings can include it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

// Loads libnccl from `path` (or, when empty, METALNN_NCCL_LIBRARY, then "libnccl.so.2" on the
// loader's path). Returns false (and keeps the reason for nccl_info()) when it cannot.
bool nccl_load(const std::string& path);
// "nccl <version>: <path>" once loaded, else why not.
std::string nccl_info();
// 128 bytes every rank passes to NcclComm (rank 0 makes it, the launcher's rendezvous shares it).
std::string nccl_unique_id();

// One NCCL communicator over the ranks of a job, one GPU (device 0 of the process) each.
class NcclComm {
 public:
  NcclComm(const std::string& unique_id, int nranks, int rank, double timeout_s);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  int rank() const { return rank_; }
  int size() const { return nranks_; }
  double timeout() const { return timeout_s_; }
  void* handle() const { return comm_; }
  // Blocking helpers on the backend stream (bootstrap, metrics): they return once done.
  void broadcast(const Tensor& t, int root);
  void allreduce_sum(double* values, size_t n);
  std::vector<std::string> allgather(const std::string& bytes);
  // Raises a RuntimeError naming `op` if NCCL reported an asynchronous error (a peer died).
  void check_async(const char* op);
  void abort();

 private:
  void* comm_ = nullptr;
  int nranks_, rank_;
  double timeout_s_;
};

// Bucketed gradient all-reduce (average) on a side stream: start(b) waits for the current
// stream's work so far, packs the bucket's gradients into one buffer, all-reduces it and
// unpacks; finish() makes the current stream wait for every bucket (on the GPU: the host
// goes on queueing). Capture-safe: the side stream forks from the current stream and joins
// back through events, so a CUDA-graph capture of the step records the NCCL calls and the
// executor replays the whole distributed step with one launch. The host waits only in the
// first (eager, probed) finish, so a peer that never arrives raises after the timeout; eager
// batches also wait for a bucket's previous round at its next start. `capture` false: the
// first finish waits through synchronize(), which keeps the program eager (the fallback).
// Deterministic, and whenever the program may be captured: all-gather, then every rank sums
// the ranks' buffers in rank order (a captured in-place ncclAvg all-reduce gave wrong averages).
class NcclBuckets {
 public:
  NcclBuckets(std::shared_ptr<NcclComm> comm, std::vector<size_t> bucket_elements, bool deterministic,
              bool capture = true);
  ~NcclBuckets();
  NcclBuckets(const NcclBuckets&) = delete;
  NcclBuckets& operator=(const NcclBuckets&) = delete;
  size_t buckets() const { return sizes_.size(); }
  void start(size_t bucket, const std::vector<std::pair<void*, size_t>>& grads);  // (pointer, floats)
  void finish();

 private:
  std::shared_ptr<NcclComm> comm_;
  std::vector<size_t> sizes_;
  bool deterministic_;
  void* stream_ = nullptr;            // cudaStream_t
  std::vector<void*> ready_, done_;   // cudaEvent_t per bucket
  std::vector<float*> buffers_;       // per bucket, the gather's only: the bucket, then nranks copies
  std::vector<bool> started_, pending_;  // started this round; a round not yet waited for
  bool capture_;
  bool gather_ = false;  // all-gather + rank-ordered sum instead of NCCL's all-reduce
  bool sum_then_scale_ = false;  // ncclSum + our scale kernel instead of ncclAvg (comparisons)
  bool first_finish_ = true;
};

// out[i] = scale * sum over r in 0..nranks-1 (in that order) of gathered[r * n + i].
void sum_ranks(const float* gathered, int nranks, size_t n, float scale, float* out, void* stream);

}  // namespace metalnn::cuda
