// Optimizer steps: update weights and state arrays in place and return None.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "convert.h"
#include "families.h"
#include "optimizer_descriptors.h"
#include "metalnn/core/error.h"
#include "metalnn/ops/optimizer.h"

namespace metalnn::py_bind {
namespace {

// gradient_rescale, gradient_clip=(min, max) or None, weight_decay with "l2", "l1" or "none"
// (MPSNNRegularizationType).
OptimizerDescriptor make_base(const char* op, double learning_rate, double weight_decay, double gradient_rescale,
                              py::handle gradient_clip, const std::string& regularization) {
  OptimizerDescriptor d;
  d.learning_rate = learning_rate;
  d.gradient_rescale = gradient_rescale;
  d.regularization_scale = weight_decay;
  if (regularization == "l2") d.regularization = MNN_REGULARIZATION_L2;
  else if (regularization == "l1") d.regularization = MNN_REGULARIZATION_L1;
  else if (regularization == "none") d.regularization = MNN_REGULARIZATION_NONE;
  else fail(ErrorKind::Value, op, "regularization: unknown type '", regularization,
            "' (expected 'l2', 'l1' or 'none')");
  if (!gradient_clip.is_none()) {
    bool ok = py::isinstance<py::sequence>(gradient_clip) && !py::isinstance<py::str>(gradient_clip) &&
              py::len(gradient_clip) == 2;
    if (ok) {
      try {
        auto seq = py::reinterpret_borrow<py::sequence>(gradient_clip);
        d.gradient_clip_min = seq[0].cast<double>();
        d.gradient_clip_max = seq[1].cast<double>();
      } catch (const py::cast_error&) {
        ok = false;
      }
    }
    if (!ok)
      fail(ErrorKind::Value, op, "gradient_clip must be None or a pair of numbers (min, max), got ",
           std::string(py::repr(gradient_clip)));
    d.apply_gradient_clipping = true;
  }
  return d;
}

// learning_rate_scales of the _many forms: None (all 1) or a sequence of numbers.
std::vector<double> scales_arg(const char* op, py::handle h) {
  std::vector<double> out;
  if (h.is_none()) return out;
  bool ok = py::isinstance<py::sequence>(h) && !py::isinstance<py::str>(h);
  if (ok) {
    try {
      for (auto v : h.cast<py::sequence>()) {
        if (py::isinstance<py::bool_>(v)) throw py::cast_error();
        out.push_back(v.cast<double>());
      }
    } catch (const py::cast_error&) {
      ok = false;
    }
  }
  if (!ok)
    fail(ErrorKind::Type, op, "learning_rate_scales must be None or a list of numbers, got ",
         std::string(py::repr(h)));
  return out;
}

// A tensor argument of the single form (a Tensor, undefined for None when optional) or a
// list argument of the _many form (None gives an empty list when optional).
template <bool Many>
auto tensor_arg(Call& call, py::handle obj, const char* arg, bool writable, bool optional = false) {
  if constexpr (Many) {
    std::vector<Tensor> out;
    if (obj.is_none()) {
      if (optional) return out;
      fail(ErrorKind::Type, call.op(), arg, " is required, got None");
    }
    if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj) || py::isinstance<py::array>(obj) ||
        py::isinstance<Tensor>(obj))
      fail(ErrorKind::Type, call.op(), arg, " must be a list of arrays, got ",
           std::string(py::str(py::type::of(obj).attr("__name__"))));
    auto seq = py::reinterpret_borrow<py::sequence>(obj);
    for (size_t i = 0; i < seq.size(); ++i) {
      std::string name = std::string(arg) + "[" + std::to_string(i) + "]";
      out.push_back(call.in(seq[i], name.c_str(), writable));
    }
    return out;
  } else {
    return optional && obj.is_none() ? Tensor() : call.in(obj, arg, writable);
  }
}

