// Broadcasting element-wise arithmetic parameters shared by host code, MSL and CUDA.
// Shapes are padded to 4 dims with leading ones. Output element (d0, d1, d2, d3) reads
// a[sum d_k * a_stride[k]] and b[sum d_k * b_stride[k]]; a stride is 0 on a dimension the
// operand broadcasts over (its size 1, the output's larger).
// Gradients: `operand` (0 = a, 1 = b) names the operand whose gradient is computed; its
// element t sums, over the `reduce_count` output positions broadcasting from it, the term
//   add: dy   subtract: dy (a), -dy (b)   multiply: dy*b (a), dy*a (b)
//   divide: dy/b (a), -dy*a/(b*b) (b).
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnArithmeticOp {
  MNN_ARITH_ADD = 0,
  MNN_ARITH_SUBTRACT = 1,
  MNN_ARITH_MULTIPLY = 2,
  MNN_ARITH_DIVIDE = 3,
  MNN_ARITH_COUNT = 4
};

struct MnnArithmeticParams {
  uint32_t op;                 // MnnArithmeticOp
  uint32_t operand;            // gradients: 0 = d/da, 1 = d/db
  int32_t out[4];              // output dims
  int32_t a_stride[4];         // element strides of a over the output dims (0: broadcast)
  int32_t b_stride[4];
  int32_t g_stride[4];         // gradients: strides of the gradient (the operand's shape), 0 where reduced
  uint32_t count;              // output elements
  uint32_t g_count;            // gradient elements
  uint32_t reduce_count;       // output elements per gradient element (count / g_count)
  uint32_t pad0;
};
