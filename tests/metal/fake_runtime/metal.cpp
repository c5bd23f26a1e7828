// Fake Metal: MTLDevice, MTLCommandQueue, MTLCommandBuffer, MTLComputeCommandEncoder,
// MTLBlitCommandEncoder, MTLBuffer, MTLLibrary, MTLFunction, MTLComputePipelineState and
// MTLCompileOptions, reached through objc_msgSend exactly as metal-cpp calls them.
//
// newLibraryWithSource compiles the MSL it is given with the emulator's machinery
// (compile_msl.py: prepass.py + clang into a shared library, cached by content), and
// dispatches run that library's kernels on a "GPU" thread after commit, in commit order.
//
// What Metal's API validation would reject is checked when it is encoded and aborts the
// process with the reason (as MTL_DEBUG_LAYER does); what a GPU would fault on at run time
// (emulator errors: barriers not reached by all threads, threadgroup memory overflow; writes
// past a buffer's end, caught by guard bytes) makes the command buffer fail with an NSError,
// which the host code must surface.
#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <Metal/Metal.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime.h"

extern "C" void* _Block_copy(const void*);
extern "C" void _Block_release(const void*);

namespace fakert {

namespace {

constexpr int kMaxBufferIndex = 31;        // Metal's buffer argument table
constexpr size_t kMaxBytes = 4096;         // setBytes limit
constexpr size_t kThreadgroupMemory = 32768;
constexpr size_t kMaxThreadsPerDim = 1024;
constexpr size_t kGuard = 256;             // poisoned bytes around each buffer we allocate
// Guard bytes are NaN (half 0x7Fxx, float 0x7Fxx7Fxx) with a payload that differs from one
// buffer to the next, so a kernel copying one buffer's out-of-range NaNs into another shows.
std::atomic<unsigned> g_buffer_serial{0};

long env_long(const char* name, long fallback) {
  const char* v = getenv(name);
  return v && *v ? strtol(v, nullptr, 10) : fallback;
}

// ---- statistics the tests read (fakert_dispatch_count) -----------------------------------
std::mutex g_stats_mutex;
std::map<std::string, long> g_dispatches;

// ---- objects ------------------------------------------------------------------------------
// Signature of the emulator's C entry point for one kernel (see tests/metal/prepass.py).
typedef int (*KernelEntry)(void** buffers, const uint64_t* sizes, int nbuf, const uint32_t* dims,
                           const uint32_t* tg_lengths, int schedule, char* err, int errlen);

enum ArgKind : long long { kEnd = -1, kPointer = 1, kReference = 2, kThreadgroupArg = 3 };

struct Device : Object {
  std::string name = "Fake Metal GPU (MSL emulator)";
};

struct Buffer : Object {
  Device* device = nullptr;
  unsigned char* allocation = nullptr;  // ours, with guards; nullptr for wrapped host memory
  unsigned char* data = nullptr;
  size_t length = 0;
  uint64_t options = 0;
  void* deallocator = nullptr;  // block for newBufferWithBytesNoCopy
  String* label = nullptr;
  unsigned char poison[2] = {0xC1, 0x7F};
  ~Buffer() {
    if (deallocator) {
      auto* b = static_cast<void**>(deallocator);
      // void (^)(void* pointer, NSUInteger length)
      reinterpret_cast<void (*)(void*, void*, unsigned long)>(b[2])(deallocator, data, length);
      _Block_release(deallocator);
    }
    free(allocation);
    if (label) release(label);
  }
  bool private_storage() const { return ((options >> 4) & 0xF) == 2; }
  // True when a kernel overwrote a guard byte; *at is its offset from the buffer's start.
  bool damaged_guard(long* at) const {
    if (!allocation) return false;
    for (size_t i = 0; i < kGuard; ++i)
      if (allocation[i] != poison[i & 1]) return *at = (long)i - (long)kGuard, true;
    for (size_t i = 0; i < kGuard; ++i)
      if (data[length + i] != poison[i & 1]) return *at = (long)(length + i), true;
    return false;
  }
  void write_guards() {
    for (size_t i = 0; i < kGuard; ++i) allocation[i] = data[length + i] = poison[i & 1];
  }
};

struct Library : Object {
  void* handle = nullptr;
  std::string file;                  // the .metal file named by the source's first #line
  std::vector<std::string> kernels;
};

struct Function : Object {
  Library* library = nullptr;
  std::string name;
  KernelEntry entry = nullptr;
  const long long* args = nullptr;   // {kind, index, size, align}... {-1}
  long long static_threadgroup = 0;
  ~Function() {
    if (library) release(library);
  }
};

struct Pipeline : Object {
  Function* function = nullptr;
  size_t max_threads = 1024;
  ~Pipeline() {
    if (function) release(function);
  }
};

struct CompileOptions : Object {
  unsigned long language_version = 0;
  bool fast_math = true;  // Metal's default
};

struct Queue : Object {
  Device* device = nullptr;
  String* label = nullptr;
  ~Queue() {
    if (label) release(label);
  }
};

struct Binding {
  Buffer* buffer = nullptr;
  size_t offset = 0;
  bool is_bytes = false;
  std::vector<unsigned char> bytes;
  uint64_t stamp = 0;  // when it was set (ComputeEncoder::clock)
};

struct Command {
  enum Kind { Dispatch, Copy, Fill } kind = Dispatch;
  std::string where;  // "dispatch #2 of encoder #1 (kernel)" for messages
  // Dispatch
  Pipeline* pipeline = nullptr;
  std::array<Binding, kMaxBufferIndex> bindings;
  std::array<uint32_t, kMaxBufferIndex> threadgroup_lengths{};
  MTL::Size groups{1, 1, 1}, threads{1, 1, 1};
  // Copy / Fill
  Buffer* src = nullptr;
  Buffer* dst = nullptr;
  size_t src_offset = 0, dst_offset = 0, size = 0;
  unsigned char value = 0;
};

struct CommandBuffer : Object {
  Queue* queue = nullptr;
  bool retained_references = true;
  std::mutex mutex;
  std::condition_variable cv;
  unsigned long status = MTL::CommandBufferStatusNotEnqueued;
  Error* error = nullptr;
  std::vector<Command> commands;
  std::vector<void*> scheduled_handlers, completed_handlers;  // heap blocks
  Object* open_encoder = nullptr;
  int encoders = 0;
  double gpu_start = 0, gpu_end = 0;
  String* label = nullptr;
  ~CommandBuffer() {
    drop_references();
    for (void* b : scheduled_handlers) _Block_release(b);
    for (void* b : completed_handlers) _Block_release(b);
    if (error) release(error);
    if (label) release(label);
    if (queue) release(queue);
  }
  void drop_references() {
    if (retained_references) {
      for (Command& c : commands) {
        if (c.pipeline) release(c.pipeline);
        for (Binding& b : c.bindings)
          if (b.buffer) release(b.buffer);
        if (c.src) release(c.src);
        if (c.dst) release(c.dst);
      }
    }
    commands.clear();
  }
};

struct ComputeEncoder : Object {
  CommandBuffer* cb = nullptr;
  int number = 0;  // 1-based within its command buffer
  bool ended = false;
  Pipeline* pipeline = nullptr;
  std::array<Binding, kMaxBufferIndex> bindings;
  std::array<uint32_t, kMaxBufferIndex> threadgroup_lengths{};
  std::array<uint64_t, kMaxBufferIndex> threadgroup_stamps{};
  uint64_t clock = 0;           // ticks at every state change
  uint64_t pipeline_stamp = 0;  // when setComputePipelineState was last called
  int dispatches = 0;
  ~ComputeEncoder() {
    if (!ended)
      validation_error("MTLComputeCommandEncoder %p (encoder #%d of its command buffer) released without endEncoding",
                       (void*)this, number);
    if (cb) release(cb);
  }
};

struct BlitEncoder : Object {
  CommandBuffer* cb = nullptr;
  int number = 0;
  bool ended = false;
  ~BlitEncoder() {
    if (!ended)
      validation_error("MTLBlitCommandEncoder %p released without endEncoding", (void*)this);
    if (cb) release(cb);
  }
};

Device* g_device = nullptr;
Class g_buffer_class, g_queue_class, g_cb_class, g_compute_class, g_blit_class, g_library_class,
    g_function_class, g_pipeline_class, g_device_class;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- the GPU: one thread runs committed command buffers in commit order -------------------
struct Gpu {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<CommandBuffer*> queue;
};

Gpu& gpu();
void execute(CommandBuffer* cb);

void gpu_main(Gpu* g) {
  for (;;) {
    CommandBuffer* cb;
    {
      std::unique_lock<std::mutex> lock(g->mutex);
      g->cv.wait(lock, [&] { return !g->queue.empty(); });
      cb = g->queue.front();
      g->queue.pop_front();
    }
    // A slow GPU: host code that reads results before their command buffer completes sees stale data.
    static const long delay_ms = env_long("FAKE_METAL_GPU_DELAY_MS", 0);
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    execute(cb);
  }
}

Gpu& gpu() {
  static Gpu* g = [] {
    auto* p = new Gpu();  // never destroyed; the thread is detached
    std::thread(gpu_main, p).detach();
    return p;
  }();
  return *g;
}

void set_status(CommandBuffer* cb, unsigned long status) {
  std::lock_guard<std::mutex> lock(cb->mutex);
  cb->status = status;
  cb->cv.notify_all();
}

// FAKE_METAL_FAIL_KERNEL=name[:count][,name[:count]...]: the first `count` (default: every)
// dispatches of those kernels fault, so tests can watch the host surface command buffer errors.
bool inject_fault(const std::string& kernel) {
  static std::map<std::string, long>* remaining = [] {
    auto* m = new std::map<std::string, long>();
    std::string spec = getenv("FAKE_METAL_FAIL_KERNEL") ? getenv("FAKE_METAL_FAIL_KERNEL") : "";
    size_t start = 0;
    while (start < spec.size()) {
      size_t end = spec.find(',', start);
      std::string item = spec.substr(start, end == std::string::npos ? std::string::npos : end - start);
      size_t colon = item.find(':');
      (*m)[item.substr(0, colon)] = colon == std::string::npos ? -1 : strtol(item.c_str() + colon + 1, nullptr, 10);
      start = end == std::string::npos ? spec.size() : end + 1;
    }
    return m;
  }();
  auto it = remaining->find(kernel);  // only the GPU thread gets here
  if (it == remaining->end() || it->second == 0) return false;
  if (it->second > 0) --it->second;
  return true;
}

// Runs one dispatch; returns "" or what went wrong.
std::string run_dispatch(Command& c, int schedule) {
  Function* fn = c.pipeline->function;
  if (inject_fault(fn->name)) return "injected fault (FAKE_METAL_FAIL_KERNEL)";
  void* ptrs[kMaxBufferIndex] = {};
  uint64_t sizes[kMaxBufferIndex] = {};
  for (int i = 0; i < kMaxBufferIndex; ++i) {
    Binding& b = c.bindings[i];
    if (b.is_bytes) {
      ptrs[i] = b.bytes.data();
      sizes[i] = b.bytes.size();
    } else if (b.buffer) {
      if (!is_live(b.buffer))
        return "buffer(" + std::to_string(i) + ") was deallocated before the GPU ran the command buffer";
      ptrs[i] = b.buffer->data + b.offset;
      sizes[i] = b.buffer->length - b.offset;
    }
  }
  // A `constant T&` bound with setBuffer: the encoder checked the buffer holds sizeof(T).
  for (const long long* a = fn->args; a[0] != kEnd; a += 4)
    if (a[0] == kReference && !c.bindings[a[1]].is_bytes) sizes[a[1]] = (uint64_t)a[2];
  uint32_t dims[6] = {(uint32_t)c.groups.width, (uint32_t)c.groups.height, (uint32_t)c.groups.depth,
                      (uint32_t)c.threads.width, (uint32_t)c.threads.height, (uint32_t)c.threads.depth};
  uint32_t tgl[kMaxBufferIndex];
  for (int i = 0; i < kMaxBufferIndex; ++i) tgl[i] = c.threadgroup_lengths[i];
  char err[2048] = {0};
  int rc = fn->entry(ptrs, sizes, kMaxBufferIndex, dims, tgl, schedule, err, (int)sizeof err);
  {
    std::lock_guard<std::mutex> lock(g_stats_mutex);
    ++g_dispatches[fn->name];
  }
  if (rc != 0) return std::string("the emulator stopped the kernel: ") + err;
  for (int i = 0; i < kMaxBufferIndex; ++i) {
    Buffer* b = c.bindings[i].buffer;
    if (!b || c.bindings[i].is_bytes) continue;
    long at = 0;
    if (b->damaged_guard(&at)) {
      char msg[256];
      snprintf(msg, sizeof msg, "wrote outside buffer(%d), which holds %zu bytes: at byte %ld (a GPU page fault or "
               "silent corruption)", i, b->length, at);
      b->write_guards();
      return msg;
    }
  }
  return "";
}

std::string run_command(Command& c, int schedule) {
  switch (c.kind) {
    case Command::Dispatch:
      return run_dispatch(c, schedule);
    case Command::Copy:
      if (!is_live(c.src) || !is_live(c.dst)) return "a buffer was deallocated before the GPU ran the copy";
      memmove(c.dst->data + c.dst_offset, c.src->data + c.src_offset, c.size);
      return "";
    case Command::Fill:
      if (!is_live(c.dst)) return "a buffer was deallocated before the GPU ran the fill";
      memset(c.dst->data + c.dst_offset, c.value, c.size);
      return "";
  }
  return "";
}

void execute(CommandBuffer* cb) {
  static const int schedule = (int)env_long("FAKE_METAL_SCHEDULE", 0);
  cb->gpu_start = now_seconds();
  set_status(cb, MTL::CommandBufferStatusScheduled);
  push_pool();
  for (void* h : cb->scheduled_handlers) call_block(h, cb);
  pop_pool();
  std::string failure;
  for (Command& c : cb->commands) {
    std::string what = run_command(c, schedule);
    if (!what.empty()) {
      failure = c.where + ": " + what;
      break;  // a faulting command buffer stops, as on a GPU
    }
  }
  cb->gpu_end = now_seconds();
  if (!failure.empty()) {
    fprintf(stderr, "fake Metal runtime: command buffer %p failed: %s\n", (void*)cb, failure.c_str());
    cb->error = new_error("MTLCommandBufferErrorDomain", MTL::CommandBufferErrorInternal,
                          "fake Metal GPU: " + failure);
  }
  set_status(cb, failure.empty() ? MTL::CommandBufferStatusCompleted : MTL::CommandBufferStatusError);
  push_pool();
  for (void* h : cb->completed_handlers) call_block(h, cb);
  pop_pool();
  release(cb);  // the reference commit took
}

// ---- MSL compilation ----------------------------------------------------------------------
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

// Compiles MSL source into an emulator library; returns its path, or "" with `log` set.
std::string compile_msl(const std::string& source, std::string& log) {
  const char* python = getenv("FAKE_METAL_PYTHON");
  const char* script = getenv("FAKE_METAL_COMPILER");
#ifdef FAKERT_PYTHON
  if (!python || !*python) python = FAKERT_PYTHON;
#endif
#ifdef FAKERT_COMPILER
  if (!script || !*script) script = FAKERT_COMPILER;
#endif
  if (!python || !script) {
    log = "no MSL compiler configured (FAKE_METAL_PYTHON / FAKE_METAL_COMPILER)";
    return "";
  }
  char path[] = "/tmp/fakert-msl-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    log = "cannot create a temporary file";
    return "";
  }
  size_t done = 0;
  while (done < source.size()) {
    ssize_t n = write(fd, source.data() + done, source.size() - done);
    if (n <= 0) break;
    done += (size_t)n;
  }
  close(fd);
  std::string cmd = shell_quote(python) + " " + shell_quote(script) + " " + shell_quote(path) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    unlink(path);
    log = "cannot run " + cmd;
    return "";
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  unlink(path);
  const std::string marker = "FAKERT_LIBRARY ";
  size_t at = out.rfind(marker);
  if (rc != 0 || at == std::string::npos) {
    log = out.empty() ? "the MSL compiler failed without output" : out;
    return "";
  }
  std::string lib = out.substr(at + marker.size());
  while (!lib.empty() && (lib.back() == '\n' || lib.back() == '\r')) lib.pop_back();
  return lib;
}

// ---- MTLDevice ------------------------------------------------------------------------------
void* dev_name(Device* self, SEL) { return autorelease(new_string(self->name)); }
bool dev_true(Device*, SEL) { return true; }
bool dev_false(Device*, SEL) { return false; }
unsigned long dev_maxBufferLength(Device*, SEL) { return 4ul << 30; }
unsigned long dev_workingSet(Device*, SEL) { return 16ul << 30; }
unsigned long dev_maxThreadgroupMemoryLength(Device*, SEL) { return kThreadgroupMemory; }
MTL::Size dev_maxThreadsPerThreadgroup(Device*, SEL) {
  return MTL::Size(kMaxThreadsPerDim, kMaxThreadsPerDim, kMaxThreadsPerDim);
}
unsigned long dev_registryID(Device*, SEL) { return 0x4d4e4e; }
unsigned long dev_currentAllocatedSize(Device*, SEL) { return 0; }
bool dev_supportsFamily(Device*, SEL, long family) {
  // An Apple8-class GPU with Metal 3 (macOS 13+ on Apple silicon).
  return (family >= 1001 && family <= 1008) || family == 2002 || (family >= 3001 && family <= 3003) ||
         family == 5001;
}

void* new_queue(Device* self) {
  Queue* q = make<Queue>(g_queue_class);
  q->device = self;
  return q;
}
void* dev_newCommandQueue(Device* self, SEL) { return new_queue(self); }
void* dev_newCommandQueueMax(Device* self, SEL, unsigned long) { return new_queue(self); }

Buffer* allocate_buffer(Device* self, size_t length, uint64_t options, const char* what) {
  if (length == 0) validation_error("-[MTLDevice %s]: length must be greater than 0", what);
  if (length > dev_maxBufferLength(self, nullptr))
    return nullptr;
  Buffer* b = make<Buffer>(g_buffer_class);
  b->device = self;
  b->length = length;
  b->options = options;
  // Zero-filled as Metal's are, between guards a kernel must not touch.
  b->allocation = static_cast<unsigned char*>(aligned_alloc(64, (length + 2 * kGuard + 63) / 64 * 64));
  if (!b->allocation) {
    release(b);
    return nullptr;
  }
  b->data = b->allocation + kGuard;
  b->poison[0] = (unsigned char)(0xC1 + g_buffer_serial.fetch_add(1) % 62);
  b->write_guards();
  memset(b->data, 0, length);
  return b;
}

void* dev_newBufferWithLength(Device* self, SEL, unsigned long length, unsigned long options) {
  return allocate_buffer(self, length, options, "newBufferWithLength:options:");
}

void* dev_newBufferWithBytes(Device* self, SEL, const void* bytes, unsigned long length, unsigned long options) {
  if (!bytes) validation_error("-[MTLDevice newBufferWithBytes:length:options:]: bytes is NULL");
  Buffer* b = allocate_buffer(self, length, options, "newBufferWithBytes:length:options:");
  if (b) memcpy(b->data, bytes, length);
  return b;
}

void* dev_newBufferWithBytesNoCopy(Device* self, SEL, void* pointer, unsigned long length, unsigned long options,
                                   void* deallocator) {
  const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
  if (!pointer || (uintptr_t)pointer % page != 0)
    validation_error("-[MTLDevice newBufferWithBytesNoCopy:length:options:deallocator:]: pointer %p is not "
                     "page-aligned (%lu)", pointer, page);
  if (length == 0 || length % page != 0)
    validation_error("-[MTLDevice newBufferWithBytesNoCopy:length:options:deallocator:]: length %lu is not a "
                     "positive multiple of the page size (%lu)", length, page);
  if (((options >> 4) & 0xF) == 2)
    validation_error("-[MTLDevice newBufferWithBytesNoCopy:...]: private storage cannot wrap host memory");
  Buffer* b = make<Buffer>(g_buffer_class);
  b->device = self;
  b->data = static_cast<unsigned char*>(pointer);
  b->length = length;
  b->options = options;
  b->deallocator = deallocator ? _Block_copy(deallocator) : nullptr;
  return b;
}

void* dev_newLibraryWithSource(Device* self, SEL, String* source, CompileOptions* options, Error** error) {
  if (error) *error = nullptr;
  const std::string& text = checked<String>(source, "-[MTLDevice newLibraryWithSource:options:error:] source")->text;
  if (options) checked<CompileOptions>(options, "-[MTLDevice newLibraryWithSource:options:error:] options");
  // Not Metal's rule but ours (docs/metal.md): fast math, Metal's default, would make a Mac's
  // results differ from the CPU backend's, and the emulator cannot show it.
  if ((!options || options->fast_math) && !env_long("FAKE_METAL_ALLOW_FAST_MATH", 0))
    validation_error("-[MTLDevice newLibraryWithSource:options:error:]: compiling with fast math on (Metal's default); "
                     "metalnn's kernels must compile with setFastMathEnabled(false)");
  std::string log;
  std::string path = compile_msl(text, log);
  void* handle = path.empty() ? nullptr : dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!path.empty() && !handle) log = std::string("dlopen failed: ") + dlerror();
  const char* const* names = handle ? static_cast<const char* const*>(dlsym(handle, "fakert_kernels")) : nullptr;
  if (handle && !names) log = "the compiled library has no fakert_kernels table";
  if (!names) {
    if (error) *error = static_cast<Error*>(autorelease(new_error("MTLLibraryErrorDomain", 3, "Compilation failed: \n" + log)));
    return nullptr;
  }
  Library* lib = make<Library>(g_library_class);
  lib->handle = handle;  // never closed: functions and pipelines point into it
  for (; *names; ++names) lib->kernels.push_back(*names);
  if (text.compare(0, 9, "#line 1 \"") == 0) lib->file = text.substr(9, text.find('"', 9) - 9);
  return lib;
}

