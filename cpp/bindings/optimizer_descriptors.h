// Optimizer descriptors from the keyword dict of a Python optimizer object
// (mnn.SGD/Adam/RMSProp .hyperparameters()); used by the graph's update steps.
#pragma once
#include <pybind11/pybind11.h>

#include "metalnn/ops/optimizer.h"

namespace metalnn::py_bind {

SgdDescriptor sgd_descriptor(const char* op, const pybind11::dict& kw);
AdamDescriptor adam_descriptor(const char* op, const pybind11::dict& kw);
RmsPropDescriptor rmsprop_descriptor(const char* op, const pybind11::dict& kw);

}  // namespace metalnn::py_bind
