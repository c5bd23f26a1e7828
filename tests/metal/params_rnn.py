"""ctypes mirrors of the RNN params structs in cpp/kernels/rnn_params.h."""

import ctypes

_U = ctypes.c_uint32


class RnnStepParams(ctypes.Structure):
    _fields_ = [("cell", _U), ("activation", _U), ("batch", _U), ("hidden", _U), ("gates", _U), ("peephole", _U),
                ("flip_output_gates", _U), ("has_lengths", _U), ("time", ctypes.c_int32), ("y_stride", _U),
                ("off_gates", _U), ("off_hp", _U), ("off_hn", _U), ("off_y", _U), ("has_dy", _U), ("pad0", _U)]


class RnnGemmParams(ctypes.Structure):
    _fields_ = [(n, _U) for n in ("M", "N", "K", "a_off", "a_rs", "a_cs", "b_off", "b_rs", "b_cs", "c_off", "ldc")] + \
        [("alpha", ctypes.c_float), ("beta", ctypes.c_float), ("pad0", _U), ("pad1", _U), ("pad2", _U)]


class RnnReduceParams(ctypes.Structure):
    _fields_ = [(n, _U) for n in ("rows", "cols", "time", "batch", "hidden", "reverse", "count", "in_off", "out_off",
                                  "pad0", "pad1", "pad2")]


def reduce_params(**kw) -> RnnReduceParams:
    """RnnReduceParams with the named fields set, the rest 0."""
    p = RnnReduceParams()
    for k, v in kw.items():
        setattr(p, k, v)
    return p