void* dev_newComputePipelineState(Device* self, SEL, Function* fn, Error** error) {
  if (error) *error = nullptr;
  checked<Function>(fn, "-[MTLDevice newComputePipelineStateWithFunction:error:] function");
  Pipeline* p = make<Pipeline>(g_pipeline_class);
  p->function = static_cast<Function*>(retain(fn));
  long max = env_long("FAKE_METAL_MAX_THREADS", 1024);
  p->max_threads = (size_t)(max > 0 && max <= 1024 ? max : 1024);
  return p;
}

// ---- MTLCompileOptions ---------------------------------------------------------------------
void opt_setLanguageVersion(CompileOptions* self, SEL, unsigned long v) { self->language_version = v; }
unsigned long opt_languageVersion(CompileOptions* self, SEL) { return self->language_version; }
void opt_setFastMathEnabled(CompileOptions* self, SEL, bool v) { self->fast_math = v; }
bool opt_fastMathEnabled(CompileOptions* self, SEL) { return self->fast_math; }
void opt_setMathMode(CompileOptions* self, SEL, long mode) { self->fast_math = mode == 2; }
void opt_ignore_object(CompileOptions*, SEL, void*) {}

// ---- MTLLibrary / MTLFunction / MTLComputePipelineState ------------------------------------
void* lib_newFunctionWithName(Library* self, SEL, String* name) {
  const std::string& n = checked<String>(name, "-[MTLLibrary newFunctionWithName:]")->text;
  auto entry = reinterpret_cast<KernelEntry>(dlsym(self->handle, ("mslemu_" + n).c_str()));
  auto args = static_cast<const long long*>(dlsym(self->handle, ("fakert_args_" + n).c_str()));
  auto tg = static_cast<const long long*>(dlsym(self->handle, ("fakert_static_threadgroup_" + n).c_str()));
  if (!entry || !args || !tg) return nullptr;  // as Metal: no such function
  Function* f = make<Function>(g_function_class);
  f->library = static_cast<Library*>(retain(self));
  f->name = n;
  f->entry = entry;
  f->args = args;
  f->static_threadgroup = *tg;
  return f;
}
void* lib_functionNames(Library* self, SEL) {
  Array* a = new_array();
  for (const std::string& k : self->kernels) a->items.push_back(new_string(k));
  return autorelease(a);
}
void* fn_name(Function* self, SEL) { return autorelease(new_string(self->name)); }
unsigned long fn_functionType(Function*, SEL) { return 3; }  // MTLFunctionTypeKernel
void* any_device(Object*, SEL) { return g_device; }
unsigned long pso_maxTotalThreads(Pipeline* self, SEL) { return self->max_threads; }
unsigned long pso_threadExecutionWidth(Pipeline*, SEL) { return 32; }
unsigned long pso_staticThreadgroupMemoryLength(Pipeline* self, SEL) {
  return (unsigned long)self->function->static_threadgroup;
}

