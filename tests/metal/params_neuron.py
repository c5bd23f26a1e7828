"""ctypes mirrors of cpp/kernels/neuron_params.h (the emulator checks their sizes against
the kernels' `constant` arguments)."""

import ctypes

from params import NeuronParams  # noqa: F401 - re-exported: the neuron family's params in one place


class PReLUParams(ctypes.Structure):
    _fields_ = [("outer", ctypes.c_uint32), ("channels", ctypes.c_uint32), ("inner", ctypes.c_uint32),
                ("pad0", ctypes.c_uint32)]
