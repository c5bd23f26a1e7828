"""Forward and gradient kernels: ``<op>_forward`` and ``<op>_backward[_input|_weight|_bias]``.

Inputs are numpy arrays (results come back as numpy arrays, zero-copy on the CPU) or
:class:`metalnn.Tensor` objects (results are tensors on the same device). Images are
NCHW, matrices row-major, float32 or float16. Errors raise ValueError/TypeError whose
message starts with ``[op]`` and names the argument.
"""

from .neuron import NEURON_TYPES, neuron_backward, neuron_forward

__all__ = ["NEURON_TYPES", "neuron_backward", "neuron_forward"]
