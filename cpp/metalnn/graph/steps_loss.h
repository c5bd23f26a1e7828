// Graph steps of the generic loss and the YOLO loss (LossNode, YOLOLossNode): the forward
// writes the loss slot and a LossState; the backward seeds d(loss)/d(loss) = 1 and writes
// the gradient of the predictions.
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/loss.h"

namespace metalnn::graph::steps {

// weights < 0: no weights slot.
Step loss_forward(const std::string& label, int predictions, int labels, int weights, int loss, int state,
                  const LossDescriptor& d);
Step yolo_loss_forward(const std::string& label, int predictions, int labels, int loss, int state,
                       const YoloLossDescriptor& d);
Step loss_backward(const std::string& label, int state, int dpredictions);

}  // namespace metalnn::graph::steps
