// Times the digit network's kernels at batch 64 (forward and gradients), printing
// milliseconds and achieved GFLOP/s per kernel.
//   cmake -B build/bench -G Ninja -DMETALNN_BUILD_BENCHMARKS=ON && cmake --build build/bench
//   build/bench/benchmarks/kernel_bench [path/to/libscipy_openblas.so] [batch]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "metalnn/backend/cpu/blas.h"
#include "metalnn/ops/conv.h"
#include "metalnn/ops/linear.h"
#include "metalnn/ops/neuron.h"
#include "metalnn/ops/pooling.h"

using namespace metalnn;

namespace {

Tensor random_tensor(const Shape& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::float32);
  std::normal_distribution<float> dist(0.f, 1.f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen);
  return t;
}

// Median milliseconds over `reps` runs after two warm-up runs.
double time_ms(const std::function<void()>& fn, int reps = 15) {
  fn();
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void report(const char* name, double ms, double flops) {
  std::printf("  %-34s %8.3f ms", name, ms);
  if (flops > 0) std::printf("  %7.1f GFLOP/s", flops / ms * 1e-6);
  std::printf("\n");
}

void bench_conv(const char* name, int64_t n, int64_t c, int64_t h, int64_t o, std::mt19937& gen) {
  auto desc = Conv2dDescriptor::make({1}, {2}, {1}, 1, "float", "bench");
  Tensor x = random_tensor({n, c, h, h}, gen), w = random_tensor({o, c, 5, 5}, gen), b = random_tensor({o}, gen);
  Tensor y = conv2d_forward(x, w, b, desc);
  double flops = 2.0 * n * o * h * h * c * 25;
  std::string s = name;
  report((s + " forward").c_str(), time_ms([&] { conv2d_forward(x, w, b, desc); }), flops);
  report((s + " backward_input").c_str(), time_ms([&] { conv2d_backward_input(y, w, x.shape(), desc); }), flops);
  report((s + " backward_weight").c_str(), time_ms([&] { conv2d_backward_weight(y, x, w.shape(), desc); }), flops);
}

void bench_fc(const char* name, int64_t n, int64_t f, int64_t o, std::mt19937& gen) {
  auto desc = FullyConnectedDescriptor::make("float", "bench");
  Tensor x = random_tensor({n, f}, gen), w = random_tensor({o, f}, gen), b = random_tensor({o}, gen);
  Tensor y = fully_connected_forward(x, w, b, desc);
  double flops = 2.0 * n * f * o;
  std::string s = name;
  report((s + " forward").c_str(), time_ms([&] { fully_connected_forward(x, w, b, desc); }), flops);
  report((s + " backward_input").c_str(),
         time_ms([&] { fully_connected_backward_input(y, w, x.shape(), desc); }), flops);
  report((s + " backward_weight").c_str(), time_ms([&] { fully_connected_backward_weight(y, x, {}); }), flops);
}

void bench_pool(const char* name, int64_t n, int64_t c, int64_t h, std::mt19937& gen) {
  auto desc = Pool2dDescriptor::make({2, 2}, {}, {0}, true, "bench");
  Tensor x = random_tensor({n, c, h, h}, gen);
  auto [y, state] = max_pool2d_forward(x, desc);
  std::string s = name;
  report((s + " forward").c_str(), time_ms([&] { max_pool2d_forward(x, desc); }), 0);
  report((s + " backward").c_str(), time_ms([&] { max_pool2d_backward(y, state); }), 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && !cpu::set_blas_library(argv[1])) std::fprintf(stderr, "could not load BLAS %s\n", argv[1]);
  int64_t n = argc > 2 ? std::atoll(argv[2]) : 64;
  std::printf("metalnn kernel benchmark, batch %lld, BLAS: %s\n", (long long)n, cpu::blas_info().c_str());
  std::mt19937 gen(0);
  bench_conv("conv1 5x5 1->32 28x28", n, 1, 28, 32, gen);
  bench_conv("conv2 5x5 32->64 14x14", n, 32, 14, 64, gen);
  bench_pool("maxpool 2x2 (32x28x28)", n, 32, 28, gen);
  bench_fc("fc1 3136->1024", n, 3136, 1024, gen);
  bench_fc("fc2 1024->10", n, 1024, 10, gen);
  Tensor r = random_tensor({n, 32, 28, 28}, gen);
  auto relu = NeuronDescriptor::make("relu");
  report("relu forward (32x28x28)", time_ms([&] { neuron_forward(r, relu); }), 0);
  report("relu backward (32x28x28)", time_ms([&] { neuron_backward(r, r, relu); }), 0);
  return 0;
}
