"""ctypes mirrors of cpp/kernels/shape_params.h and arithmetic_params.h (the emulator checks
their sizes against the kernels' `constant` arguments)."""

import ctypes


class ShapeParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in (
        "n", "c", "h", "w", "out_c", "out_h", "out_w", "scale_h", "scale_w", "off_c", "off_h", "off_w")] + [
        ("mode", ctypes.c_uint32), ("pad0", ctypes.c_uint32)]


class ArithmeticParams(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint32), ("operand", ctypes.c_uint32), ("out", ctypes.c_int32 * 4),
                ("a_stride", ctypes.c_int32 * 4), ("b_stride", ctypes.c_int32 * 4), ("g_stride", ctypes.c_int32 * 4),
                ("count", ctypes.c_uint32), ("g_count", ctypes.c_uint32), ("reduce_count", ctypes.c_uint32),
                ("pad0", ctypes.c_uint32)]