// ---- MTLCommandQueue -----------------------------------------------------------------------
void* new_command_buffer(Queue* self, bool retained) {
  CommandBuffer* cb = make<CommandBuffer>(g_cb_class);
  cb->queue = static_cast<Queue*>(retain(self));
  cb->retained_references = retained;
  return autorelease(cb);
}
void* queue_commandBuffer(Queue* self, SEL) { return new_command_buffer(self, true); }
void* queue_commandBufferUnretained(Queue* self, SEL) { return new_command_buffer(self, false); }
void* queue_label(Queue* self, SEL) { return self->label; }
void queue_setLabel(Queue* self, SEL, String* s) {
  if (s) retain(s);
  if (self->label) release(self->label);
  self->label = s;
}

// ---- MTLCommandBuffer ----------------------------------------------------------------------
void cb_check_encodable(CommandBuffer* self, const char* what) {
  if (self->status != MTL::CommandBufferStatusNotEnqueued && self->status != MTL::CommandBufferStatusEnqueued)
    validation_error("-[MTLCommandBuffer %s]: command buffer %p is already committed", what, (void*)self);
  if (self->open_encoder)
    validation_error("-[MTLCommandBuffer %s]: encoder %p of command buffer %p has not called endEncoding", what,
                     (void*)self->open_encoder, (void*)self);
}

