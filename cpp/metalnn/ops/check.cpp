#include "metalnn/ops/check.h"

#include <cmath>

namespace metalnn::check {

void rank(const char* op, const char* arg, const Tensor& t, int r, const char* layout) {
  if (t.ndim() != r)
    fail(ErrorKind::Value, op, "expected ", r, "-D ", arg, " ", layout, ", got shape ", shape_str(t.shape()));
}

void floating(const char* op, const char* arg, const Tensor& t) {
  if (!is_floating(t.dtype()))
    fail(ErrorKind::Type, op, arg, " must be float32 or float16, got ", dtype_name(t.dtype()));
}

void dtype(const char* op, const char* arg, const Tensor& t, DType expected) {
  if (t.dtype() != expected)
    fail(ErrorKind::Type, op, arg, " must be ", dtype_name(expected), ", got ", dtype_name(t.dtype()));
}

void dtype_in(const char* op, const char* arg, const Tensor& t, std::initializer_list<DType> allowed) {
  for (auto d : allowed)
    if (t.dtype() == d) return;
  std::string names;
  for (auto d : allowed) names += (names.empty() ? "" : " or ") + std::string(dtype_name(d));
  fail(ErrorKind::Type, op, arg, " must be ", names, ", got ", dtype_name(t.dtype()));
}

void same_dtype(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref) {
  if (t.dtype() != ref.dtype())
    fail(ErrorKind::Type, op, arg, " must have the dtype of ", ref_arg, " (", dtype_name(ref.dtype()),
         "), got ", dtype_name(t.dtype()));
}

void shape(const char* op, const char* arg, const Tensor& t, const Shape& expected) {
  if (t.shape() != expected)
    fail(ErrorKind::Value, op, arg, " must have shape ", shape_str(expected), ", got ", shape_str(t.shape()));
}

void same_device(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref) {
  if (t.device() != ref.device())
    fail(ErrorKind::Value, op, arg, " is on ", t.device().str(), " but ", ref_arg, " is on ", ref.device().str());
}

void no_overlap(const char* op, const char* arg, const Tensor& t, const char* other_arg, const Tensor& other) {
  if (t.overlaps(other)) fail(ErrorKind::Value, op, arg, " must not share memory with ", other_arg);
}

void like(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref) {
  same_dtype(op, arg, t, ref_arg, ref);
  same_device(op, arg, t, ref_arg, ref);
  shape(op, arg, t, ref.shape());
}

void positive(const char* op, const char* arg, int64_t v) {
  if (v <= 0) fail(ErrorKind::Value, op, arg, " must be positive, got ", v);
}

void non_negative(const char* op, const char* arg, int64_t v) {
  if (v < 0) fail(ErrorKind::Value, op, arg, " must be >= 0, got ", v);
}

void non_empty(const char* op, const char* arg, const Tensor& t) {
  if (t.numel() == 0) fail(ErrorKind::Value, op, arg, " must not be empty, got shape ", shape_str(t.shape()));
}

void finite(const char* op, const char* arg, double v) {
  if (!std::isfinite(v)) fail(ErrorKind::Value, op, arg, " must be finite, got ", v);
}

void in_range(const char* op, const char* arg, double v, double lo, double hi, bool lo_open) {
  bool ok = (lo_open ? v > lo : v >= lo) && v <= hi;
  if (!ok) fail(ErrorKind::Value, op, arg, " must be in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ", v);
}

}  // namespace metalnn::check
