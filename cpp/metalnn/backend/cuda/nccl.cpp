#include "metalnn/backend/cuda/nccl.h"

#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/device.h"

namespace metalnn::cuda {
namespace {

// The few NCCL entry points used here, declared from the documented C API: ncclComm_t is an
// opaque pointer, ncclUniqueId a 128-byte struct passed by value, enums are ints.
struct UniqueId {
  char internal[128];
};
constexpr int kSuccess = 0, kInProgress = 7;
constexpr int kUint8 = 1, kFloat32 = 7, kFloat64 = 8;
constexpr int kSum = 0, kAvg = 4;

struct Lib {
  int (*get_version)(int*) = nullptr;
  int (*get_unique_id)(UniqueId*) = nullptr;
  int (*init_rank)(void**, int, UniqueId, int) = nullptr;
  int (*destroy)(void*) = nullptr;
  int (*abort)(void*) = nullptr;
  int (*async_error)(void*, int*) = nullptr;
  const char* (*error_string)(int) = nullptr;
  int (*all_reduce)(const void*, void*, size_t, int, int, void*, cudaStream_t) = nullptr;
  int (*all_gather)(const void*, void*, size_t, int, void*, cudaStream_t) = nullptr;
  int (*broadcast)(const void*, void*, size_t, int, int, void*, cudaStream_t) = nullptr;
  int (*group_start)() = nullptr;
  int (*group_end)() = nullptr;
  int version = 0;
  std::string info = "nccl: not loaded";
};

std::mutex g_mutex;
Lib* g_lib = nullptr;
std::string g_load_error = "nccl: not loaded";

template <class F>
bool sym(void* h, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(h, name));
  return f != nullptr;
}

bool try_load(const std::string& path, Lib& out) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char* e = dlerror();
    out.info = "nccl: cannot load " + path + (e ? std::string(": ") + e : "");
    return false;
  }
  Lib l;
  bool ok = sym(h, "ncclGetVersion", l.get_version) && sym(h, "ncclGetUniqueId", l.get_unique_id) &&
            sym(h, "ncclCommInitRank", l.init_rank) && sym(h, "ncclCommDestroy", l.destroy) &&
            sym(h, "ncclCommAbort", l.abort) && sym(h, "ncclCommGetAsyncError", l.async_error) &&
            sym(h, "ncclGetErrorString", l.error_string) && sym(h, "ncclAllReduce", l.all_reduce) &&
            sym(h, "ncclAllGather", l.all_gather) && sym(h, "ncclBroadcast", l.broadcast) &&
            sym(h, "ncclGroupStart", l.group_start) && sym(h, "ncclGroupEnd", l.group_end);
  if (!ok) {
    out.info = "nccl: " + path + " lacks the NCCL 2 API";
    return false;
  }
  l.get_version(&l.version);
  // ncclAvg arrived in NCCL 2.10 (version code 21000).
  if (l.version < 21000) {
    out.info = "nccl: " + path + " is NCCL " + std::to_string(l.version) + "; 2.10 or newer is needed";
    return false;
  }
  l.info = "nccl " + std::to_string(l.version) + ": " + path;
  out = l;
  return true;
}

const Lib& lib(const char* op) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_lib) fail(ErrorKind::Runtime, op, "NCCL is not loaded (metalnn.distributed.init() loads it)");
  return *g_lib;
}

void check_nccl(int r, const char* op, const char* what) {
  if (r == kSuccess || r == kInProgress) return;
  const Lib& l = lib(op);
  fail(ErrorKind::Runtime, op, what, " failed: ", l.error_string ? l.error_string(r) : "NCCL error", " (", r, ")");
}

using Clock = std::chrono::steady_clock;

// Waits for `event` on the host, checking the communicator so a dead peer raises instead of
// hanging; aborts the communicator when `comm`'s timeout passes.
void wait_event(cudaEvent_t event, NcclComm& comm, const char* op) {
  const auto start = Clock::now();
  for (int spins = 0;; ++spins) {
    cudaError_t e = cudaEventQuery(event);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) check(e, op);
    comm.check_async(op);
    double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited > comm.timeout()) {
      comm.abort();
      fail(ErrorKind::Runtime, op, "no answer from the other ranks after ", comm.timeout(),
           " s (METALNN_DISTRIBUTED_TIMEOUT); the communicator was aborted");
    }
    if (spins < 2000)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// Runs `enqueue` on the current stream and waits for it (bootstrap helpers).