void* cb_computeCommandEncoder(CommandBuffer* self, SEL) {
  cb_check_encodable(self, "computeCommandEncoder");
  ComputeEncoder* e = make<ComputeEncoder>(g_compute_class);
  e->cb = static_cast<CommandBuffer*>(retain(self));
  e->number = ++self->encoders;
  self->open_encoder = e;
  return autorelease(e);
}
void* cb_computeCommandEncoderWithType(CommandBuffer* self, SEL s, unsigned long) {
  return cb_computeCommandEncoder(self, s);
}
void* cb_blitCommandEncoder(CommandBuffer* self, SEL) {
  cb_check_encodable(self, "blitCommandEncoder");
  BlitEncoder* e = make<BlitEncoder>(g_blit_class);
  e->cb = static_cast<CommandBuffer*>(retain(self));
  e->number = ++self->encoders;
  self->open_encoder = e;
  return autorelease(e);
}

void cb_enqueue(CommandBuffer* self, SEL) {
  if (self->status == MTL::CommandBufferStatusNotEnqueued) set_status(self, MTL::CommandBufferStatusEnqueued);
}

void cb_commit(CommandBuffer* self, SEL) {
  if (self->status != MTL::CommandBufferStatusNotEnqueued && self->status != MTL::CommandBufferStatusEnqueued)
    validation_error("-[MTLCommandBuffer commit]: command buffer %p committed twice", (void*)self);
  if (self->open_encoder)
    validation_error("-[MTLCommandBuffer commit]: command buffer %p committed while encoder %p has not called "
                     "endEncoding", (void*)self, (void*)self->open_encoder);
  set_status(self, MTL::CommandBufferStatusCommitted);
  retain(self);  // until the GPU is done with it
  Gpu& g = gpu();
  std::lock_guard<std::mutex> lock(g.mutex);
  g.queue.push_back(self);
  g.cv.notify_one();
}

