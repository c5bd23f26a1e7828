#include "metalnn/backend/cuda/stream.h"

#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

class CudaStream final : public Stream {
 public:
  explicit CudaStream(Device device) : device_(device) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    // The host worker keeps this stream current for every list it runs.
    CommandList init;
    cudaStream_t s = stream_;
    init.add([s] { set_current_stream(s); });
    host_.submit(std::move(init))->wait();
  }
  ~CudaStream() override {
    host_.synchronize();
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  Device device() const override { return device_; }

  std::shared_ptr<Event> submit(CommandList list) override {
    auto enqueued = host_.submit(std::move(list));
    // A second list waits for the GPU: its event is the one callers see.
    CommandList done;
    cudaStream_t s = stream_;
    done.add([enqueued, s] {
      if (auto e = enqueued->error()) std::rethrow_exception(e);
      check(cudaStreamSynchronize(s), "stream");
      check(cudaGetLastError(), "stream");
    });
    return host_.submit(std::move(done));
  }

  void synchronize() override {
    host_.synchronize();
    check(cudaStreamSynchronize(stream_), "stream");
  }

 private:
  Device device_;
  cudaStream_t stream_ = nullptr;
  CpuStream host_;
};

}  // namespace

std::unique_ptr<Stream> make_cuda_stream(Device device) { return std::make_unique<CudaStream>(device); }

}  // namespace metalnn::cuda
