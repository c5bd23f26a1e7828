"""ctypes mirrors of the params structs in cpp/kernels/*_params.h (the emulator checks their
sizes against the kernels' `constant` arguments)."""

import ctypes


class NeuronParams(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("a", ctypes.c_float), ("b", ctypes.c_float), ("c", ctypes.c_float)]


class DropoutParams(ctypes.Structure):
    _fields_ = [("seed", ctypes.c_uint64), ("threshold", ctypes.c_uint32), ("keep_probability", ctypes.c_float),
                ("scale", ctypes.c_float), ("pad0", ctypes.c_uint32)]


class SoftmaxParams(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int32), ("c", ctypes.c_int32), ("s", ctypes.c_int32), ("log", ctypes.c_uint32)]


class Pool2dParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in (
        "n", "c", "h", "w", "out_h", "out_w", "kernel_h", "kernel_w", "stride_h", "stride_w",
        "pad_top", "pad_bottom", "pad_left", "pad_right")] + [("count_include_pad", ctypes.c_uint32)]