void cb_wait(CommandBuffer* self, unsigned long at_least, const char* what) {
  if (self->status < MTL::CommandBufferStatusCommitted)
    validation_error("-[MTLCommandBuffer %s]: command buffer %p was never committed (this would wait forever)", what,
                     (void*)self);
  std::unique_lock<std::mutex> lock(self->mutex);
  self->cv.wait(lock, [&] { return self->status >= at_least; });
}
void cb_waitUntilCompleted(CommandBuffer* self, SEL) {
  cb_wait(self, MTL::CommandBufferStatusCompleted, "waitUntilCompleted");
  // Handlers run before waiters wake on a Mac too? No: waiters may wake first; nothing relies on it.
}
void cb_waitUntilScheduled(CommandBuffer* self, SEL) {
  cb_wait(self, MTL::CommandBufferStatusScheduled, "waitUntilScheduled");
}

void cb_addHandler(CommandBuffer* self, void* block, std::vector<void*>& list, const char* what) {
  if (self->status >= MTL::CommandBufferStatusCommitted)
    validation_error("-[MTLCommandBuffer %s]: handler added after commit (command buffer %p)", what, (void*)self);
  if (!block) validation_error("-[MTLCommandBuffer %s]: nil block", what);
  list.push_back(_Block_copy(block));
}
void cb_addCompletedHandler(CommandBuffer* self, SEL, void* block) {
  cb_addHandler(self, block, self->completed_handlers, "addCompletedHandler:");
}
void cb_addScheduledHandler(CommandBuffer* self, SEL, void* block) {
  cb_addHandler(self, block, self->scheduled_handlers, "addScheduledHandler:");
}
unsigned long cb_status(CommandBuffer* self, SEL) {
  std::lock_guard<std::mutex> lock(self->mutex);
  return self->status;
}
void* cb_error(CommandBuffer* self, SEL) {
  std::lock_guard<std::mutex> lock(self->mutex);
  return self->error;
}
double cb_gpuStart(CommandBuffer* self, SEL) { return self->gpu_start; }
double cb_gpuEnd(CommandBuffer* self, SEL) { return self->gpu_end; }
void* cb_commandQueue(CommandBuffer* self, SEL) { return self->queue; }
bool cb_retainedReferences(CommandBuffer* self, SEL) { return self->retained_references; }
void* cb_label(CommandBuffer* self, SEL) { return self->label; }
void cb_setLabel(CommandBuffer* self, SEL, String* s) {
  if (s) retain(s);
  if (self->label) release(self->label);
  self->label = s;
}
void cb_noop(CommandBuffer*, SEL) {}
void cb_noop_object(CommandBuffer*, SEL, void*) {}

// ---- MTLComputeCommandEncoder --------------------------------------------------------------
ComputeEncoder* live_encoder(ComputeEncoder* self, const char* what) {
  if (self->ended)
    validation_error("-[MTLComputeCommandEncoder %s]: encoder %p used after endEncoding", what, (void*)self);
  return self;
}

void check_index(unsigned long index, const char* what) {
  if (index >= (unsigned long)kMaxBufferIndex)
    validation_error("-[MTLComputeCommandEncoder %s]: index %lu is beyond the %d buffer slots", what, index,
                     kMaxBufferIndex);
}

void enc_setComputePipelineState(ComputeEncoder* self, SEL, Pipeline* p) {
  live_encoder(self, "setComputePipelineState:");
  if (!p) validation_error("-[MTLComputeCommandEncoder setComputePipelineState:]: nil pipeline state");
  self->pipeline = checked<Pipeline>(p, "-[MTLComputeCommandEncoder setComputePipelineState:]");
  self->pipeline_stamp = ++self->clock;
}

void bind_buffer(ComputeEncoder* self, Buffer* buffer, unsigned long offset, unsigned long index, const char* what) {
  check_index(index, what);
  Binding& b = self->bindings[index];
  b = Binding();
  b.stamp = ++self->clock;
  if (!buffer) return;  // unbinds
  checked<Buffer>(buffer, what);
  if (offset > buffer->length)
    validation_error("-[MTLComputeCommandEncoder %s]: offset %lu at index %lu is beyond the buffer's %zu bytes", what,
                     offset, index, buffer->length);
  b.buffer = buffer;
  b.offset = offset;
}

void enc_setBuffer(ComputeEncoder* self, SEL, Buffer* buffer, unsigned long offset, unsigned long index) {
  live_encoder(self, "setBuffer:offset:atIndex:");
  bind_buffer(self, buffer, offset, index, "setBuffer:offset:atIndex:");
}

void enc_setBuffers(ComputeEncoder* self, SEL, Buffer* const* buffers, const unsigned long* offsets, NS::Range range) {
  live_encoder(self, "setBuffers:offsets:withRange:");
  for (unsigned long i = 0; i < range.length; ++i)
    bind_buffer(self, buffers[i], offsets[i], range.location + i, "setBuffers:offsets:withRange:");
}

void enc_setBufferOffset(ComputeEncoder* self, SEL, unsigned long offset, unsigned long index) {
  live_encoder(self, "setBufferOffset:atIndex:");
  check_index(index, "setBufferOffset:atIndex:");
  Binding& b = self->bindings[index];
  if (!b.buffer) validation_error("-[MTLComputeCommandEncoder setBufferOffset:atIndex:]: no buffer at index %lu", index);
  bind_buffer(self, b.buffer, offset, index, "setBufferOffset:atIndex:");
}

void enc_setBytes(ComputeEncoder* self, SEL, const void* bytes, unsigned long length, unsigned long index) {
  live_encoder(self, "setBytes:length:atIndex:");
  check_index(index, "setBytes:length:atIndex:");
  if (length > kMaxBytes)
    validation_error("-[MTLComputeCommandEncoder setBytes:length:atIndex:]: %lu bytes at index %lu exceed the %zu "
                     "byte limit (use a buffer)", length, index, kMaxBytes);
  if (!bytes && length) validation_error("-[MTLComputeCommandEncoder setBytes:length:atIndex:]: NULL bytes");
  Binding& b = self->bindings[index];
  b = Binding();
  b.stamp = ++self->clock;
  b.is_bytes = true;
  b.bytes.assign(static_cast<const unsigned char*>(bytes), static_cast<const unsigned char*>(bytes) + length);
}

void enc_setThreadgroupMemoryLength(ComputeEncoder* self, SEL, unsigned long length, unsigned long index) {
  live_encoder(self, "setThreadgroupMemoryLength:atIndex:");
  check_index(index, "setThreadgroupMemoryLength:atIndex:");
  if (length % 16 != 0)
    validation_error("-[MTLComputeCommandEncoder setThreadgroupMemoryLength:atIndex:]: length %lu at index %lu is "
                     "not a multiple of 16", length, index);
  if (length > kThreadgroupMemory)
    validation_error("-[MTLComputeCommandEncoder setThreadgroupMemoryLength:atIndex:]: length %lu exceeds %zu",
                     length, kThreadgroupMemory);
  self->threadgroup_lengths[index] = (uint32_t)length;
  self->threadgroup_stamps[index] = ++self->clock;
}

