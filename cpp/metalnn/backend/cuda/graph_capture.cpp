#include "metalnn/backend/cuda/graph_capture.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "metalnn/backend/cuda/allocator.h"
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/device.h"
#include "metalnn/core/copy.h"

namespace metalnn::cuda {

// memory.cu: the counter words' kernels (recorded into graphs like any launch).
constexpr int kMaxCounters = 16;
void set_device_word(int64_t* dst, int64_t value, cudaStream_t s);
void add_device_words(int64_t* words, const int64_t* deltas, int n, cudaStream_t s);

// What a capture-once recording collects on its thread.
struct Recording {
  struct Use {
    HostCounter counter;
    int64_t base = 0, advance = 0;
  };
  int64_t* words = nullptr;
  std::vector<Use> uses;
  const std::vector<std::pair<int, Tensor>>* fixed = nullptr;  // slot, fixed device input
  const GraphRunner::Inputs* host = nullptr;
  std::vector<std::pair<int, InputCheck>> checks;
  bool check_failed = false;
};

namespace {

thread_local Recording* t_recording = nullptr;

std::mutex g_stats_mutex;
GraphStats g_stats;
void count(int64_t GraphStats::*field) {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  ++(g_stats.*field);
}

// Restores the thread's allocator even when the body throws.
struct ArenaScope {
  explicit ArenaScope(std::shared_ptr<Arena> a) { set_thread_arena(std::move(a)); }
  ~ArenaScope() { set_thread_arena(nullptr); }
};

struct AccessScope {
  explicit AccessScope(HostAccess* a) { set_host_access(a); }
  ~AccessScope() { set_host_access(nullptr); }
};

struct RecordingScope {
  explicit RecordingScope(Recording* r) { t_recording = r; }
  ~RecordingScope() { t_recording = nullptr; }
};

// The host copy of input `slot`: the pinned staging copy, else read back from the device.
Tensor host_input(const GraphRunner::Inputs& host, const std::vector<Tensor>& slots, int slot) {
  for (const auto& [k, t] : host)
    if (k == slot) return t;
  return to_host(slots[(size_t)slot], "graph");
}

// Ends a failed capture: nothing of it is kept or launched.
void abandon_capture(cudaStream_t s) {
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(s, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  release_deferred_frees();
}

// Ends the capture on `s` and returns its graph; when capture failed, nothing of it is kept,
// `undo` puts back what recording changed, and a RuntimeError names the CUDA error.
cudaGraph_t end_capture(cudaStream_t s, const char* op, const std::function<void()>& undo) {
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(s, &graph);
  if (e == cudaSuccess && graph) return graph;
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  release_deferred_frees();
  undo();
  fail(ErrorKind::Runtime, op, "CUDA graph capture failed: ", cudaGetErrorName(e));
}

}  // namespace

DeviceCount record_counter(const HostCounter& c, int64_t used, int64_t advance) {
  Recording* r = t_recording;
  if (!r) return {};
  size_t i = 0;
  while (i < r->uses.size() && r->uses[i].counter != c) ++i;
  if (i == r->uses.size()) {
    if ((int)i == kMaxCounters)
      fail(ErrorKind::Runtime, "graph", "more than ", kMaxCounters, " counters in one program");
    r->uses.push_back({c, used, 0});
  }
  r->uses[i].advance += advance;
  return {r->words + i, used - r->uses[i].base};
}

bool record_input_check(const Tensor& input, const InputCheck& check) {
  Recording* r = t_recording;
  if (!r) return false;
  for (const auto& [slot, fixed] : *r->fixed) {
    if (fixed.raw() != input.raw() || fixed.nbytes() != input.nbytes()) continue;
    Tensor host;
    for (const auto& [k, t] : *r->host)
      if (k == slot) host = t;
    // A device tensor handed to encode has no host copy to check before a replay.
    if (!host.defined()) fail(ErrorKind::Runtime, "graph", "input slot ", slot, " has no host copy to check");
    try {
      check(host.reshape(input.shape()));
    } catch (...) {
      r->check_failed = true;
      throw;
    }
    r->checks.emplace_back(slot, check);
    return true;
  }
  fail(ErrorKind::Runtime, "graph", "a host read of device memory that is not a batch input cannot be replayed");
}

bool recording() { return t_recording != nullptr; }

GraphStats graph_stats() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  return g_stats;
}

bool graphs_enabled() {
  const char* v = std::getenv("METALNN_CUDA_GRAPHS");
  return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0));
}

