"""Forward and gradient kernels: ``<op>_forward`` and ``<op>_backward[_input|_weight|_bias]``.

Inputs are numpy arrays (results come back as numpy arrays, zero-copy on the CPU) or
:class:`metalnn.Tensor` objects (results are tensors on the same device). Images are
NCHW, matrices row-major, float32 or float16. Errors raise ValueError/TypeError whose
message starts with ``[op]`` and names the argument.
"""

from .conv import (
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv2d_forward,
)
from .dropout import DropoutState, dropout_backward, dropout_forward
from .linear import (
    fully_connected_backward_bias,
    fully_connected_backward_input,
    fully_connected_backward_weight,
    fully_connected_forward,
)
from .loss import (
    REDUCTIONS,
    SoftmaxCrossEntropyState,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .neuron import NEURON_TYPES, neuron_backward, neuron_forward
from .optimizer import (
    adam_step,
    adam_step_many,
    rmsprop_step,
    rmsprop_step_many,
    sgd_step,
    sgd_step_many,
)
from .pooling import (
    MaxPool2dState,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

__all__ = [
    "conv2d_backward_bias", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_forward",
    "fully_connected_backward_bias", "fully_connected_backward_input",
    "fully_connected_backward_weight", "fully_connected_forward",
    "DropoutState", "dropout_backward", "dropout_forward",
    "adam_step", "adam_step_many", "rmsprop_step", "rmsprop_step_many", "sgd_step", "sgd_step_many",
    "NEURON_TYPES", "neuron_backward", "neuron_forward",
    "REDUCTIONS", "SoftmaxCrossEntropyState", "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "MaxPool2dState", "avg_pool2d_backward", "avg_pool2d_forward", "max_pool2d_backward",
    "max_pool2d_forward",
    "log_softmax_backward", "log_softmax_forward", "softmax_backward", "softmax_forward"]