// Checks what Metal's validation checks at a dispatch and records it into the command buffer.
void encode_dispatch(ComputeEncoder* self, MTL::Size groups, MTL::Size threads, const char* what) {
  live_encoder(self, what);
  int number = ++self->dispatches;
  Pipeline* p = self->pipeline;
  if (!p) validation_error("-[MTLComputeCommandEncoder %s]: no compute pipeline state set (dispatch #%d)", what, number);
  Function* fn = p->function;
  const char* k = fn->name.c_str();
  if (groups.width == 0 || groups.height == 0 || groups.depth == 0)
    validation_error("%s: kernel %s: grid %lux%lux%lu has a zero dimension", what, k, groups.width, groups.height,
                     groups.depth);
  if (threads.width == 0 || threads.height == 0 || threads.depth == 0 || threads.width > kMaxThreadsPerDim ||
      threads.height > kMaxThreadsPerDim || threads.depth > kMaxThreadsPerDim)
    validation_error("%s: kernel %s: threadgroup %lux%lux%lu has a dimension outside [1, %zu]", what, k,
                     threads.width, threads.height, threads.depth, kMaxThreadsPerDim);
  size_t total = threads.width * threads.height * threads.depth;
  if (total > p->max_threads)
    validation_error("%s: kernel %s: threadgroup of %lux%lux%lu = %zu threads exceeds the pipeline's "
                     "maxTotalThreadsPerThreadgroup (%zu)", what, k, threads.width, threads.height, threads.depth,
                     total, p->max_threads);
  size_t tg_total = (size_t)fn->static_threadgroup;
  static const bool strict = env_long("FAKE_METAL_STALE_BINDINGS", 0) == 0;
  for (const long long* a = fn->args; a[0] != kEnd; a += 4) {
    const int index = (int)a[1];
    if (a[0] == kThreadgroupArg) {
      if (self->threadgroup_lengths[index] == 0)
        validation_error("%s: kernel %s: threadgroup memory at index %d has no length "
                         "(setThreadgroupMemoryLength:atIndex:)", what, k, index);
      if (strict && self->threadgroup_stamps[index] < self->pipeline_stamp)
        validation_error("%s: kernel %s: threadgroup memory at index %d was set before setComputePipelineState "
                         "(left over from an earlier dispatch?)", what, k, index);
      tg_total += self->threadgroup_lengths[index];
      continue;
    }
    const Binding& b = self->bindings[index];
    if (!b.is_bytes && !b.buffer)
      validation_error("%s: kernel %s reads buffer(%d), which is not bound (setBuffer/setBytes)", what, k, index);
    // Metal keeps bindings across dispatches, so a forgotten bind silently reuses the previous
    // kernel's buffer. Our encoders bind everything after setting the pipeline; require it.
    if (strict && b.stamp < self->pipeline_stamp)
      validation_error("%s: kernel %s reads buffer(%d), bound before setComputePipelineState: a stale binding "
                       "left over from an earlier dispatch (set FAKE_METAL_STALE_BINDINGS=1 to allow)", what, k,
                       index);
    if (a[0] == kReference) {
      if (b.is_bytes && b.bytes.size() != (size_t)a[2])
        validation_error("%s: kernel %s: setBytes length %zu at index %d, but the kernel's argument at buffer(%d) "
                         "has sizeof %lld (host and MSL structs differ)", what, k, b.bytes.size(), index, index, a[2]);
      if (b.buffer && b.buffer->length - b.offset < (size_t)a[2])
        validation_error("%s: kernel %s: buffer(%d) holds %zu bytes past its offset, the kernel's argument needs "
                         "%lld", what, k, index, b.buffer->length - b.offset, a[2]);
    }
    if (b.buffer) {
      if (a[3] > 1 && b.offset % (size_t)a[3] != 0)
        validation_error("%s: kernel %s: buffer(%d) offset %zu is not aligned to its element type (%lld bytes)", what,
                         k, index, b.offset, a[3]);
    }
  }
  if (tg_total > kThreadgroupMemory)
    validation_error("%s: kernel %s: %zu bytes of threadgroup memory exceed %zu", what, k, tg_total,
                     kThreadgroupMemory);

  CommandBuffer* cb = self->cb;
  Command c;
  c.kind = Command::Dispatch;
  c.where = "dispatch #" + std::to_string(number) + " of encoder #" + std::to_string(self->number) + " (kernel " +
            fn->name + ", grid " + std::to_string(groups.width) + "x" + std::to_string(groups.height) + "x" +
            std::to_string(groups.depth) + " of " + std::to_string(threads.width) + "x" +
            std::to_string(threads.height) + "x" + std::to_string(threads.depth) + ")";
  c.pipeline = p;
  c.bindings = self->bindings;
  c.threadgroup_lengths = self->threadgroup_lengths;
  c.groups = groups;
  c.threads = threads;
  if (cb->retained_references) {
    retain(p);
    for (Binding& b : c.bindings)
      if (b.buffer) retain(b.buffer);
  }
  cb->commands.push_back(std::move(c));
}

void enc_dispatchThreadgroups(ComputeEncoder* self, SEL, MTL::Size groups, MTL::Size threads) {
  encode_dispatch(self, groups, threads, "dispatchThreadgroups:threadsPerThreadgroup:");
}

// Non-uniform grids: the emulator runs whole threadgroups, so the grid is rounded up and the
// kernel's own bounds check (required by our conventions) keeps the extra threads idle.
void enc_dispatchThreads(ComputeEncoder* self, SEL, MTL::Size grid, MTL::Size threads) {
  if (threads.width == 0 || threads.height == 0 || threads.depth == 0)
    validation_error("dispatchThreads:threadsPerThreadgroup: zero threadgroup dimension");
  MTL::Size groups((grid.width + threads.width - 1) / threads.width, (grid.height + threads.height - 1) / threads.height,
                   (grid.depth + threads.depth - 1) / threads.depth);
  encode_dispatch(self, groups, threads, "dispatchThreads:threadsPerThreadgroup:");
}

void enc_memoryBarrierScope(ComputeEncoder* self, SEL, unsigned long) {
  live_encoder(self, "memoryBarrierWithScope:");  // dispatches run one after another: nothing to do
}
void enc_memoryBarrierResources(ComputeEncoder* self, SEL, void* const*, unsigned long) {
  live_encoder(self, "memoryBarrierWithResources:count:");
}
void enc_useResource(ComputeEncoder* self, SEL, void*, unsigned long) { live_encoder(self, "useResource:usage:"); }
void enc_useResources(ComputeEncoder* self, SEL, void* const*, unsigned long, unsigned long) {
  live_encoder(self, "useResources:count:usage:");
}
void enc_debug_string(ComputeEncoder* self, SEL, String*) { live_encoder(self, "pushDebugGroup:/setLabel:"); }
void enc_popDebugGroup(ComputeEncoder* self, SEL) { live_encoder(self, "popDebugGroup"); }
unsigned long enc_dispatchType(ComputeEncoder*, SEL) { return 0; }  // serial

void enc_endEncoding(ComputeEncoder* self, SEL) {
  live_encoder(self, "endEncoding");
  self->ended = true;
  if (self->cb->open_encoder == self) self->cb->open_encoder = nullptr;
}

