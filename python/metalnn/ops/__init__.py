"""Forward and gradient kernels: ``<op>_forward`` and ``<op>_backward[_input|_weight|_bias]``.

Inputs are numpy arrays (results come back as numpy arrays, zero-copy on the CPU) or
:class:`metalnn.Tensor` objects (results are tensors on the same device). Images are
NCHW, matrices row-major, float32 or float16. Errors raise ValueError/TypeError whose
message starts with ``[op]`` and names the argument.
"""

from .arithmetic import (
    ARITHMETIC_OPS,
    add_backward,
    add_forward,
    arithmetic_backward,
    arithmetic_forward,
    divide_backward,
    divide_forward,
    multiply_backward,
    multiply_forward,
    subtract_backward,
    subtract_forward,
)
from .conv import (
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv2d_forward,
)
from .conv_transpose import (
    conv_transpose2d_backward_bias,
    conv_transpose2d_backward_input,
    conv_transpose2d_backward_weight,
    conv_transpose2d_forward,
)
from .dropout import DropoutState, dropout_backward, dropout_forward
from .linear import (
    fully_connected_backward_bias,
    fully_connected_backward_input,
    fully_connected_backward_weight,
    fully_connected_forward,
)
from .loss import (
    LOSS_REDUCTIONS,
    LOSS_TYPES,
    REDUCTIONS,
    LossDescriptor,
    LossState,
    SoftmaxCrossEntropyState,
    YOLOLossDescriptor,
    loss_backward,
    loss_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
    yolo_loss_forward,
)
from .neuron import (
    NEURON_TYPES,
    neuron_backward,
    neuron_forward,
    prelu_backward_input,
    prelu_backward_slopes,
    prelu_forward,
)
from .normalization import (  # noqa: E501
    BatchNormState,
    GroupNormState,
    batch_norm_backward,
    batch_norm_forward,
    cross_channel_norm_backward,
    cross_channel_norm_forward,
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
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
    dilated_max_pool2d_forward,
    l2_pool2d_backward,
    l2_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from .rnn import RNN_ACTIVATIONS, RNN_CELLS, RnnState, rnn_backward, rnn_forward
from .shape import (
    PAD_MODES,
    concat_backward,
    concat_forward,
    crop_backward,
    crop_forward,
    image_to_matrix,
    matrix_to_image,
    pad_backward,
    pad_forward,
    reshape_backward,
    reshape_forward,
    transpose_matrix_backward,
    transpose_matrix_forward,
    upsample_bilinear_backward,
    upsample_bilinear_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

__all__ = [
    "ARITHMETIC_OPS", "add_backward", "add_forward", "arithmetic_backward", "arithmetic_forward", "divide_backward",
    "divide_forward", "multiply_backward", "multiply_forward", "subtract_backward", "subtract_forward", "PAD_MODES",
    "concat_backward", "concat_forward", "crop_backward", "crop_forward", "image_to_matrix", "matrix_to_image",
    "pad_backward", "pad_forward", "reshape_backward", "reshape_forward", "transpose_matrix_backward",
    "transpose_matrix_forward", "upsample_bilinear_backward",
    "upsample_bilinear_forward", "upsample_nearest_backward", "upsample_nearest_forward",
    "conv2d_backward_bias", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_forward",
    "fully_connected_backward_bias", "fully_connected_backward_input",
    "fully_connected_backward_weight", "fully_connected_forward",
    "DropoutState", "dropout_backward", "dropout_forward",
    "adam_step", "adam_step_many", "rmsprop_step", "rmsprop_step_many", "sgd_step", "sgd_step_many",
    "NEURON_TYPES", "neuron_backward", "neuron_forward", "prelu_backward_input", "prelu_backward_slopes",
    "prelu_forward",
    "REDUCTIONS", "SoftmaxCrossEntropyState", "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward", "LOSS_REDUCTIONS", "LOSS_TYPES", "LossDescriptor", "LossState",
    "YOLOLossDescriptor", "loss_backward", "loss_forward", "yolo_loss_forward",
    "MaxPool2dState", "avg_pool2d_backward", "avg_pool2d_forward", "max_pool2d_backward",
    "max_pool2d_forward", "dilated_max_pool2d_forward", "l2_pool2d_backward", "l2_pool2d_forward",
    "conv_transpose2d_backward_bias", "conv_transpose2d_backward_input", "conv_transpose2d_backward_weight",
    "conv_transpose2d_forward",
    "BatchNormState", "GroupNormState", "batch_norm_backward", "batch_norm_forward", "cross_channel_norm_backward",
    "cross_channel_norm_forward", "group_norm_backward", "group_norm_forward", "instance_norm_backward",
    "instance_norm_forward", "layer_norm_backward", "layer_norm_forward",
    "RNN_ACTIVATIONS", "RNN_CELLS", "RnnState", "rnn_backward", "rnn_forward",
    "log_softmax_backward", "log_softmax_forward", "softmax_backward", "softmax_forward"]