GraphRunner::GraphRunner() : arena_(std::make_shared<Arena>()) {}

GraphRunner::~GraphRunner() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (counters_) cudaFree(counters_);  // waits for the graphs still using them
  cudaGetLastError();
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

void GraphRunner::drop_exec() {
  if (!exec_) return;
  // Its last launch may still run (rare: a new shape or new parameters).
  cudaStreamSynchronize(current_stream());
  cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  cudaGetLastError();
  exec_ = nullptr;
  once_ = false;
}

bool GraphRunner::can_replay(const std::vector<Tensor>& slots, int64_t epoch) const {
  if (!exec_ || !once_ || epoch != epoch_) return false;
  size_t defined = 0;
  for (const auto& t : slots) defined += t.defined() ? 1 : 0;
  if (defined != fixed_inputs_.size()) return false;
  for (const auto& [k, f] : fixed_inputs_) {
    const Tensor& t = slots[(size_t)k];
    if (!t.defined() || t.shape() != f.shape() || t.dtype() != f.dtype()) return false;
  }
  return true;
}

void GraphRunner::sync_counters(void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  for (auto& m : mirrors_) {
    // Someone set the host counter (a loaded checkpoint, another graph): the device follows.
    int64_t v = m.host->load();
    if (v != m.shadow) set_device_word(counters_ + m.index, v, s);
    m.shadow = v;
  }
}

void GraphRunner::launch(void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), s), "graph");
  ++launches_;
  count(&GraphStats::launches);
}

void GraphRunner::capture(const std::function<void()>& body, std::vector<Tensor>& slots, const Inputs& host_inputs,
                          int64_t epoch) {
  const char* op = "graph";
  cudaStream_t s = current_stream();
  drop_exec();
  checks_.clear();
  mirrors_.clear();
  fixed_inputs_.clear();
  fixed_outputs_.clear();
  input_check_failed_ = false;
  if (!counters_) check(cudaMalloc(&counters_, kMaxCounters * sizeof(int64_t)), op);
  // The graph reads its inputs from buffers of its own: each replay copies the batch in.
  {
    ArenaScope scope(arena_);
    for (size_t k = 0; k < slots.size(); ++k)
      if (slots[k].defined())
        fixed_inputs_.emplace_back((int)k, Tensor::empty(slots[k].shape(), slots[k].dtype(), slots[k].device()));
  }
  for (auto& [k, f] : fixed_inputs_) {
    check(cudaMemcpyAsync(f.raw(), slots[(size_t)k].raw(), f.nbytes(), cudaMemcpyDeviceToDevice, s), op);
    slots[(size_t)k] = f;
  }
  Recording rec;
  rec.words = counters_;
  rec.fixed = &fixed_inputs_;
  rec.host = &host_inputs;
  HostAccess access;  // no input ranges: a host read of the batch would be baked in
  cudaGraph_t graph = nullptr;
  {
    AccessScope access_scope(&access);
    RecordingScope recording(&rec);
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), op);
    try {
      ArenaScope scope(arena_);
      body();
      // Last node: the counters move on by what this batch used, for the next replay.
      int64_t deltas[kMaxCounters] = {};
      for (size_t i = 0; i < rec.uses.size(); ++i) deltas[i] = rec.uses[i].advance;
      if (!rec.uses.empty()) add_device_words(counters_, deltas, (int)rec.uses.size(), s);
    } catch (...) {
      abandon_capture(s);
      for (const auto& u : rec.uses) u.counter->store(u.base);  // the eager rerun advances them
      input_check_failed_ = rec.check_failed;
      fixed_inputs_.clear();
      throw;
    }
    graph = end_capture(s, op, [&] {
      for (const auto& u : rec.uses) u.counter->store(u.base);
      fixed_inputs_.clear();
    });
  }
  cudaGraphExec_t exec = nullptr;
  cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    release_deferred_frees();
    for (const auto& u : rec.uses) u.counter->store(u.base);
    fixed_inputs_.clear();
    check(e, op);
  }
  exec_ = exec;
  once_ = true;
  epoch_ = epoch;
  ++instantiations_;
  ++captures_;
  count(&GraphStats::instantiations);
  count(&GraphStats::captures);
  checks_ = std::move(rec.checks);
  // This batch advanced the host counters while recording; the device starts from their bases.
  for (size_t i = 0; i < rec.uses.size(); ++i) {
    Mirror m{rec.uses[i].counter, rec.uses[i].advance, rec.uses[i].base, (int)i};
    set_device_word(counters_ + i, m.shadow, s);
    m.shadow += m.advance;
    mirrors_.push_back(std::move(m));
  }
  for (size_t k = 0; k < slots.size(); ++k)
    if (slots[k].defined()) fixed_outputs_.emplace_back((int)k, slots[k]);
  launch(s);
  release_deferred_frees();  // ordered after the graph that last read them
  for (auto& [k, f] : fixed_outputs_) {
    Tensor t = Tensor::empty(f.shape(), f.dtype(), f.device());
    check(cudaMemcpyAsync(t.raw(), f.raw(), f.nbytes(), cudaMemcpyDeviceToDevice, s), op);
    slots[(size_t)k] = t;
  }
}

