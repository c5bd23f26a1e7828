// Argument checks shared by every op. Each throws a typed Error whose message names
// the op and the argument, before any output or weight has been written.
#pragma once
#include <initializer_list>
#include <string>

#include "metalnn/core/error.h"
#include "metalnn/core/tensor.h"

namespace metalnn::check {

// `layout` names the axes, e.g. "(N, C, H, W)".
void rank(const char* op, const char* arg, const Tensor& t, int rank, const char* layout);
void floating(const char* op, const char* arg, const Tensor& t);
void dtype(const char* op, const char* arg, const Tensor& t, DType expected);
void dtype_in(const char* op, const char* arg, const Tensor& t, std::initializer_list<DType> allowed);
void same_dtype(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref);
void shape(const char* op, const char* arg, const Tensor& t, const Shape& expected);
void same_device(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref);
void no_overlap(const char* op, const char* arg, const Tensor& t, const char* other_arg, const Tensor& other);
// Same dtype, device and shape as `ref` (a gradient next to its forward input, say).
void like(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref);
void positive(const char* op, const char* arg, int64_t v);
void non_negative(const char* op, const char* arg, int64_t v);
void non_empty(const char* op, const char* arg, const Tensor& t);
void finite(const char* op, const char* arg, double v);
// lo <= v <= hi (or lo < v when lo_open).
void in_range(const char* op, const char* arg, double v, double lo, double hi, bool lo_open = false);

}  // namespace metalnn::check
