"""ctypes mirrors of cpp/kernels/conv_params.h and linear_params.h (the emulator checks their
sizes against the kernels' `constant` arguments)."""

import ctypes


class Conv2dParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in (
        "batch", "in_channels", "in_height", "in_width", "out_channels", "out_height", "out_width",
        "kernel_height", "kernel_width", "stride_y", "stride_x", "dilation_y", "dilation_x",
        "pad_top", "pad_bottom", "pad_left", "pad_right", "groups")] + [
        ("accumulation", ctypes.c_uint32), ("has_bias", ctypes.c_uint32)]


class FullyConnectedParams(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int32), ("in_features", ctypes.c_int32), ("out_features", ctypes.c_int32),
                ("accumulation", ctypes.c_uint32), ("has_bias", ctypes.c_uint32)]