void GraphRunner::replay(std::vector<Tensor>& slots, const Inputs& host_inputs) {
  const char* op = "graph";
  cudaStream_t s = current_stream();
  // Checks first: a rejected batch launches nothing (weights and counters stay as they are).
  for (const auto& [k, fn] : checks_) {
    const Tensor& f = slots[(size_t)k];
    fn(host_input(host_inputs, slots, k).reshape(f.shape()));
  }
  for (const auto& [k, f] : fixed_inputs_)
    check(cudaMemcpyAsync(f.raw(), slots[(size_t)k].raw(), f.nbytes(), cudaMemcpyDeviceToDevice, s), op);
  sync_counters(s);
  launch(s);
  for (auto& m : mirrors_) {
    m.host->fetch_add(m.advance);
    m.shadow += m.advance;
  }
  // The batch's results outlive later replays: copied out of the graph's buffers.
  for (size_t k = 0; k < slots.size(); ++k) slots[k] = Tensor();
  for (const auto& [k, f] : fixed_outputs_) {
    Tensor t = Tensor::empty(f.shape(), f.dtype(), f.device());
    check(cudaMemcpyAsync(t.raw(), f.raw(), f.nbytes(), cudaMemcpyDeviceToDevice, s), op);
    slots[(size_t)k] = t;
  }
}

void GraphRunner::rerecord(const std::function<void()>& body, const Ranges& inputs) {
  const char* op = "graph";
  cudaStream_t s = current_stream();
  if (once_) drop_exec();
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
    abandon_capture(s);
    throw;
  }
  graph = end_capture(s, op, [] {});
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
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) {
      cudaGraphDestroy(graph);
      exec_ = nullptr;
      release_deferred_frees();
      check(e, op);
    }
    ++instantiations_;
    count(&GraphStats::instantiations);
  }
  exec_ = exec;
  cudaGraphDestroy(graph);
  count(&GraphStats::rerecords);
  cudaError_t launched = cudaGraphLaunch(exec, s);
  release_deferred_frees();  // ordered after the graph that last read them
  check(launched, op);
  ++launches_;
  count(&GraphStats::launches);
}

void copy_to_device_async(const Tensor& dst, const Tensor& src, const char* op) {
  if (!src.nbytes()) return;
  check(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, current_stream()), op);
}

}  // namespace metalnn::cuda