template <class F>
void blocking(NcclComm& comm, const char* op, F&& enqueue) {
  cudaStream_t s = current_stream();
  enqueue(s);
  cudaEvent_t ev = nullptr;
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), op);
  check(cudaEventRecord(ev, s), op);
  try {
    wait_event(ev, comm, op);
  } catch (...) {
    cudaEventDestroy(ev);
    throw;
  }
  cudaEventDestroy(ev);
}

}  // namespace

bool nccl_load(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_lib) return true;
  Lib l;
  std::vector<std::string> tries;
  if (!path.empty()) tries.push_back(path);
  if (const char* env = std::getenv("METALNN_NCCL_LIBRARY"); env && *env) tries.insert(tries.begin(), env);
  tries.push_back("libnccl.so.2");
  std::string why;
  for (const auto& p : tries) {
    if (try_load(p, l)) {
      g_lib = new Lib(l);  // never unloaded: communicators may outlive any owner
      return true;
    }
    why += (why.empty() ? "" : "; ") + l.info;
  }
  g_load_error = why;
  return false;
}

std::string nccl_info() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_lib ? g_lib->info : g_load_error;
}

std::string nccl_unique_id() {
  UniqueId id{};
  check_nccl(lib("distributed").get_unique_id(&id), "distributed", "ncclGetUniqueId");
  return std::string(id.internal, sizeof id.internal);
}

NcclComm::NcclComm(const std::string& unique_id, int nranks, int rank, double timeout_s)
    : nranks_(nranks), rank_(rank), timeout_s_(timeout_s) {
  const char* op = "distributed";
  if (unique_id.size() != sizeof(UniqueId))
    fail(ErrorKind::Value, op, "unique_id must be ", sizeof(UniqueId), " bytes, got ", unique_id.size());
  if (nranks < 1 || rank < 0 || rank >= nranks)
    fail(ErrorKind::Value, op, "rank ", rank, " is not in [0, world_size ", nranks, ")");
  if (!(timeout_s > 0)) fail(ErrorKind::Value, op, "timeout must be > 0 seconds, got ", timeout_s);
  UniqueId id;
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  check(cudaSetDevice(0), op);  // the launcher gave this process one visible GPU
  check_nccl(lib(op).init_rank(&comm_, nranks, id, rank), op, "ncclCommInitRank");
}

NcclComm::~NcclComm() {
  if (comm_ && g_lib) g_lib->destroy(comm_);
}

void NcclComm::check_async(const char* op) {
  if (!comm_) fail(ErrorKind::Runtime, op, "the NCCL communicator was aborted");
  int r = kSuccess;
  lib(op).async_error(comm_, &r);
  if (r != kSuccess && r != kInProgress) {
    const char* what = lib(op).error_string(r);
    abort();
    fail(ErrorKind::Runtime, op, "NCCL reported an error from the other ranks: ", what);
  }
}

void NcclComm::abort() {
  if (comm_ && g_lib) g_lib->abort(comm_);
  comm_ = nullptr;
}

void NcclComm::broadcast(const Tensor& t, int root) {
  const char* op = "distributed.broadcast";
  if (t.device().type != DeviceType::cuda) fail(ErrorKind::Value, op, "tensor must be on cuda");
  if (root < 0 || root >= nranks_) fail(ErrorKind::Value, op, "root ", root, " out of range");
  check_async(op);
  blocking(*this, op, [&](cudaStream_t s) {
    check_nccl(lib(op).broadcast(t.raw(), t.raw(), t.nbytes(), kUint8, root, comm_, s), op, "ncclBroadcast");
  });
}