// ---- MTLBlitCommandEncoder -----------------------------------------------------------------
BlitEncoder* live_blit(BlitEncoder* self, const char* what) {
  if (self->ended) validation_error("-[MTLBlitCommandEncoder %s]: encoder %p used after endEncoding", what, (void*)self);
  return self;
}
void blit_copy(BlitEncoder* self, SEL, Buffer* src, unsigned long so, Buffer* dst, unsigned long dO, unsigned long size) {
  const char* what = "copyFromBuffer:sourceOffset:toBuffer:destinationOffset:size:";
  live_blit(self, what);
  checked<Buffer>(src, what);
  checked<Buffer>(dst, what);
  if (so + size > src->length || dO + size > dst->length)
    validation_error("-[MTLBlitCommandEncoder %s]: range outside a buffer (src %lu+%lu of %zu, dst %lu+%lu of %zu)",
                     what, so, size, src->length, dO, size, dst->length);
  Command c;
  c.kind = Command::Copy;
  c.where = "copy in blit encoder #" + std::to_string(self->number);
  c.src = src;
  c.dst = dst;
  c.src_offset = so;
  c.dst_offset = dO;
  c.size = size;
  if (self->cb->retained_references) {
    retain(src);
    retain(dst);
  }
  self->cb->commands.push_back(std::move(c));
}
void blit_fill(BlitEncoder* self, SEL, Buffer* buffer, NS::Range range, unsigned char value) {
  const char* what = "fillBuffer:range:value:";
  live_blit(self, what);
  checked<Buffer>(buffer, what);
  if (range.location + range.length > buffer->length)
    validation_error("-[MTLBlitCommandEncoder %s]: range %lu+%lu outside the buffer's %zu bytes", what,
                     range.location, range.length, buffer->length);
  Command c;
  c.kind = Command::Fill;
  c.where = "fill in blit encoder #" + std::to_string(self->number);
  c.dst = buffer;
  c.dst_offset = range.location;
  c.size = range.length;
  c.value = value;
  if (self->cb->retained_references) retain(buffer);
  self->cb->commands.push_back(std::move(c));
}
void blit_synchronize(BlitEncoder* self, SEL, void*) { live_blit(self, "synchronizeResource:"); }
void blit_endEncoding(BlitEncoder* self, SEL) {
  live_blit(self, "endEncoding");
  self->ended = true;
  if (self->cb->open_encoder == self) self->cb->open_encoder = nullptr;
}

// ---- MTLBuffer -------------------------------------------------------------------------------
void* buf_contents(Buffer* self, SEL) { return self->private_storage() ? nullptr : self->data; }
unsigned long buf_length(Buffer* self, SEL) { return self->length; }
unsigned long buf_allocatedSize(Buffer* self, SEL) { return self->length; }
void buf_didModifyRange(Buffer* self, SEL, NS::Range range) {
  if (range.location + range.length > self->length)
    validation_error("-[MTLBuffer didModifyRange:]: range %lu+%lu beyond %zu bytes", range.location, range.length,
                     self->length);
}
unsigned long buf_storageMode(Buffer* self, SEL) { return (self->options >> 4) & 0xF; }
unsigned long buf_resourceOptions(Buffer* self, SEL) { return self->options; }
unsigned long buf_cpuCacheMode(Buffer* self, SEL) { return self->options & 0xF; }
unsigned long buf_hazardTrackingMode(Buffer* self, SEL) { return (self->options >> 8) & 0xF; }
unsigned long buf_gpuAddress(Buffer* self, SEL) { return (unsigned long)(uintptr_t)self->data; }
void* buf_label(Buffer* self, SEL) { return self->label; }
void buf_setLabel(Buffer* self, SEL, String* s) {
  if (s) retain(s);
  if (self->label) release(self->label);
  self->label = s;
}

}  // namespace

