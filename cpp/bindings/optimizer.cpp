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

// gradient_rescale, gradient_clip=(min, max) or None, weight_decay with "l2" or "l1".
OptimizerDescriptor make_base(const char* op, double learning_rate, double weight_decay, double gradient_rescale,
                              py::handle gradient_clip, const std::string& regularization) {
  OptimizerDescriptor d;
  d.learning_rate = learning_rate;
  d.gradient_rescale = gradient_rescale;
  d.regularization_scale = weight_decay;
  if (regularization == "l2") d.regularization = MNN_REGULARIZATION_L2;
  else if (regularization == "l1") d.regularization = MNN_REGULARIZATION_L1;
  else fail(ErrorKind::Value, op, "regularization: unknown type '", regularization, "' (expected 'l2' or 'l1')");
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

Tensor in_opt(Call& call, py::handle obj, const char* arg, bool writable) {
  return obj.is_none() ? Tensor() : call.in(obj, arg, writable);
}

// A list argument of the multi-tensor forms; None gives an empty list when optional.
std::vector<Tensor> in_list(Call& call, py::handle obj, const char* arg, bool writable, bool optional) {
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
}

template <class T>
T get(const py::dict& kw, const char* key, T fallback) {
  return kw.contains(key) ? kw[key].cast<T>() : fallback;
}

OptimizerDescriptor base_from(const char* op, const py::dict& kw, double default_lr) {
  py::object clip = kw.contains("gradient_clip") ? py::object(kw["gradient_clip"]) : py::object(py::none());
  return make_base(op, get(kw, "learning_rate", default_lr), get(kw, "weight_decay", 0.0),
                   get(kw, "gradient_rescale", 1.0), clip, get<std::string>(kw, "regularization", "l2"));
}

}  // namespace

SgdDescriptor sgd_descriptor(const char* op, const py::dict& kw) {
  SgdDescriptor d;
  d.base = base_from(op, kw, 0.01);
  d.momentum = get(kw, "momentum", 0.0);
  d.nesterov = get(kw, "nesterov", false);
  d.validate(op);
  return d;
}

AdamDescriptor adam_descriptor(const char* op, const py::dict& kw) {
  AdamDescriptor d;
  d.base = base_from(op, kw, 1e-3);
  d.beta1 = get(kw, "beta1", 0.9);
  d.beta2 = get(kw, "beta2", 0.999);
  d.epsilon = get(kw, "epsilon", 1e-8);
  d.amsgrad = get(kw, "amsgrad", false);
  d.validate(op);
  return d;
}

RmsPropDescriptor rmsprop_descriptor(const char* op, const py::dict& kw) {
  RmsPropDescriptor d;
  d.base = base_from(op, kw, 1e-3);
  d.decay = get(kw, "decay", 0.9);
  d.epsilon = get(kw, "epsilon", 1e-8);
  d.validate(op);
  return d;
}

