"""Train the seed's activity classifier on BasicMotions and print the test accuracy.

    python -m metalnn.examples.activity [--epochs 60] [--batch-size 8] [--plot activity_training.png] [--graph]

Model (as in the seed): a 1-D convolution (kernel = stride = 5) compresses each 6-channel x 100
sample sensor series to 20 steps of C features, an LSTM of 200 units reads the 20 steps, a
dense layer maps its final hidden state to the 4 activities, and softmax cross-entropy with
Adam trains everything. Every layer is a forward kernel plus its gradient kernels; the LSTM is
an RNNMatrixTrainingLayer (encode_forward_sequence / encode_gradient_sequence). ``--graph`` trains
the same model as a graph (ConvolutionNode -> RNNNode -> FullyConnectedNode -> loss, the training
graph derived from the loss).

Data: BasicMotions (accelerometer + gyroscope of a smart watch; Standing, Running, Walking,
Badminton; 40 training and 40 test series), shipped in the ``aeon`` wheel
(``pip install --no-deps aeon==1.6.0``); nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np

from .. import ops
from ..datasets.basic_motions import load_basic_motions
from ..rnn import LSTMDescriptor, RecurrentState, RNNMatrixTrainingLayer
from ._plot import save_curves

CONV_KERNEL = 5  # = stride: 100 samples -> 20 steps


class ActivityClassifier:
    """Conv1d (as a 1 x k conv2d) -> LSTM -> dense, with Adam state for every parameter."""

    def __init__(self, channels: int = 6, conv_channels: int = 32, hidden: int = 200, classes: int = 4,
                 seed: int = 0, learning_rate: float = 2e-3):
        r = np.random.default_rng(seed)
        fan_in = channels * CONV_KERNEL
        self.params = {
            "conv_w": (r.standard_normal((conv_channels, channels, 1, CONV_KERNEL)) / np.sqrt(fan_in))
            .astype(np.float32),
            "conv_b": np.zeros(conv_channels, np.float32),
            "fc_w": (r.standard_normal((classes, hidden)) / np.sqrt(hidden)).astype(np.float32),
            "fc_b": np.zeros(classes, np.float32),
        }
        self.lstm = RNNMatrixTrainingLayer(LSTMDescriptor(conv_channels, hidden, forget_gate_bias=1.0))
        self.lstm_weights = self.lstm.create_weight_matrices(seed=seed + 1)
        self.lstm_grads = self.lstm.create_weight_gradient_matrices(self.lstm_weights)
        self._all = list(self.params.values()) + self.lstm_weights
        self.m = [np.zeros_like(p) for p in self._all]
        self.v = [np.zeros_like(p) for p in self._all]
        self.step_count = 0
        self.learning_rate = learning_rate

    def forward(self, x: np.ndarray, states: list | None = None):
        """Logits (B, classes) for x (B, 6, 100); ``states`` receives what the gradient needs."""
        p = self.params
        x4 = np.ascontiguousarray(x[:, :, None, :])  # (B, C_in, 1, L)
        z = ops.conv2d_forward(x4, p["conv_w"], p["conv_b"], stride=(1, CONV_KERNEL))  # (B, C, 1, 20)
        seq = np.ascontiguousarray(z[:, :, 0, :].transpose(2, 0, 1))  # (20, B, C)
        lstm_states = [] if states is not None else None
        self.lstm.encode_forward_sequence(seq, None, lstm_states, self.lstm_weights)
        h = self.lstm.final_states[0].h  # (B, hidden): the state after the last step
        logits = ops.fully_connected_forward(h, p["fc_w"], p["fc_b"])
        if states is not None:
            states[:] = [x4, seq, lstm_states, h]
        return logits

    def gradients(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, list[np.ndarray]]:
        """(mean loss, logits, gradients of every parameter in ``self.parameters()`` order)."""
        p = self.params
        saved: list = []
        logits = self.forward(x, saved)
        x4, seq, lstm_states, h = saved
        loss, sl = ops.softmax_cross_entropy_forward(logits, labels)
        d_logits = ops.softmax_cross_entropy_backward(sl)
        grads = {
            "fc_w": ops.fully_connected_backward_weight(d_logits, h),
            "fc_b": ops.fully_connected_backward_bias(d_logits),
        }
        dh = ops.fully_connected_backward_input(d_logits, p["fc_w"], h.shape)
        dseq = self.lstm.encode_gradient_sequence(seq, None, None, self.lstm_grads, lstm_states, self.lstm_weights,
                                                  final_state_gradients=[RecurrentState(dh)])
        dz = np.ascontiguousarray(dseq.transpose(1, 2, 0)[:, :, None, :])  # back to (B, C, 1, 20)
        grads["conv_w"] = ops.conv2d_backward_weight(dz, x4, p["conv_w"].shape, stride=(1, CONV_KERNEL))
        grads["conv_b"] = ops.conv2d_backward_bias(dz)
        all_grads = [np.ascontiguousarray(grads[k], dtype=np.float32) for k in self.params] + self.lstm_grads
        return float(np.asarray(loss)), logits, all_grads

    def parameters(self) -> list[np.ndarray]:
        """conv_w, conv_b, fc_w, fc_b, then the LSTM's matrices (trained in place)."""
        return self._all

    def train_step(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward, every gradient, Adam update; returns (mean loss, logits)."""
        loss, logits, grads = self.gradients(x, labels)
        self.step_count += 1
        # One call for every parameter: the per-tensor calls cost more in Python than their math.
        ops.adam_step_many(self._all, grads, self.m, self.v, self.step_count, self.learning_rate)
        return loss, logits

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.forward(x), axis=1)


def build_graphs(net: ActivityClassifier, optimizer=None, device: str | None = None):
    """The same model as a graph: ConvolutionNode (1 x 5 kernel, stride 5) -> RNNNode (reading the
    (N, C, 1, 20) image as a 20-step sequence, final state) -> FullyConnectedNode -> softmax
    cross-entropy. Returns (training graph, inference graph, data sources); the sources start
    from ``net``'s parameters (copies) and ``optimizer()`` makes each one's optimizer (default Adam
    at the net's learning rate). Both graphs share the sources' arrays, so inference follows training.
    ``device``: where the graphs run (default: METALNN_DEVICE or the best one present)."""
    from ..graph import (
        ConvolutionNode,
        FullyConnectedNode,
        Graph,
        ImageNode,
        RNNNode,
        RNNWeights,
        SoftmaxCrossEntropyLossNode,
    )
    from ..graph.data_source import ConvolutionWeights
    from ..graph.optimizers import Adam

    make = optimizer or (lambda: Adam(learning_rate=net.learning_rate))
    p = net.params
    conv_ds = ConvolutionWeights.from_arrays(p["conv_w"], p["conv_b"], stride=(1, CONV_KERNEL), optimizer=make(),
                                             label="conv")
    rnn_ds = RNNWeights(net.lstm, weights=net.lstm_weights, optimizer=make(), label="lstm")
    fc_ds = ConvolutionWeights.from_arrays(p["fc_w"], p["fc_b"], optimizer=make(), label="dense")
    conv = ConvolutionNode(ImageNode("series"), conv_ds, padding="valid")
    rnn = RNNNode(conv.result, rnn_ds, output="final", source_layout="image")
    fc = FullyConnectedNode(rnn.result, fc_ds)
    loss = SoftmaxCrossEntropyLossNode(fc.result)
    return Graph.training(loss, device=device), Graph(fc.result, device=device), (conv_ds, rnn_ds, fc_ds)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60, help="passes over the 40 training series (default 60)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--hidden", type=int, default=200, help="LSTM units (default 200)")
    p.add_argument("--conv-channels", type=int, default=32, help="features per compressed step (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="activity_training.png", help="PNG of the training curves ('' for none)")
    p.add_argument("--graph", action="store_true", help="train the graph version (nodes, derived training graph)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "hidden", "conv_channels"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


class _Progress:
    """tqdm over epochs when installed (and stderr is a terminal); else a plain line every few epochs."""

    def __init__(self, total: int, enabled: bool):
        self.bar, self.enabled, self.total = None, enabled, total
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc="training", unit="epoch", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, epoch: int, loss: float, train_acc: float, test_acc: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", train=f"{train_acc * 100:.0f}%", test=f"{test_acc * 100:.1f}%",
                                 refresh=False)
            self.bar.update(1)
        elif self.enabled and (epoch % 10 == 0 or epoch == self.total):
            print(f"epoch {epoch}: loss {loss:.4f}, train accuracy {train_acc * 100:.1f}%, "
                  f"test accuracy {test_acc * 100:.1f}%", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_plot(path: str, history: dict) -> bool:
    e = history["epoch"]
    return save_curves(path, e, history["loss"], ("epoch", "training loss (mean over the epoch)"), e,
                       [(history["test_accuracy"], "-", "test"), (history["train_accuracy"], "--", "train")],
                       "BasicMotions activity classifier", acc_ylim=(0, 101))


def main(argv=None) -> float:
    """Trains, reports loss and accuracy, writes the curve plot; returns the final test accuracy."""
    args = parse_args(argv)
    x_train, y_train, x_test, y_test, classes = load_basic_motions()
    # Per-channel standardisation with the training statistics.
    mean = x_train.mean(axis=(0, 2), keepdims=True)
    std = x_train.std(axis=(0, 2), keepdims=True) + 1e-6
    x_train, x_test = ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)
    net = ActivityClassifier(x_train.shape[1], args.conv_channels, args.hidden, len(classes), args.seed,
                             args.learning_rate)
    rng = np.random.default_rng(args.seed)
    n, bs = len(x_train), min(args.batch_size, len(x_train))
    if not args.quiet:
        print(f"metalnn: activity classifier{' (graph)' if args.graph else ''} (conv k=5 -> 20 steps x "
              f"{args.conv_channels}, LSTM {args.hidden}, "
              f"dense {len(classes)}) on BasicMotions: {n} training / {len(x_test)} test series, batch {bs}, "
              f"{args.epochs} epochs", flush=True)
    history = collections.defaultdict(list)
    progress = _Progress(args.epochs, not args.quiet)
    started = time.perf_counter()
    test_acc = 0.0
    train_graph = infer_graph = None
    if args.graph:
        train_graph, infer_graph, _ = build_graphs(net)

    def as_image(x):  # (N, C, L) -> (N, C, 1, L), the convolution's input
        return np.ascontiguousarray(x[:, :, None, :])

    def predict(x):
        if infer_graph is not None:
            return np.argmax(np.asarray(infer_graph.run(as_image(x)).result), axis=1)
        return net.predict(x)

    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(n)
        losses, correct = [], 0
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            if train_graph is not None:
                loss = float(np.asarray(train_graph.run(as_image(x_train[idx]), labels=y_train[idx]).loss))
                correct += int(np.sum(predict(x_train[idx]) == y_train[idx]))
            else:
                loss, logits = net.train_step(x_train[idx], y_train[idx])
                correct += int(np.sum(np.argmax(logits, axis=1) == y_train[idx]))
            losses.append(loss * len(idx))
        test_acc = float(np.mean(predict(x_test) == y_test))
        history["epoch"].append(epoch)
        history["loss"].append(sum(losses) / n)
        history["train_accuracy"].append(correct / n)
        history["test_accuracy"].append(test_acc)
        progress.update(epoch, sum(losses) / n, correct / n, test_acc)
    progress.close()
    elapsed = time.perf_counter() - started
    if args.plot and write_plot(args.plot, history):
        print(f"wrote training curves to {args.plot}")
    print(f"test accuracy: {test_acc * 100:.2f}% ({int(round(test_acc * len(y_test)))}/{len(y_test)}) after "
          f"{args.epochs} epochs, {elapsed:.1f} s")
    return test_acc


if __name__ == "__main__":
    main()
