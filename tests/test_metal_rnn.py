"""RNN kernels (cpp/kernels/rnn.metal) on the CPU emulator against the CPU backend.

A small driver below runs a whole layer the way the Metal host code does
(cpp/metalnn/backend/metal/rnn.cpp: input projections in one product, per step the recurrent
product(s) and a gate kernel, then whole-sequence gradient products), every product and gate
update a kernel dispatch, and compares outputs, final states and every gradient with
mnn.ops.rnn_forward / rnn_backward: every cell, bidirectional, stacked, variable lengths, odd
sizes; plus the strided product, the reductions and the float16 casts on their own."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from rnn_reference import GATES, make_weights

from metalnn.ops.rnn import rnn_backward, rnn_forward

from helpers import assert_close, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import lib, run_both_schedules, skip_without_clang  # noqa: E402
from params_rnn import RnnGemmParams, RnnStepParams, reduce_params  # noqa: E402

skip_without_clang()

CELL_IDS = {"single_gate": 0, "lstm": 1, "gru": 2, "mgu": 3}
ACT_IDS = {"tanh": 0, "relu": 1, "sigmoid": 2}


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view: bound twice (hp and hn), only the written binding is copied back."""
    v = a.view()
    v.flags.writeable = False
    return v


class Driver:
    def __init__(self):
        self.k = lib("rnn")

    def gemm(self, a, b, c, M, N, K, a_off, a_rs, a_cs, b_off, b_rs, b_cs, c_off, ldc, alpha=1.0, beta=0.0):
        p = RnnGemmParams(M, N, K, a_off, a_rs, a_cs, b_off, b_rs, b_cs, c_off, ldc, alpha, beta, 0, 0, 0)
        grid = (((N + 31) // 32) * 16, ((M + 31) // 32) * 16)
        self.k.dispatch("rnn_gemm_float32", [_ro(a), _ro(b), c, p], grid, (16, 16))

    def step(self, name, bufs, B, H):
        self.k.dispatch(name, bufs, B * H, 32)

    # ---- one layer, one direction (mirrors layer_forward / layer_backward of the host code)
    def layer_forward(self, spec, w, x, T, B, h0, c0, lengths, reverse, y, ldy, ycol):
        cell, I, H, act, peep, flip = spec
        G = GATES[cell]
        GH, nsig = G * H, (G - 1) * H
        W, U, bias = w[0].ravel(), w[1].ravel(), w[2].ravel()
        P = w[3].ravel() if peep else np.zeros(1, np.float32)
        gates = np.zeros(T * B * GH, np.float32)
        hp = np.zeros(T * B * H, np.float32)
        cp = np.zeros(T * B * H, np.float32)
        rh = np.zeros(T * B * H, np.float32)
        h_last = np.zeros(B * H, np.float32)
        c_last = np.zeros(B * H, np.float32)
        lens = np.zeros(1, np.int32) if lengths is None else lengths.astype(np.int32)

        def time_of(s):
            return T - 1 - s if reverse else s

        first = time_of(0)
        hp[first * B * H:(first + 1) * B * H] = h0.ravel()
        cp[first * B * H:(first + 1) * B * H] = c0.ravel()
        self.gemm(x, W, gates, T * B, GH, I, 0, I, 1, 0, 1, I, 0, GH)
        for s in range(T):
            t = time_of(s)
            last = s + 1 == T
            hn, cn = (h_last, c_last) if last else (hp, cp)
            off_hn = 0 if last else time_of(s + 1) * B * H
            p = RnnStepParams(CELL_IDS[cell], ACT_IDS[act], B, H, G, int(peep), int(flip), int(lengths is not None),
                              t, ldy, t * B * GH, t * B * H, off_hn, t * B * ldy + ycol, 0, 0)
            hpb, cpb = (hp, cp) if last else (_ro(hp), _ro(cp))
            if cell in ("single_gate", "lstm"):
                self.gemm(hp, U, gates, B, GH, H, t * B * H, H, 1, 0, 1, H, t * B * GH, GH, 1.0, 1.0)
                if cell == "lstm":
                    self.step("rnn_lstm_forward_float32", [gates, bias, P, hpb, hn, cpb, cn, y, lens, p], B, H)
                else:
                    self.step("rnn_single_forward_float32", [gates, bias, hpb, hn, y, lens, p], B, H)
            else:
                self.gemm(hp, U, gates, B, nsig, H, t * B * H, H, 1, 0, 1, H, t * B * GH, GH, 1.0, 1.0)
                self.step("rnn_gated_forward1_float32", [gates, bias, hp, rh, lens, p], B, H)
                self.gemm(rh, U, gates, B, H, H, t * B * H, H, 1, nsig * H, 1, H, t * B * GH + nsig, GH, 1.0, 1.0)
                self.step("rnn_gated_forward2_float32", [gates, bias, hpb, hn, y, lens, p], B, H)
        return dict(gates=gates, hp=hp, cp=cp, rh=rh, h_last=h_last, c_last=c_last, lens=lens)

    def layer_backward(self, spec, w, st, x, T, B, lengths, reverse, dy, ldy, ycol, dh_last, dx, dx_acc):
        cell, I, H, act, peep, flip = spec
        G = GATES[cell]
        GH, nsig = G * H, (G - 1) * H
        W, U = w[0].ravel(), w[1].ravel()
        P = w[3].ravel() if peep else np.zeros(1, np.float32)
        gates, hp, cp, rh, lens = st["gates"], st["hp"], st["cp"], st["rh"], st["lens"]
        dgates = np.zeros(T * B * GH, np.float32)
        dh = dh_last.ravel().copy()
        dc = np.zeros(B * H, np.float32)
        dhp, dcp, drh = (np.zeros(B * H, np.float32) for _ in range(3))
        dyb = dy if dy is not None else np.zeros(1, np.float32)

        def time_of(s):
            return T - 1 - s if reverse else s

        for s in range(T - 1, -1, -1):
            t = time_of(s)
            last = s + 1 == T
            cn = st["c_last"] if last else cp
            off_hn = 0 if last else time_of(s + 1) * B * H
            p = RnnStepParams(CELL_IDS[cell], ACT_IDS[act], B, H, G, int(peep), int(flip), int(lengths is not None),
                              t, ldy, t * B * GH, t * B * H, off_hn, t * B * ldy + ycol, int(dy is not None), 0)
            if cell == "single_gate":
                self.step("rnn_single_backward_float32", [gates, dgates, dh, dyb, dhp, lens, p], B, H)
                self.gemm(dgates, U, dhp, B, H, GH, t * B * GH, GH, 1, 0, H, 1, 0, H, 1.0, 1.0)
            elif cell == "lstm":
                self.step("rnn_lstm_backward_float32",
                          [gates, dgates, dh, dc, dyb, dhp, dcp, _ro(cp), _ro(cn), P, lens, p], B, H)
                self.gemm(dgates, U, dhp, B, H, GH, t * B * GH, GH, 1, 0, H, 1, 0, H, 1.0, 1.0)
                dc, dcp = dcp, dc
            else:
                self.step("rnn_gated_backward1_float32", [gates, dgates, dh, dyb, hp, dhp, lens, p], B, H)
                self.gemm(dgates, U, drh, B, H, H, t * B * GH + nsig, GH, 1, nsig * H, H, 1, 0, H, 1.0, 0.0)
                self.step("rnn_gated_backward2_float32", [gates, dgates, drh, hp, dhp, lens, p], B, H)
                self.gemm(dgates, U, dhp, B, H, nsig, t * B * GH, GH, 1, 0, H, 1, 0, H, 1.0, 1.0)
            dh, dhp = dhp, dh
        R = T * B
        dW = np.zeros(GH * I, np.float32)
        dU = np.zeros(GH * H, np.float32)
        db = np.zeros(GH, np.float32)
        self.gemm(dgates, x, dW, GH, I, R, 0, 1, GH, 0, I, 1, 0, I)
        if cell in ("single_gate", "lstm"):
            self.gemm(dgates, hp, dU, GH, H, R, 0, 1, GH, 0, H, 1, 0, H)
        else:
            self.gemm(dgates, hp, dU, nsig, H, R, 0, 1, GH, 0, H, 1, 0, H)
            self.gemm(dgates, rh, dU, H, H, R, nsig, 1, GH, 0, H, 1, nsig * H, H)
        self.k.dispatch("rnn_column_sums_float32", [dgates, db, reduce_params(rows=R, cols=GH)], GH, 32)
        grads = [dW.reshape(GH, I), dU.reshape(GH, H), db]
        if peep:
            dp = np.zeros(3 * H, np.float32)
            rp = reduce_params(time=T, batch=B, hidden=H, reverse=int(reverse))
            self.k.dispatch("rnn_peephole_backward_float32", [dgates, cp, st["c_last"], dp, rp], H, 32)
            grads.append(dp.reshape(3, H))
        self.gemm(dgates, W, dx, R, I, GH, 0, GH, 1, 0, I, 1, 0, I, 1.0, 1.0 if dx_acc else 0.0)
        return grads, dh, dc

    # ---- the whole stack
    def forward(self, layers, bidirectional, x, w, lengths):
        T, B, _ = x.shape
        D = 2 if bidirectional else 1
        inp, wi, states, inputs = x.ravel().astype(np.float32), 0, [], []
        for spec in layers:
            H = spec[2]
            y = np.zeros(T * B * D * H, np.float32)
            inputs.append(inp)
            for d in range(D):
                nw = 4 if spec[4] else 3
                zeros = np.zeros((B, H), np.float32)
                states.append(self.layer_forward(spec, w[wi:wi + nw], inp, T, B, zeros, zeros, lengths, d == 1,
                                                 y, D * H, d * H))
                wi += nw
            inp = y
        return inp.reshape(T, B, -1), states, inputs

    def backward(self, layers, bidirectional, w, states, inputs, dy, lengths, T, B):
        D = 2 if bidirectional else 1
        starts, wi = [], 0
        for spec in layers:
            starts.append(wi)
            wi += (4 if spec[4] else 3) * D
        grads = [None] * wi
        dyl, dh0 = dy.ravel().astype(np.float32), [None] * (len(layers) * D)
        for li in range(len(layers) - 1, -1, -1):
            spec = layers[li]
            H, I = spec[2], spec[1]
            nw = 4 if spec[4] else 3
            dx = np.zeros(T * B * I, np.float32)
            for d in range(D):
                k0 = starts[li] + d * nw
                g, dh, _ = self.layer_backward(spec, w[k0:k0 + nw], states[li * D + d], inputs[li], T, B, lengths,
                                               d == 1, dyl, D * H, d * H, np.zeros(B * H, np.float32), dx, d > 0)
                grads[k0:k0 + nw] = g
                dh0[li * D + d] = dh.reshape(B, H)
            dyl = dx
        return dyl.reshape(T, B, -1), grads, dh0


CASES = [
    ("single_gate", "tanh", False, False, False, None),
    ("single_gate", "relu", False, False, True, None),
    ("lstm", "tanh", True, False, False, "varlen"),
    ("lstm", "tanh", False, False, True, "varlen"),
    ("gru", "tanh", False, False, True, None),
    ("gru", "tanh", False, True, False, "varlen"),
    ("mgu", "tanh", False, False, False, "varlen"),
    ("mgu", "tanh", False, True, True, None),
]


@pytest.mark.parametrize("cell,act,peep,flip,bidirectional,varlen", CASES,
                         ids=[f"{c[0]}-{c[1]}{'-peep' if c[2] else ''}{'-flip' if c[3] else ''}"
                              f"{'-bi' if c[4] else ''}{'-varlen' if c[5] else ''}" for c in CASES])
def test_layers_match_cpu(cell, act, peep, flip, bidirectional, varlen):
    r = rng(1)
    D = 2 if bidirectional else 1
    layers = [(cell, 5, 7, act, peep, flip), (cell, 7 * D, 3, act, peep, flip)]
    w = make_weights(layers, bidirectional, seed=2)
    T, B = 4, 3
    x = r.standard_normal((T, B, 5)).astype(np.float32)
    lengths = np.array([4, 1, 3], np.int32) if varlen else None
    dy = r.standard_normal((T, B, 3 * D)).astype(np.float32)
    drv = Driver()
    y, states, inputs = drv.forward(layers, bidirectional, x, w, lengths)
    y_ref, h_ref, c_ref, st = rnn_forward(x, w, layers, bidirectional, lengths=lengths, training=True)
    assert_close(y, y_ref, atol=2e-6, rtol=2e-6, what="y")
    for k, s in enumerate(states):
        assert_close(s["h_last"].reshape(h_ref[k].shape), h_ref[k], atol=2e-6, rtol=2e-6, what=f"h_last[{k}]")
    dx, grads, dh0 = drv.backward(layers, bidirectional, w, states, inputs, dy, lengths, T, B)
    dx_ref, dw_ref, dh0_ref, _ = rnn_backward(x, dy, w, layers, bidirectional, st)
    assert_close(dx, dx_ref, atol=1e-5, rtol=1e-5, what="dx")
    for k, (g, ref) in enumerate(zip(grads, dw_ref)):
        assert_close(g, ref, atol=1e-5, rtol=1e-5, what=f"dweights[{k}]")
    for k, (g, ref) in enumerate(zip(dh0, dh0_ref)):
        assert_close(g, ref, atol=1e-5, rtol=1e-5, what=f"dh0[{k}]")


def test_strided_gemm_and_reductions():
    r = rng(3)
    k = lib("rnn")
    # C (37 x 45) rows of 50 from element 3 = 0.5 * A^T B + 2 C: A stored (K, M), B (K, N); odd sizes.
    M, N, K = 37, 45, 19
    a = r.standard_normal((K, M)).astype(np.float32)
    b = r.standard_normal((K, N)).astype(np.float32)
    c0 = r.standard_normal(3 + M * 50).astype(np.float32)
    p = RnnGemmParams(M, N, K, 0, 1, M, 0, N, 1, 3, 50, 0.5, 2.0, 0, 0, 0)
    grid = (((N + 31) // 32) * 16, ((M + 31) // 32) * 16)
    c = c0.copy()
    k.dispatch("rnn_gemm_float32", [a, b, c, p], grid, (16, 16))
    got = c[3:].reshape(M, 50)[:, :N]
    assert_close(got, 0.5 * a.T.astype(np.float64) @ b + 2 * c0[3:].reshape(M, 50)[:, :N], atol=1e-5, rtol=1e-5)
    # the schedule must not matter (barriers around the tiles)
    c1 = c0.copy()
    k.dispatch("rnn_gemm_float32", [a, b, c1, p], grid, (16, 16), schedule=1)
    np.testing.assert_array_equal(c, c1)
    x = r.standard_normal((23, 17)).astype(np.float32)
    s, = run_both_schedules(k, "rnn_column_sums_float32", [x, ("out", 0), reduce_params(rows=23, cols=17)],
                            [np.zeros(17, np.float32)], 17, 8)
    assert_close(s, x.astype(np.float64).sum(0), atol=1e-5, rtol=1e-5)


def test_copies_and_casts():
    r = rng(4)
    h = r.standard_normal(101).astype(np.float16)
    h[:3] = [np.nan, np.inf, 65504]
    k = lib("rnn")
    # 90 elements from in[5] to out[7]: the rest of out stays as it was
    p = reduce_params(count=90, in_off=5, out_off=7)
    f = np.full(100, -1.0, np.float32)
    k.dispatch("rnn_cast_widen_float16", [h, f, p], 90, 32)
    np.testing.assert_array_equal(f[7:97], h[5:95].astype(np.float32))
    assert np.all(f[:7] == -1) and np.all(f[97:] == -1)
    back = np.zeros(100, np.float16)
    k.dispatch("rnn_cast_narrow_float16", [f * np.float32(1.0001), back, p], 90, 32)
    np.testing.assert_array_equal(back[7:97], (f[5:95] * np.float32(1.0001)).astype(np.float16))
    c = np.full(100, 3.0, np.float32)
    k.dispatch("rnn_copy_float32", [f, c, p], 90, 32)
    np.testing.assert_array_equal(c[7:97], f[5:95])
    k.dispatch("rnn_zero_float32", [c, reduce_params(count=4, out_off=2)], 4, 32)
    assert np.all(c[2:6] == 0) and c[1] == 3.0 and c[6] == 3.0