void NcclComm::allreduce_sum(double* values, size_t n) {
  const char* op = "distributed.all_reduce";
  if (!n) return;
  check_async(op);
  void* buf = nullptr;
  check(cudaMalloc(&buf, n * sizeof(double)), op);
  try {
    blocking(*this, op, [&](cudaStream_t s) {
      check(cudaMemcpyAsync(buf, values, n * sizeof(double), cudaMemcpyHostToDevice, s), op);
      check_nccl(lib(op).all_reduce(buf, buf, n, kFloat64, kSum, comm_, s), op, "ncclAllReduce");
      check(cudaMemcpyAsync(values, buf, n * sizeof(double), cudaMemcpyDeviceToHost, s), op);
    });
  } catch (...) {
    cudaFree(buf);
    throw;
  }
  cudaFree(buf);
}

std::vector<std::string> NcclComm::allgather(const std::string& bytes) {
  const char* op = "distributed.all_gather";
  check_async(op);
  const size_t n = bytes.size();
  std::vector<char> host(n * (size_t)nranks_);
  void* buf = nullptr;
  check(cudaMalloc(&buf, host.size() + n + 1), op);
  char* send = static_cast<char*>(buf) + host.size();
  try {
    blocking(*this, op, [&](cudaStream_t s) {
      if (n) check(cudaMemcpyAsync(send, bytes.data(), n, cudaMemcpyHostToDevice, s), op);
      check_nccl(lib(op).all_gather(send, buf, n, kUint8, comm_, s), op, "ncclAllGather");
      if (n) check(cudaMemcpyAsync(host.data(), buf, host.size(), cudaMemcpyDeviceToHost, s), op);
    });
  } catch (...) {
    cudaFree(buf);
    throw;
  }
  cudaFree(buf);
  std::vector<std::string> out;
  for (int r = 0; r < nranks_; ++r) out.emplace_back(host.data() + (size_t)r * n, n);
  return out;
}

NcclBuckets::NcclBuckets(std::shared_ptr<NcclComm> comm, std::vector<size_t> bucket_elements, bool deterministic,
                         bool capture)
    : comm_(std::move(comm)), sizes_(std::move(bucket_elements)), deterministic_(deterministic), capture_(capture) {
  const char* op = "allreduce";
  if (!comm_) fail(ErrorKind::Value, op, "no communicator");
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), op);
  stream_ = s;
  // Averages are NCCL's in-place average all-reduce on each gradient, one NCCL group per
  // bucket (no staging copies). METALNN_DISTRIBUTED_GRAPH_ALLREDUCE=sum: NCCL's sum plus our
  // scale kernel; =gather: the deterministic mode's all-gather (comparisons; tools/dp_diag.py).
  const char* env = std::getenv("METALNN_DISTRIBUTED_GRAPH_ALLREDUCE");
  sum_then_scale_ = env && std::strcmp(env, "sum") == 0;
  gather_ = deterministic_ || (env && std::strcmp(env, "gather") == 0);
  const size_t copies = 1 + (size_t)comm_->size();
  for (size_t n : sizes_) {
    cudaEvent_t a = nullptr, b = nullptr;
    check(cudaEventCreateWithFlags(&a, cudaEventDisableTiming), op);
    check(cudaEventCreateWithFlags(&b, cudaEventDisableTiming), op);
    ready_.push_back(a);
    done_.push_back(b);
    float* buf = nullptr;  // the gather's bucket and the ranks' copies of it
    if (gather_)
      check(cudaMalloc(reinterpret_cast<void**>(&buf), std::max<size_t>(n, 1) * copies * sizeof(float)), op);
    buffers_.push_back(buf);
  }
  started_.assign(sizes_.size(), false);
  pending_.assign(sizes_.size(), false);
}

