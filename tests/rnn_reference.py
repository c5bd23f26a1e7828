"""Float64 numpy reference of the RNN layers (metalnn.ops.rnn), written step by step from the math.

Shared by tests/test_rnn.py and the Metal/CUDA RNN tests.
"""

from __future__ import annotations

import numpy as np

GATES = {"single_gate": 1, "lstm": 4, "gru": 3, "mgu": 2}

# The cells every RNN suite checks: (cell, activation, peephole, flip_output_gates), and their test ids.
CELLS = [
    ("single_gate", "tanh", False, False),
    ("single_gate", "relu", False, False),
    ("single_gate", "sigmoid", False, False),
    ("lstm", "tanh", False, False),
    ("lstm", "tanh", True, False),
    ("gru", "tanh", False, False),
    ("gru", "tanh", False, True),
    ("mgu", "tanh", False, False),
    ("mgu", "tanh", False, True),
]
IDS = [f"{c}-{a}" + ("-peep" if p else "") + ("-flip" if f else "") for c, a, p, f in CELLS]

def sig(v):
    return 1 / (1 + np.exp(-v))

def act_fn(name, v):
    return {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "sigmoid": sig}[name](v)

def ref_layer(spec, x, w, h0, c0, lengths, reverse):
    """One layer and direction, float64, step by step from the math."""
    cell, _, H, act, peephole, flip = spec
    W, U, b = w[0], w[1], w[2]
    P = w[3] if peephole else None
    T, B, _ = x.shape
    h = h0.copy()
    c = c0.copy()
    y = np.zeros((T, B, H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        active = np.ones(B, bool) if lengths is None else (t < np.asarray(lengths))
        m = active[:, None]
        xa = x[t] @ W.T + b
        if cell == "single_gate":
            hn = act_fn(act, xa + h @ U.T)
            cn = c
        elif cell == "lstm":
            a = xa + h @ U.T
            ai, af, ag, ao = (a[:, k * H:(k + 1) * H] for k in range(4))
            if P is not None:
                ai = ai + P[0] * c
                af = af + P[1] * c
            i, f, g = sig(ai), sig(af), np.tanh(ag)
            cn = f * c + i * g
            if P is not None:
                ao = ao + P[2] * cn
            hn = sig(ao) * np.tanh(cn)
        else:
            G = GATES[cell]
            s = sig(xa[:, :(G - 1) * H] + h @ U[:(G - 1) * H].T)
            gate0 = s[:, :H]
            n = np.tanh(xa[:, (G - 1) * H:] + (gate0 * h) @ U[(G - 1) * H:].T)
            if cell == "gru":
                z = s[:, H:2 * H]
                u = 1 - z if flip else z
            else:
                u = gate0 if flip else 1 - gate0
            hn = u * h + (1 - u) * n
            cn = c
        y[t] = np.where(m, hn, 0)
        h = np.where(m, hn, h)
        c = np.where(m, cn, c)
    return y, h, c

def ref_rnn(layers, bidirectional, x, weights, h0=None, c0=None, lengths=None):
    D = 2 if bidirectional else 1
    x = np.asarray(x, np.float64)
    T, B, _ = x.shape
    wi = 0
    hs, cs = [], []
    inp = x
    for l, spec in enumerate(layers):
        H = spec[2]
        outs = []
        for d in range(D):
            k = l * D + d
            nw = 4 if spec[4] else 3
            w = [np.asarray(a, np.float64) for a in weights[wi:wi + nw]]
            wi += nw
            hh = np.zeros((B, H)) if h0 is None or h0[k] is None else np.asarray(h0[k], np.float64)
            cc = np.zeros((B, H)) if c0 is None or c0[k] is None else np.asarray(c0[k], np.float64)
            y, hl, cl = ref_layer(spec, inp, w, hh, cc, lengths, d == 1)
            outs.append(y)
            hs.append(hl)
            cs.append(cl if spec[0] == "lstm" else None)
        inp = np.concatenate(outs, axis=2)
    return inp, hs, cs

def make_weights(layers, bidirectional, seed=0, scale=0.5):
    r = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    ws = []
    for spec in layers:
        cell, I, H, _, peep, _ = spec
        G = GATES[cell]
        for _ in range(D):
            ws.append((r.standard_normal((G * H, I)) * scale).astype(np.float32))
            ws.append((r.standard_normal((G * H, H)) * scale).astype(np.float32))
            ws.append((r.standard_normal((G * H,)) * scale).astype(np.float32))
            if peep:
                ws.append((r.standard_normal((3, H)) * scale).astype(np.float32))
    return ws
