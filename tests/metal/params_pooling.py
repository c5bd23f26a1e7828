"""ctypes mirror of MnnPool2dDilatedParams (cpp/kernels/pooling_params.h): the plain pooling
window plus the dilation of dilated max and L2-norm pooling."""

import ctypes

from params import Pool2dParams


class Pool2dDilatedParams(ctypes.Structure):
    _fields_ = [("pool", Pool2dParams), ("dilation_h", ctypes.c_int32), ("dilation_w", ctypes.c_int32)]
