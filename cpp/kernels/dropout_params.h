// Dropout parameters and mask hash shared by host code, MSL and CUDA: fixed-width
// integer arithmetic only, so every backend and thread count draws the same mask.
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

#ifndef MNN_SHARED_INLINE
#if defined(__CUDACC__)
#define MNN_SHARED_INLINE __host__ __device__ inline
#else
#define MNN_SHARED_INLINE inline
#endif
#endif

struct MnnDropoutParams {
  uint64_t seed;
  // Element i is kept when mnn_dropout_bits(seed_key, i) < threshold, i.e. u < keep_probability
  // with u = bits / 2^24; threshold = ceil(keep_probability * 2^24), 2^24 keeps everything.
  uint32_t threshold;
  float keep_probability;
  float scale;  // 1 / keep_probability
  uint32_t pad0;
};

// 64-bit constants are cast rather than suffixed: MSL has no long long, so no ull.
// splitmix64's finalizer: a bijective 64-bit mix with full avalanche.
MNN_SHARED_INLINE uint64_t mnn_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * (uint64_t)0xBF58476D1CE4E5B9;
  z = (z ^ (z >> 27)) * (uint64_t)0x94D049BB133111EB;
  return z ^ (z >> 31);
}

// Per-seed key: hashing the seed keeps the streams of nearby seeds unrelated.
MNN_SHARED_INLINE uint64_t mnn_dropout_key(uint64_t seed) { return mnn_mix64(seed + (uint64_t)0x9E3779B97F4A7C15); }

// 24 uniform bits for flat element `index`: u(seed, i) = bits / 2^24 lies in [0, 1).
MNN_SHARED_INLINE uint32_t mnn_dropout_bits(uint64_t key, uint64_t index) {
  return (uint32_t)(mnn_mix64(key + index * (uint64_t)0x9E3779B97F4A7C15) >> 40);
}

MNN_SHARED_INLINE uint32_t mnn_dropout_keep(uint64_t key, uint64_t index, uint32_t threshold) {
  return mnn_dropout_bits(key, index) < threshold ? 1u : 0u;
}
