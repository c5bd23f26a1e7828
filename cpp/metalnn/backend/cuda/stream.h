// A Stream over a cudaStream_t. Command lists run on a host worker (a CpuStream) with
// this stream made current, so every op they call enqueues here; the returned Event
// completes once the GPU has finished, carrying any device error.
#pragma once
#include <memory>

#include "metalnn/core/stream.h"

namespace metalnn::cuda {

std::unique_ptr<Stream> make_cuda_stream(Device device);

}  // namespace metalnn::cuda
