"""The seed's MNIST digit network, written with the kernel API.

conv 5x5 1->32 same, ReLU, max-pool 2x2, conv 5x5 32->64 same, ReLU, max-pool 2x2,
fully connected 3136->1024, ReLU, dropout 0.5, fully connected 1024->10, softmax
cross-entropy. Each layer is a forward kernel plus its gradient kernels; Adam updates
every parameter in place.
"""

from __future__ import annotations

import numpy as np

from .. import ops

PARAM_NAMES = ("conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc1_w", "fc1_b", "fc2_w", "fc2_b")


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases (float32)."""
    r = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (r.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "conv1_w": he((32, 1, 5, 5), 25),
        "conv1_b": np.zeros(32, np.float32),
        "conv2_w": he((64, 32, 5, 5), 800),
        "conv2_b": np.zeros(64, np.float32),
        "fc1_w": he((1024, 3136), 3136),
        "fc1_b": np.zeros(1024, np.float32),
        "fc2_w": (r.standard_normal((10, 1024)) * np.sqrt(1.0 / 1024)).astype(np.float32),
        "fc2_b": np.zeros(10, np.float32),
    }


class DigitNet:
    """Parameters, Adam state and one training step of the digit network."""

    def __init__(self, seed: int = 0, learning_rate: float = 1e-3, keep_probability: float = 0.5):
        self.params = init_params(seed)
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.step_count = 0
        self.learning_rate = learning_rate
        self.keep_probability = keep_probability
        self.seed = seed

    def forward(self, x: np.ndarray, training: bool):
        """Logits and what the backward pass needs."""
        p = self.params
        c1 = ops.conv2d_forward(x, p["conv1_w"], p["conv1_b"], padding=2)
        r1 = ops.neuron_forward(c1, "relu")
        p1, s1 = ops.max_pool2d_forward(r1, 2)
        c2 = ops.conv2d_forward(p1, p["conv2_w"], p["conv2_b"], padding=2)
        r2 = ops.neuron_forward(c2, "relu")
        p2, s2 = ops.max_pool2d_forward(r2, 2)
        f1 = ops.fully_connected_forward(p2, p["fc1_w"], p["fc1_b"])
        r3 = ops.neuron_forward(f1, "relu")
        sd = None
        if training:
            r3, sd = ops.dropout_forward(r3, self.keep_probability, seed=self.seed * 1_000_003 + self.step_count)
        logits = ops.fully_connected_forward(r3, p["fc2_w"], p["fc2_b"])
        return logits, (x, c1, p1, s1, c2, p2, s2, f1, r3, sd)

    def train_step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Forward, every gradient, Adam update. Returns the mean loss of the batch."""
        p = self.params
        logits, (x, c1, p1, s1, c2, p2, s2, f1, r3, sd) = self.forward(x, training=True)
        loss, sl = ops.softmax_cross_entropy_forward(logits, labels)
        g = {}
        d_logits = ops.softmax_cross_entropy_backward(sl)
        g["fc2_w"] = ops.fully_connected_backward_weight(d_logits, r3)
        g["fc2_b"] = ops.fully_connected_backward_bias(d_logits)
        d_r3 = ops.fully_connected_backward_input(d_logits, p["fc2_w"], r3.shape)
        d_r3 = ops.dropout_backward(d_r3, sd)
        d_f1 = ops.neuron_backward(d_r3, f1, "relu")
        g["fc1_w"] = ops.fully_connected_backward_weight(d_f1, p2)
        g["fc1_b"] = ops.fully_connected_backward_bias(d_f1)
        d_p2 = ops.fully_connected_backward_input(d_f1, p["fc1_w"], p2.shape)
        d_r2 = ops.max_pool2d_backward(d_p2, s2)
        d_c2 = ops.neuron_backward(d_r2, c2, "relu")
        g["conv2_w"] = ops.conv2d_backward_weight(d_c2, p1, p["conv2_w"].shape, padding=2)
        g["conv2_b"] = ops.conv2d_backward_bias(d_c2)
        d_p1 = ops.conv2d_backward_input(d_c2, p["conv2_w"], p1.shape, padding=2)
        d_r1 = ops.max_pool2d_backward(d_p1, s1)
        d_c1 = ops.neuron_backward(d_r1, c1, "relu")
        g["conv1_w"] = ops.conv2d_backward_weight(d_c1, x, p["conv1_w"].shape, padding=2)
        g["conv1_b"] = ops.conv2d_backward_bias(d_c1)
        self.step_count += 1
        # One multi-tensor call updates every parameter (one parallel region, not eight).
        ops.adam_step_many([p[k] for k in PARAM_NAMES], [g[k] for k in PARAM_NAMES],
                           [self.m[k] for k in PARAM_NAMES], [self.v[k] for k in PARAM_NAMES], self.step_count,
                           learning_rate=self.learning_rate)
        return float(loss)

    def predict(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Class indices for images ``x`` (N, 1, 28, 28)."""
        out = []
        for i in range(0, len(x), batch_size):
            logits, _ = self.forward(np.ascontiguousarray(x[i : i + batch_size]), training=False)
            out.append(np.argmax(logits, axis=1))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def save(self, path: str) -> None:
        """Writes the parameters to ``path`` (.npz) atomically: a crash keeps the old file."""
        import os

        tmp = f"{path}.tmp.npz"
        np.savez(tmp, **self.params)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