void bind_optimizer(py::module_& ops) {
  ops.def("sgd_step",
          [](py::handle weights, py::handle gradients, py::handle momentum_buffer, double learning_rate,
             double momentum, bool nesterov, double weight_decay, double gradient_rescale, py::handle gradient_clip,
             const std::string& regularization) {
            Call call("sgd_step");
            Tensor w = call.in(weights, "weights", true), g = call.in(gradients, "gradients");
            Tensor buf = in_opt(call, momentum_buffer, "momentum_buffer", true);
            SgdDescriptor d;
            d.base = make_base(call.op(), learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
            d.momentum = momentum;
            d.nesterov = nesterov;
            without_gil([&] { sgd_step(w, g, buf, d); });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("momentum_buffer") = py::none(),
          py::arg("learning_rate") = 0.01, py::arg("momentum") = 0.0, py::arg("nesterov") = false,
          py::arg("weight_decay") = 0.0, py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(),
          py::arg("regularization") = "l2");

  ops.def("adam_step",
          [](py::handle weights, py::handle gradients, py::handle m, py::handle v, int64_t step, double learning_rate,
             double beta1, double beta2, double epsilon, bool amsgrad, py::handle v_max, double weight_decay,
             double gradient_rescale, py::handle gradient_clip, const std::string& regularization) {
            Call call("adam_step");
            Tensor tw = call.in(weights, "weights", true), tg = call.in(gradients, "gradients");
            Tensor tm = call.in(m, "m", true), tv = call.in(v, "v", true);
            // v_max is left alone (not even converted) without amsgrad.
            Tensor tvm = amsgrad ? in_opt(call, v_max, "v_max", true) : Tensor();
            if (amsgrad && !tvm.defined()) fail(ErrorKind::Value, call.op(), "v_max is required when amsgrad=True");
            AdamDescriptor d;
            d.base = make_base(call.op(), learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
            d.beta1 = beta1;
            d.beta2 = beta2;
            d.epsilon = epsilon;
            d.amsgrad = amsgrad;
            without_gil([&] { adam_step(tw, tg, tm, tv, tvm, step, d); });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("m"), py::arg("v"), py::arg("step"),
          py::arg("learning_rate") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
          py::arg("epsilon") = 1e-8, py::arg("amsgrad") = false, py::arg("v_max") = py::none(),
          py::arg("weight_decay") = 0.0, py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(),
          py::arg("regularization") = "l2");

  ops.def("rmsprop_step",
          [](py::handle weights, py::handle gradients, py::handle s, double learning_rate, double decay,
             double epsilon, double weight_decay, double gradient_rescale, py::handle gradient_clip,
             const std::string& regularization) {
            Call call("rmsprop_step");
            Tensor tw = call.in(weights, "weights", true), tg = call.in(gradients, "gradients");
            Tensor ts = call.in(s, "s", true);
            RmsPropDescriptor d;
            d.base = make_base(call.op(), learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
            d.decay = decay;
            d.epsilon = epsilon;
            without_gil([&] { rmsprop_step(tw, tg, ts, d); });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("s"), py::arg("learning_rate") = 1e-3,
          py::arg("decay") = 0.9, py::arg("epsilon") = 1e-8, py::arg("weight_decay") = 0.0,
          py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(), py::arg("regularization") = "l2");

  ops.def("sgd_step_many",
          [](py::handle weights, py::handle gradients, py::handle momentum_buffers, double learning_rate,
             double momentum, bool nesterov, double weight_decay, double gradient_rescale, py::handle gradient_clip,
             const std::string& regularization) {
            Call call("sgd_step_many");
            auto w = in_list(call, weights, "weights", true, false);
            auto g = in_list(call, gradients, "gradients", false, false);
            auto buf = in_list(call, momentum_buffers, "momentum_buffers", true, true);
            SgdDescriptor d;
            d.base = make_base(call.op(), learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
            d.momentum = momentum;
            d.nesterov = nesterov;
            without_gil([&] { sgd_step_many(w, g, buf, d); });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("momentum_buffers") = py::none(),
          py::arg("learning_rate") = 0.01, py::arg("momentum") = 0.0, py::arg("nesterov") = false,
          py::arg("weight_decay") = 0.0, py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(),
          py::arg("regularization") = "l2");

  ops.def("adam_step_many",
          [](py::handle weights, py::handle gradients, py::handle m, py::handle v, int64_t step, double learning_rate,
             double beta1, double beta2, double epsilon, bool amsgrad, py::handle v_max, double weight_decay,
             double gradient_rescale, py::handle gradient_clip, const std::string& regularization) {
            Call call("adam_step_many");
            auto tw = in_list(call, weights, "weights", true, false);
            auto tg = in_list(call, gradients, "gradients", false, false);
            auto tm = in_list(call, m, "m", true, false), tv = in_list(call, v, "v", true, false);
            std::vector<Tensor> tvm = amsgrad ? in_list(call, v_max, "v_max", true, true) : std::vector<Tensor>{};
            AdamDescriptor d;
            d.base = make_base(call.op(), learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
            d.beta1 = beta1;
            d.beta2 = beta2;
            d.epsilon = epsilon;
            d.amsgrad = amsgrad;
            without_gil([&] { adam_step_many(tw, tg, tm, tv, tvm, step, d); });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("m"), py::arg("v"), py::arg("step"),
          py::arg("learning_rate") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
          py::arg("epsilon") = 1e-8, py::arg("amsgrad") = false, py::arg("v_max") = py::none(),
          py::arg("weight_decay") = 0.0, py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(),
          py::arg("regularization") = "l2");

  ops.def("rmsprop_step_many",
          [](py::handle weights, py::handle gradients, py::handle s, double learning_rate, double decay,
             double epsilon, double weight_decay, double gradient_rescale, py::handle gradient_clip,
             const std::string& regularization) {
            Call call("rmsprop_step_many");
            auto tw = in_list(call, weights, "weights", true, false);
            auto tg = in_list(call, gradients, "gradients", false, false);
            auto ts = in_list(call, s, "s", true, false);
            RmsPropDescriptor d;
            d.base = make_base(call.op(), learning_rate, weight_decay, gradient_rescale, gradient_clip, regularization);
            d.decay = decay;
            d.epsilon = epsilon;
            without_gil([&] { rmsprop_step_many(tw, tg, ts, d); });
          },
          py::arg("weights"), py::arg("gradients"), py::arg("s"), py::arg("learning_rate") = 1e-3,
          py::arg("decay") = 0.9, py::arg("epsilon") = 1e-8, py::arg("weight_decay") = 0.0,
          py::arg("gradient_rescale") = 1.0, py::arg("gradient_clip") = py::none(), py::arg("regularization") = "l2");
}

}  // namespace metalnn::py_bind
