"""ctypes mirror of MnnNormParams (cpp/kernels/normalization_params.h)."""

import ctypes

BATCH_STATISTICS = 1


class NormParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ("n", "c", "s", "groups", "size")] + [
        ("flags", ctypes.c_uint32)] + [(name, ctypes.c_float) for name in (
            "epsilon", "momentum", "alpha", "beta", "delta", "count")]


def norm_params(shape, groups=1, size=1, flags=0, epsilon=1e-5, momentum=0.1, alpha=1e-4, beta=0.75, delta=1.0):
    """Params for an (N, C, ...) input viewed as (n, c, s)."""
    n, c = shape[0], shape[1]
    s = 1
    for d in shape[2:]:
        s *= d
    return NormParams(n, c, s, groups, size, flags, epsilon, momentum, alpha, beta, delta, float(n * s))
