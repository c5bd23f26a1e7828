#include "metalnn/backend/cuda/stream.h"

#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

cudaEvent_t new_event(const char* op) {
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), op);
  return e;
}

// Two host threads per stream: the worker runs command lists (enqueueing their kernels on
// stream_), the waiter waits for the GPU and completes the events callers hold. The worker
// never blocks on the GPU, so it prepares batch k+1 while the GPU runs batch k.
class CudaStream final : public Stream {
 public:
  explicit CudaStream(Device device) : device_(device) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    // The worker keeps this stream current for every list it runs.
    CommandList init;
    cudaStream_t s = stream_;
    init.add([s] { set_current_stream(s); });
    host_.submit(std::move(init))->wait();
  }
  ~CudaStream() override {
    host_.synchronize();
    waiter_.synchronize();
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  Device device() const override { return device_; }

  std::shared_ptr<Event> submit(CommandList list) override {
    // What the submitting thread queued on its own stream (inputs it copied) comes first.
    cudaEvent_t before = new_event("stream");
    check(cudaEventRecord(before, current_stream()), "stream");
    cudaStream_t s = stream_;
    CommandList prologue;
    prologue.add([s, before] {
      cudaError_t e = cudaStreamWaitEvent(s, before, 0);
      cudaEventDestroy(before);
      check(e, "stream");
    });
    host_.submit(std::move(prologue));
    auto enqueued = host_.submit(std::move(list));
    auto done = std::make_shared<cudaEvent_t>(nullptr);
    CommandList record;
    record.add([s, done] {
      *done = new_event("stream");
      check(cudaEventRecord(*done, s), "stream");
    });
    auto recorded = host_.submit(std::move(record));
    CommandList wait;
    wait.add([enqueued, recorded, done] {
      // Wait for the GPU even when the host part failed: its frees are stream-ordered.
      recorded->wait();
      cudaError_t e = cudaEventSynchronize(*done);
      cudaEventDestroy(*done);
      if (auto err = enqueued->error()) std::rethrow_exception(err);
      check(e, "stream");
      check(cudaGetLastError(), "stream");
    });
    return waiter_.submit(std::move(wait));
  }

  void synchronize() override {
    host_.synchronize();
    waiter_.synchronize();
    check(cudaStreamSynchronize(stream_), "stream");
  }

 private:
  Device device_;
  cudaStream_t stream_ = nullptr;
  CpuStream host_, waiter_;
};

}  // namespace

std::unique_ptr<Stream> make_cuda_stream(Device device) { return std::make_unique<CudaStream>(device); }

}  // namespace metalnn::cuda