NcclBuckets::~NcclBuckets() {
  if (stream_) cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  for (auto* e : ready_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  for (auto* e : done_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  for (auto* b : buffers_)
    if (b) cudaFree(b);
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void NcclBuckets::start(size_t bucket, const std::vector<std::pair<void*, size_t>>& grads) {
  const char* op = "allreduce";
  if (bucket >= sizes_.size()) fail(ErrorKind::Value, op, "bucket ", bucket, " out of range");
  size_t total = 0;
  for (const auto& g : grads) total += g.second;
  if (total != sizes_[bucket])
    fail(ErrorKind::Value, op, "bucket ", bucket, " holds ", total, " floats, planned ", sizes_[bucket]);
  comm_->check_async(op);
  const Lib& l = lib(op);
  auto side = static_cast<cudaStream_t>(stream_);
  auto ready = static_cast<cudaEvent_t>(ready_[bucket]), done = static_cast<cudaEvent_t>(done_[bucket]);
  cudaStream_t main = current_stream();
  const bool recording = capturing(main);
  // Eager: the previous batch's round of this bucket (long finished unless a peer stalls), so a
  // dead peer raises after the timeout. Never inside a capture (the side stream orders the
  // rounds on the GPU anyway): a replayed step has no host wait at all.
  if (pending_[bucket] && !recording) wait_event(done, *comm_, op);
  pending_[bucket] = false;
  // The side stream starts once the gradients of this bucket (and everything before) exist.
  // Inside a capture this event is the fork that pulls the side stream into the graph.
  check(cudaEventRecord(ready, main), op);
  check(cudaStreamWaitEvent(side, ready, 0), op);
  const int nranks = comm_->size();
  if (gather_) {
    // Deterministic mode: the bucket gathered and summed in rank order (same bits on every rank
    // and run), through one contiguous buffer.
    float* buf = buffers_[bucket];
    size_t off = 0;
    for (const auto& [p, n] : grads) {
      check(cudaMemcpyAsync(buf + off, p, n * sizeof(float), cudaMemcpyDeviceToDevice, side), op);
      off += n;
    }
    float* gathered = buf + total;
    check_nccl(l.all_gather(buf, gathered, total, kFloat32, comm_->handle(), side), op, "ncclAllGather");
    sum_ranks(gathered, nranks, total, 1.0f / (float)nranks, buf, side);
    off = 0;
    for (const auto& [p, n] : grads) {
      check(cudaMemcpyAsync(p, buf + off, n * sizeof(float), cudaMemcpyDeviceToDevice, side), op);
      off += n;
    }
  } else {
    // One group: NCCL launches the bucket's all-reduces together, each in place.
    check_nccl(l.group_start(), op, "ncclGroupStart");
    int r = kSuccess;
    for (const auto& [p, n] : grads) {
      r = l.all_reduce(p, p, n, kFloat32, sum_then_scale_ ? kSum : kAvg, comm_->handle(), side);
      if (r != kSuccess && r != kInProgress) break;
    }
    const int ended = l.group_end();  // closed even after a failed call
    check_nccl(r, op, "ncclAllReduce");
    check_nccl(ended, op, "ncclGroupEnd");
    if (sum_then_scale_)
      for (const auto& [p, n] : grads) sum_ranks(static_cast<float*>(p), 1, n, 1.0f / (float)nranks,
                                                 static_cast<float*>(p), side);  // an in-place scale
  }
  check(cudaEventRecord(done, side), op);
  started_[bucket] = true;
  pending_[bucket] = !recording;  // a captured record is no event the host could wait for
}

void NcclBuckets::finish() {
  const char* op = "allreduce";
  cudaStream_t main = current_stream();
  // The join: every bucket's side-stream work is done before the update reads the gradients.
  for (size_t b = 0; b < sizes_.size(); ++b) {
    if (!started_[b]) fail(ErrorKind::Runtime, op, "bucket ", b, " was never started (graph compiled out of order)");
    check(cudaStreamWaitEvent(main, static_cast<cudaEvent_t>(done_[b]), 0), op);
    started_[b] = false;
  }
  if (first_finish_ && !capturing(main)) {
    // The first batch runs eagerly (the executor's probe): the host waits for its rounds so a
    // missing peer raises after the timeout, and NCCL's connections exist before a capture.
    first_finish_ = false;
    for (size_t b = 0; b < sizes_.size(); ++b) wait_event(static_cast<cudaEvent_t>(done_[b]), *comm_, op);
    // Fallback: a wait the probe sees keeps the program eager for good.
    if (!capture_) synchronize(op);
  }
}

}  // namespace metalnn::cuda
