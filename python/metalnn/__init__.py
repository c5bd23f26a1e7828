"""metalnn: train neural networks with explicit forward and gradient kernels.

``import metalnn as mnn``. Kernels live in :mod:`metalnn.ops`
(``mnn.ops.conv2d_forward``, ``mnn.ops.conv2d_backward_input``, ...). They take numpy
arrays (returning numpy arrays, zero-copy on the CPU) or :class:`Tensor` objects
(returning tensors).
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

# Development builds (tools/dev_build.sh) put the compiled module outside the package.
if _os.environ.get("METALNN_BUILD_DIR"):
    __path__.append(_os.environ["METALNN_BUILD_DIR"])  # noqa: F821

from . import _core
from ._blas import find_blas_library as _find_blas_library

_blas_path = _find_blas_library()
if _blas_path and not _core.set_blas_library(_blas_path):
    _warnings.warn(
        f"metalnn: could not load BLAS from {_blas_path}; using the slow built-in matrix product",
        RuntimeWarning,
        stacklevel=2,
    )

from . import distributed, layers, ops  # noqa: E402
from ._core import (  # noqa: E402
    Device,
    Event,
    State,
    Stream,
    Tensor,
    allocator_stats,
    available_devices,
    blas_info,
    default_device,
    empty_cache,
    from_dlpack,
    num_threads,
    set_num_threads,
)
from .batch import ImageBatch, StateBatch  # noqa: E402
from .graph import *  # noqa: E402,F403 - the node classes, Graph, Padding
from .graph import __all__ as _graph_all  # noqa: E402
from .graph.data_source import (  # noqa: E402
    ConvolutionDescriptor,
    ConvolutionWeights,
    DataSource,
    GradientState,
    WeightsState,
)
from .graph.optimizers import SGD, Adam, RMSProp  # noqa: E402
from .onnx_export import export_onnx  # noqa: E402

__version__ = "0.1.0"

__all__ = _graph_all + [
    "SGD",
    "Adam",
    "ConvolutionDescriptor",
    "ConvolutionWeights",
    "DataSource",
    "GradientState",
    "ImageBatch",
    "StateBatch",
    "RMSProp",
    "WeightsState",
    "Device",
    "Event",
    "State",
    "Stream",
    "Tensor",
    "allocator_stats",
    "available_devices",
    "blas_info",
    "default_device",
    "empty_cache",
    "from_dlpack",
    "num_threads",
    "ops",
    "set_num_threads",
    "tensor",
]
__all__ += ["distributed", "export_onnx", "layers"]


def tensor(data, dtype: str | None = None, device: str | None = None) -> Tensor:
    """Copies array-like ``data`` into a new :class:`Tensor` on ``device`` (default: the best present)."""
    return Tensor(data, dtype=dtype, device=device)
