"""A few digit-network training steps on cuda for compute-sanitizer (tools/cuda_*.sh):
the first runs eagerly, the next are captured and replayed as CUDA graphs.

    compute-sanitizer --tool memcheck python3 tools/sanitize_step.py [--width 0.5] [--steps 5]
"""

import argparse

import numpy as np

import metalnn as mnn
from metalnn.examples.digit_graph import digit_network

ap = argparse.ArgumentParser()
ap.add_argument("--width", type=float, default=1.0, help="channel width factor of the digit network")
ap.add_argument("--steps", type=int, default=3)
args = ap.parse_args()
rng = np.random.default_rng(0)
g = digit_network(mnn.Adam(learning_rate=1e-3), width=args.width).training_graph(device="cuda")
x = rng.random((16, 1, 28, 28)).astype(np.float32)
y = rng.integers(0, 10, 16).astype(np.int32)
handles = [g.encode_batch(x, labels=y) for _ in range(args.steps)]
losses = [float(np.asarray(h.loss)) for h in handles]
print("losses", losses, "mode", g._current.graph_mode, "launches", g._current.graph_launches)
assert all(np.isfinite(losses))