// Descriptors from the step bindings' keyword values, in their order: the single and _many
// bindings and the dict builders all build their descriptors here.
SgdDescriptor make_sgd(const char* op, double learning_rate, double momentum, bool nesterov, double weight_decay,
                       double gradient_rescale, py::handle gradient_clip, const std::string& regularization) {
  SgdDescriptor d;
  d.base = make_base(op, learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
  d.momentum = momentum;
  d.nesterov = nesterov;
  return d;
}

AdamDescriptor make_adam(const char* op, double learning_rate, double beta1, double beta2, double epsilon,
                         bool amsgrad, double weight_decay, double gradient_rescale, py::handle gradient_clip,
                         const std::string& regularization) {
  AdamDescriptor d;
  d.base = make_base(op, learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
  d.beta1 = beta1;
  d.beta2 = beta2;
  d.epsilon = epsilon;
  d.amsgrad = amsgrad;
  return d;
}

RmsPropDescriptor make_rmsprop(const char* op, double learning_rate, double decay, double epsilon,
                               double weight_decay, double gradient_rescale, py::handle gradient_clip,
                               const std::string& regularization) {
  RmsPropDescriptor d;
  d.base = make_base(op, learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
  d.decay = decay;
  d.epsilon = epsilon;
  return d;
}

// A keyword of a hyperparameters() dict, or the binding's default.
template <class T>
T get(const py::dict& kw, const char* key, T fallback) {
  return kw.contains(key) ? kw[key].cast<T>() : fallback;
}

// The preprocessing keywords every hyperparameters() dict has (read before the optimizer's own).
struct CommonKeywords {
  explicit CommonKeywords(const py::dict& kw)
      : weight_decay(get(kw, "weight_decay", 0.0)),
        gradient_rescale(get(kw, "gradient_rescale", 1.0)),
        gradient_clip(get<py::object>(kw, "gradient_clip", py::none())),
        regularization(get<std::string>(kw, "regularization", "l2")) {}
  double weight_decay, gradient_rescale;
  py::object gradient_clip;
  std::string regularization;
};

// Each optimizer's step is bound once as a template: Many = false gives <kind>_step on one
// tensor, Many = true gives <kind>_step_many on lists (one kernel call for a whole network).
template <bool Many>
void def_sgd(py::module_& ops) {
  const char* name = Many ? "sgd_step_many" : "sgd_step";
  const char* buffer = Many ? "momentum_buffers" : "momentum_buffer";
  ops.def(name,
          [name, buffer](py::handle weights, py::handle gradients, py::handle momentum_buffer, double learning_rate,
                         double momentum, bool nesterov, double weight_decay, double gradient_rescale,
                         py::handle gradient_clip, const std::string& regularization, py::handle scales) {
            Call call(name);
            auto w = tensor_arg<Many>(call, weights, "weights", true);
            auto g = tensor_arg<Many>(call, gradients, "gradients", false);
            auto buf = tensor_arg<Many>(call, momentum_buffer, buffer, true, true);
            auto d = make_sgd(call.op(), learning_rate, momentum, nesterov, weight_decay, gradient_rescale,
                              gradient_clip, regularization);
            d.base.learning_rate_scales = scales_arg(call.op(), scales);
            without_gil([&] {
              if constexpr (Many) sgd_step_many(w, g, buf, d);
              else sgd_step(w, g, buf, d);
            });
          },
          py::arg("weights"), py::arg("gradients"), py::arg(buffer) = py::none(), py::arg("learning_rate") = 0.01,
          py::arg("momentum") = 0.0, py::arg("nesterov") = false, py::arg("weight_decay") = 0.0,
          py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(), py::arg("regularization") = "l2",
          py::arg("learning_rate_scales") = py::none());
}

template <bool Many>
void def_adam(py::module_& ops) {
  const char* name = Many ? "adam_step_many" : "adam_step";
  ops.def(name,
          [name](py::handle weights, py::handle gradients, py::handle m, py::handle v, int64_t step,
                 double learning_rate, double beta1, double beta2, double epsilon, bool amsgrad, py::handle v_max,
                 double weight_decay, double gradient_rescale, py::handle gradient_clip,
                 const std::string& regularization, py::handle scales) {
            Call call(name);
            auto tw = tensor_arg<Many>(call, weights, "weights", true);
            auto tg = tensor_arg<Many>(call, gradients, "gradients", false);
            auto tm = tensor_arg<Many>(call, m, "m", true), tv = tensor_arg<Many>(call, v, "v", true);
            // v_max is left alone (not even converted) without amsgrad.
            decltype(tw) tvm{};
            if (amsgrad) tvm = tensor_arg<Many>(call, v_max, "v_max", true, true);
            if constexpr (!Many) {
              if (amsgrad && !tvm.defined()) fail(ErrorKind::Value, call.op(), "v_max is required when amsgrad=True");
            }
            auto d = make_adam(call.op(), learning_rate, beta1, beta2, epsilon, amsgrad, weight_decay,
                               gradient_rescale, gradient_clip, regularization);
            d.base.learning_rate_scales = scales_arg(call.op(), scales);
            without_gil([&] {
              if constexpr (Many) adam_step_many(tw, tg, tm, tv, tvm, step, d);
              else adam_step(tw, tg, tm, tv, tvm, step, d);
            });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("m"), py::arg("v"), py::arg("step"),
          py::arg("learning_rate") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
          py::arg("epsilon") = 1e-8, py::arg("amsgrad") = false, py::arg("v_max") = py::none(),
          py::arg("weight_decay") = 0.0, py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(),
          py::arg("regularization") = "l2", py::arg("learning_rate_scales") = py::none());
}

template <bool Many>
void def_rmsprop(py::module_& ops) {
  const char* name = Many ? "rmsprop_step_many" : "rmsprop_step";
  ops.def(name,
          [name](py::handle weights, py::handle gradients, py::handle s, double learning_rate, double decay,
                 double epsilon, double weight_decay, double gradient_rescale, py::handle gradient_clip,
                 const std::string& regularization, py::handle scales) {
            Call call(name);
            auto tw = tensor_arg<Many>(call, weights, "weights", true);
            auto tg = tensor_arg<Many>(call, gradients, "gradients", false);
            auto ts = tensor_arg<Many>(call, s, "s", true);
            auto d = make_rmsprop(call.op(), learning_rate, decay, epsilon, weight_decay, gradient_rescale,
                                  gradient_clip, regularization);
            d.base.learning_rate_scales = scales_arg(call.op(), scales);
            without_gil([&] {
              if constexpr (Many) rmsprop_step_many(tw, tg, ts, d);
              else rmsprop_step(tw, tg, ts, d);
            });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("s"), py::arg("learning_rate") = 1e-3,
          py::arg("decay") = 0.9, py::arg("epsilon") = 1e-8, py::arg("weight_decay") = 0.0,
          py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(), py::arg("regularization") = "l2",
          py::arg("learning_rate_scales") = py::none());
}

}  // namespace

SgdDescriptor sgd_descriptor(const char* op, const py::dict& kw) {
  CommonKeywords c(kw);
  SgdDescriptor d = make_sgd(op, get(kw, "learning_rate", 0.01), get(kw, "momentum", 0.0), get(kw, "nesterov", false),
                             c.weight_decay, c.gradient_rescale, c.gradient_clip, c.regularization);
  d.base.learning_rate_scales = scales_arg(op, get<py::object>(kw, "learning_rate_scales", py::none()));
  d.validate(op);
  return d;
}

AdamDescriptor adam_descriptor(const char* op, const py::dict& kw) {
  CommonKeywords c(kw);
  AdamDescriptor d = make_adam(op, get(kw, "learning_rate", 1e-3), get(kw, "beta1", 0.9), get(kw, "beta2", 0.999),
                               get(kw, "epsilon", 1e-8), get(kw, "amsgrad", false), c.weight_decay,
                               c.gradient_rescale, c.gradient_clip, c.regularization);
  d.base.learning_rate_scales = scales_arg(op, get<py::object>(kw, "learning_rate_scales", py::none()));
  d.validate(op);
  return d;
}

RmsPropDescriptor rmsprop_descriptor(const char* op, const py::dict& kw) {
  CommonKeywords c(kw);
  RmsPropDescriptor d = make_rmsprop(op, get(kw, "learning_rate", 1e-3), get(kw, "decay", 0.9),
                                     get(kw, "epsilon", 1e-8), c.weight_decay, c.gradient_rescale, c.gradient_clip,
                                     c.regularization);
  d.base.learning_rate_scales = scales_arg(op, get<py::object>(kw, "learning_rate_scales", py::none()));
  d.validate(op);
  return d;
}

void bind_optimizer(py::module_& ops) {
  def_sgd<false>(ops);
  def_adam<false>(ops);
  def_rmsprop<false>(ops);
  def_sgd<true>(ops);
  def_adam<true>(ops);
  def_rmsprop<true>(ops);
}

}  // namespace metalnn::py_bind