void register_metal() {
  Class root = define_class("NSObject", nullptr);

  g_device_class = define_class("FakeMTLDevice", root);
  Class d = g_device_class;
  add_method(d, "name", (void*)dev_name);
  add_method(d, "hasUnifiedMemory", (void*)dev_true);
  add_method(d, "isLowPower", (void*)dev_false);
  add_method(d, "isHeadless", (void*)dev_false);
  add_method(d, "isRemovable", (void*)dev_false);
  add_method(d, "maxBufferLength", (void*)dev_maxBufferLength);
  add_method(d, "recommendedMaxWorkingSetSize", (void*)dev_workingSet);
  add_method(d, "maxThreadgroupMemoryLength", (void*)dev_maxThreadgroupMemoryLength);
  add_method(d, "maxThreadsPerThreadgroup", (void*)dev_maxThreadsPerThreadgroup);
  add_method(d, "registryID", (void*)dev_registryID);
  add_method(d, "currentAllocatedSize", (void*)dev_currentAllocatedSize);
  add_method(d, "supportsFamily:", (void*)dev_supportsFamily);
  add_method(d, "newCommandQueue", (void*)dev_newCommandQueue);
  add_method(d, "newCommandQueueWithMaxCommandBufferCount:", (void*)dev_newCommandQueueMax);
  add_method(d, "newBufferWithLength:options:", (void*)dev_newBufferWithLength);
  add_method(d, "newBufferWithBytes:length:options:", (void*)dev_newBufferWithBytes);
  add_method(d, "newBufferWithBytesNoCopy:length:options:deallocator:", (void*)dev_newBufferWithBytesNoCopy);
  add_method(d, "newLibraryWithSource:options:error:", (void*)dev_newLibraryWithSource);
  add_method(d, "newComputePipelineStateWithFunction:error:", (void*)dev_newComputePipelineState);

  Class opt = define_class("MTLCompileOptions", root);
  opt->make = make_erased<CompileOptions>;
  add_method(opt, "setLanguageVersion:", (void*)opt_setLanguageVersion);
  add_method(opt, "languageVersion", (void*)opt_languageVersion);
  add_method(opt, "setFastMathEnabled:", (void*)opt_setFastMathEnabled);
  add_method(opt, "fastMathEnabled", (void*)opt_fastMathEnabled);
  add_method(opt, "setMathMode:", (void*)opt_setMathMode);
  add_method(opt, "setPreprocessorMacros:", (void*)opt_ignore_object);

  g_library_class = define_class("FakeMTLLibrary", root);
  add_method(g_library_class, "newFunctionWithName:", (void*)lib_newFunctionWithName);
  add_method(g_library_class, "functionNames", (void*)lib_functionNames);
  add_method(g_library_class, "device", (void*)any_device);

  g_function_class = define_class("FakeMTLFunction", root);
  add_method(g_function_class, "name", (void*)fn_name);
  add_method(g_function_class, "functionType", (void*)fn_functionType);
  add_method(g_function_class, "device", (void*)any_device);

  g_pipeline_class = define_class("FakeMTLComputePipelineState", root);
  add_method(g_pipeline_class, "maxTotalThreadsPerThreadgroup", (void*)pso_maxTotalThreads);
  add_method(g_pipeline_class, "threadExecutionWidth", (void*)pso_threadExecutionWidth);
  add_method(g_pipeline_class, "staticThreadgroupMemoryLength", (void*)pso_staticThreadgroupMemoryLength);
  add_method(g_pipeline_class, "device", (void*)any_device);

  g_queue_class = define_class("FakeMTLCommandQueue", root);
  add_method(g_queue_class, "commandBuffer", (void*)queue_commandBuffer);
  add_method(g_queue_class, "commandBufferWithUnretainedReferences", (void*)queue_commandBufferUnretained);
  add_method(g_queue_class, "device", (void*)any_device);
  add_method(g_queue_class, "label", (void*)queue_label);
  add_method(g_queue_class, "setLabel:", (void*)queue_setLabel);

  g_cb_class = define_class("FakeMTLCommandBuffer", root);
  Class cb = g_cb_class;
  add_method(cb, "computeCommandEncoder", (void*)cb_computeCommandEncoder);
  add_method(cb, "computeCommandEncoderWithDispatchType:", (void*)cb_computeCommandEncoderWithType);
  add_method(cb, "blitCommandEncoder", (void*)cb_blitCommandEncoder);
  add_method(cb, "enqueue", (void*)cb_enqueue);
  add_method(cb, "commit", (void*)cb_commit);
  add_method(cb, "waitUntilCompleted", (void*)cb_waitUntilCompleted);
  add_method(cb, "waitUntilScheduled", (void*)cb_waitUntilScheduled);
  add_method(cb, "addCompletedHandler:", (void*)cb_addCompletedHandler);
  add_method(cb, "addScheduledHandler:", (void*)cb_addScheduledHandler);
  add_method(cb, "status", (void*)cb_status);
  add_method(cb, "error", (void*)cb_error);
  add_method(cb, "GPUStartTime", (void*)cb_gpuStart);
  add_method(cb, "GPUEndTime", (void*)cb_gpuEnd);
  add_method(cb, "commandQueue", (void*)cb_commandQueue);
  add_method(cb, "device", (void*)any_device);
  add_method(cb, "retainedReferences", (void*)cb_retainedReferences);
  add_method(cb, "label", (void*)cb_label);
  add_method(cb, "setLabel:", (void*)cb_setLabel);
  add_method(cb, "pushDebugGroup:", (void*)cb_noop_object);
  add_method(cb, "popDebugGroup", (void*)cb_noop);

  g_compute_class = define_class("FakeMTLComputeCommandEncoder", root);
  Class e = g_compute_class;
  add_method(e, "setComputePipelineState:", (void*)enc_setComputePipelineState);
  add_method(e, "setBuffer:offset:atIndex:", (void*)enc_setBuffer);
  add_method(e, "setBuffers:offsets:withRange:", (void*)enc_setBuffers);
  add_method(e, "setBufferOffset:atIndex:", (void*)enc_setBufferOffset);
  add_method(e, "setBytes:length:atIndex:", (void*)enc_setBytes);
  add_method(e, "setThreadgroupMemoryLength:atIndex:", (void*)enc_setThreadgroupMemoryLength);
  add_method(e, "dispatchThreadgroups:threadsPerThreadgroup:", (void*)enc_dispatchThreadgroups);
  add_method(e, "dispatchThreads:threadsPerThreadgroup:", (void*)enc_dispatchThreads);
  add_method(e, "memoryBarrierWithScope:", (void*)enc_memoryBarrierScope);
  add_method(e, "memoryBarrierWithResources:count:", (void*)enc_memoryBarrierResources);
  add_method(e, "useResource:usage:", (void*)enc_useResource);
  add_method(e, "useResources:count:usage:", (void*)enc_useResources);
  add_method(e, "pushDebugGroup:", (void*)enc_debug_string);
  add_method(e, "setLabel:", (void*)enc_debug_string);
  add_method(e, "insertDebugSignpost:", (void*)enc_debug_string);
  add_method(e, "popDebugGroup", (void*)enc_popDebugGroup);
  add_method(e, "dispatchType", (void*)enc_dispatchType);
  add_method(e, "device", (void*)any_device);
  add_method(e, "endEncoding", (void*)enc_endEncoding);

  g_blit_class = define_class("FakeMTLBlitCommandEncoder", root);
  add_method(g_blit_class, "copyFromBuffer:sourceOffset:toBuffer:destinationOffset:size:", (void*)blit_copy);
  add_method(g_blit_class, "fillBuffer:range:value:", (void*)blit_fill);
  add_method(g_blit_class, "synchronizeResource:", (void*)blit_synchronize);
  add_method(g_blit_class, "endEncoding", (void*)blit_endEncoding);
  add_method(g_blit_class, "device", (void*)any_device);

  g_buffer_class = define_class("FakeMTLBuffer", root);
  Class b = g_buffer_class;
  add_method(b, "contents", (void*)buf_contents);
  add_method(b, "length", (void*)buf_length);
  add_method(b, "allocatedSize", (void*)buf_allocatedSize);
  add_method(b, "didModifyRange:", (void*)buf_didModifyRange);
  add_method(b, "storageMode", (void*)buf_storageMode);
  add_method(b, "resourceOptions", (void*)buf_resourceOptions);
  add_method(b, "cpuCacheMode", (void*)buf_cpuCacheMode);
  add_method(b, "hazardTrackingMode", (void*)buf_hazardTrackingMode);
  add_method(b, "gpuAddress", (void*)buf_gpuAddress);
  add_method(b, "device", (void*)any_device);
  add_method(b, "label", (void*)buf_label);
  add_method(b, "setLabel:", (void*)buf_setLabel);
}

}  // namespace fakert

using namespace fakert;

extern "C" {

MTL::Device* MTLCreateSystemDefaultDevice() {
  if (env_long("FAKE_METAL_NO_DEVICE", 0)) return nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    class_named("NSObject");  // registers the classes
    g_device = make<Device>(g_device_class);
    // FAKE_METAL_DISPATCH_LOG=<file>: "kernel count" lines appended at exit (coverage checks).
    if (getenv("FAKE_METAL_DISPATCH_LOG")) atexit([] {
      if (FILE* f = fopen(getenv("FAKE_METAL_DISPATCH_LOG"), "a")) {
        std::lock_guard<std::mutex> lock(g_stats_mutex);
        for (auto& kv : g_dispatches) fprintf(f, "%s %ld\n", kv.first.c_str(), kv.second);
        fclose(f);
      }
    });
  });
  return reinterpret_cast<MTL::Device*>(retain(g_device));  // "Create": the caller owns a reference
}

NS::Array* MTLCopyAllDevices() {
  Array* a = new_array();
  if (MTL::Device* d = MTLCreateSystemDefaultDevice()) a->items.push_back(reinterpret_cast<Object*>(d));
  return reinterpret_cast<NS::Array*>(a);
}

NS::Array* MTLCopyAllDevicesWithObserver(NS::Object** observer, MTL::DeviceNotificationHandlerBlock) {
  if (observer) *observer = nullptr;
  return MTLCopyAllDevices();
}

void MTLRemoveDeviceObserver(const NS::Object*) {}

// For the tests: how many dispatches of `kernel` ran (all kernels when NULL).
long fakert_dispatch_count(const char* kernel) {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  if (kernel) {
    auto it = g_dispatches.find(kernel);
    return it == g_dispatches.end() ? 0 : it->second;
  }
  long total = 0;
  for (auto& kv : g_dispatches) total += kv.second;
  return total;
}

// For the tests: "name count\n" for every kernel that ran. The caller frees with free().
char* fakert_dispatch_summary() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  std::string out;
  for (auto& kv : g_dispatches) out += kv.first + " " + std::to_string(kv.second) + "\n";
  return strdup(out.c_str());
}

}  // extern "C"
