"""Train an InceptionV3-style network on synthetic pattern images and time the training steps.

    python -m metalnn.examples.inception [--steps 250] [--batch-size 32] [--device cpu|cuda] [--seed 0]
    torchrun --nproc_per_node 2 -m metalnn.examples.inception --distributed --device cuda

The network, as a graph (every convolution followed by batch norm + ReLU):

    stem      conv 3x3 /2, conv 3x3, max-pool 2x2                        (3x64x64 -> 24x16x16)
    mixed A   1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg-pool 3x3 -> 1x1, concatenated
    reduction conv 3x3 /2 | max-pool 2x2, concatenated                    (-> 8x8)
    mixed B   1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg-pool 3x3 -> 1x1
    head      global average pooling, fully connected, softmax cross-entropy

Widths are scaled by ``--width`` (InceptionV3 itself is far wider; this keeps a 2-core CPU run
to a minute or two). The data: images of ``--classes`` stripe / checker patterns with random
frequency, phase, colour and noise, generated from ``--seed``. The training graph is derived
from the loss node (``Graph.training``); batches are double-buffered. Prints the per-step loss,
images/s, total time and the accuracy of the inference graph (running batch-norm statistics)
on fresh images. ``--distributed``: data-parallel over the processes of mpirun / torchrun, each
taking its shard of every global batch (``--batch-size`` per process); rank 0 prints.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import distributed, num_threads, set_num_threads
from .. import graph as g
from ..graph.data_source import ConvolutionWeights
from ..graph.optimizers import SGD, Adam
from ._loop import Progress, add_run_arguments, check_run_arguments, share_parameters, summary_line, train

PATTERNS = ("horizontal", "vertical", "diagonal", "checker", "anti-diagonal", "rings")


def make_patterns(n: int, classes: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 images (n, 3, size, size) and int32 labels: class k is ``PATTERNS[k]``,
    a sinusoidal pattern of 2-5 cycles per image with random phase and colour, plus a
    random brightness offset and Gaussian noise (so no single pixel gives the class away)."""
    if not 2 <= classes <= len(PATTERNS):
        raise ValueError(f"classes must be in [2, {len(PATTERNS)}], got {classes}")
    labels = rng.integers(0, classes, n).astype(np.int32)
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = t[None, :, None], t[None, None, :]
    freq = rng.uniform(2.0, 5.0, (n, 1, 1)).astype(np.float32) * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    coords = {
        "horizontal": yy + 0 * xx,
        "vertical": xx + 0 * yy,
        "diagonal": (xx + yy) / np.sqrt(2),
        "anti-diagonal": (xx - yy) / np.sqrt(2),
        "rings": np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2),
    }
    pattern = np.empty((n, size, size), np.float32)
    for k in range(classes):
        m = labels == k
        if not m.any():
            continue
        name = PATTERNS[k]
        if name == "checker":
            pattern[m] = np.sin(freq[m] * xx + phase[m]) * np.sin(freq[m] * yy + phase[m]) * 2
        else:
            pattern[m] = np.sin(freq[m] * coords[name] + phase[m])
    colour = rng.uniform(0.3, 1.0, (n, 3, 1, 1)).astype(np.float32) * rng.choice([-1.0, 1.0], (n, 3, 1, 1))
    offset = rng.normal(0.0, 0.5, (n, 3, 1, 1)).astype(np.float32)
    noise = rng.normal(0.0, 0.5, (n, 3, size, size)).astype(np.float32)
    images = colour * pattern[:, None] + offset + noise
    return np.ascontiguousarray(images, dtype=np.float32), labels


class _Builder:
    """Creates conv + batch norm + ReLU units with distinct labels and seeds."""

    def __init__(self, optimizer, seed: int, width: float):
        self.optimizer, self.seed, self.width, self.count = optimizer, seed, width, 0
        self.convolutions: list[g.ConvolutionNode] = []

    def ch(self, c: int) -> int:
        return max(2, int(round(c * self.width)))

    def conv_bn_relu(self, x: g.ImageNode, cin: int, cout: int, kernel, stride: int = 1, name: str = "conv"):
        self.count += 1
        label = f"{name}{self.count}"
        w = ConvolutionWeights(cin, cout, kernel, stride=stride, bias=False, optimizer=self.optimizer,
                               seed=self.seed * 1000 + self.count, label=label)
        conv = g.ConvolutionNode(x, w, padding="same", label=label)
        bn = g.BatchNormalizationNode(conv.result, g.BatchNormalizationWeights(cout, optimizer=self.optimizer,
                                                                               label=f"{label}.bn"),
                                      momentum=0.1, label=f"{label}.bn")
        self.convolutions.append(conv)
        return g.NeuronReLUNode(bn.result, label=f"{label}.relu").result, cout

    def chain(self, x, cin, spec, name):
        """A branch: successive (channels, kernel) convolutions."""
        for cout, kernel in spec:
            x, cin = self.conv_bn_relu(x, cin, self.ch(cout), kernel, name=name)
        return x, cin


def mixed_a(b: _Builder, x, cin: int):
    """Inception-A: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg-pool 3x3 -> 1x1."""
    b1 = b.chain(x, cin, [(16, 1)], "mixA_1x1_")
    b2 = b.chain(x, cin, [(12, 1), (16, 3)], "mixA_3x3_")
    b3 = b.chain(x, cin, [(12, 1), (16, 3), (16, 3)], "mixA_dbl_")
    pool = g.PoolingAverageNode(x, 3, 1, padding="same", count_include_pad=False)
    b4 = b.chain(pool.result, cin, [(8, 1)], "mixA_pool_")
    return _concat([b1, b2, b3, b4])


def reduction(b: _Builder, x, cin: int):
    """Grid reduction: conv 3x3 stride 2 | max-pool 2x2, concatenated (halves H and W)."""
    conv, c1 = b.conv_bn_relu(x, cin, b.ch(24), 3, stride=2, name="reduce_")
    pool = g.PoolingMaxNode(x, 2, 2)
    return _concat([(conv, c1), (pool.result, cin)])


def mixed_b(b: _Builder, x, cin: int):
    """Inception-B with factorised 7x7 convolutions: 1x1 | 1x1 -> 1x7 -> 7x1 |
    1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg-pool 3x3 -> 1x1."""
    b1 = b.chain(x, cin, [(24, 1)], "mixB_1x1_")
    b2 = b.chain(x, cin, [(16, 1), (16, (1, 7)), (24, (7, 1))], "mixB_7x7_")
    b3 = b.chain(x, cin, [(16, 1), (16, (7, 1)), (16, (1, 7)), (16, (7, 1)), (24, (1, 7))], "mixB_dbl_")
    pool = g.PoolingAverageNode(x, 3, 1, padding="same", count_include_pad=False)
    b4 = b.chain(pool.result, cin, [(24, 1)], "mixB_pool_")
    return _concat([b1, b2, b3, b4])


def _concat(branches):
    node = g.ConcatenationNode([x for x, _ in branches])
    return node.result, sum(c for _, c in branches)


def inception_network(classes: int, image_size: int, optimizer, *, seed: int = 0, width: float = 1.0):
    """Builds the nodes; returns (source, logits, loss node, builder)."""
    if image_size % 8 or image_size < 16:
        raise ValueError(f"image size must be a multiple of 8 and >= 16, got {image_size}")
    b = _Builder(optimizer, seed, width)
    src = g.ImageNode("images")
    x, c = b.conv_bn_relu(src, 3, b.ch(16), 3, stride=2, name="stem")
    x, c = b.conv_bn_relu(x, c, b.ch(24), 3, name="stem")
    x, c = g.PoolingMaxNode(x, 2, 2, label="stem.pool").result, c
    x, c = mixed_a(b, x, c)
    x, c = mixed_a(b, x, c)
    x, c = reduction(b, x, c)
    x, c = mixed_b(b, x, c)
    grid = image_size // 8
    gap = g.PoolingAverageNode(x, grid, grid, label="global_pool")  # global average pooling
    fc = g.FullyConnectedNode(gap.result, ConvolutionWeights(c, classes, 1, optimizer=optimizer, seed=seed * 1000 + 999,
                                                            weights_init="glorot", label="fc"))
    loss = g.SoftmaxCrossEntropyLossNode(fc.result, label="loss")
    return src, fc.result, loss, b


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=250, help="training steps (default 250)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64, help="square images, a multiple of 8 (default 64)")
    p.add_argument("--classes", type=int, default=6, help=f"pattern classes, 2-{len(PATTERNS)} (default 6)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--learning-rate", type=float, default=None, help="default 3e-3 (Adam) / 0.05 (SGD)")
    add_run_arguments(p, 1024, "fresh images for the final accuracy")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of mpirun / torchrun (--batch-size per process)")
    args = p.parse_args(argv)
    check_run_arguments(p, args)
    return args


def main(argv=None) -> dict:
    """Trains; returns {"loss": per-step losses, "time_s", "images_per_s", "accuracy" (on fresh
    images), "device", "steps", "batch_size"}."""
    args = parse_args(argv)
    if args.distributed:
        distributed.init()  # first: each rank takes its GPU before CUDA starts
    rank, world = distributed.rank(), distributed.world_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    if args.threads:
        set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_patterns(args.train_images, args.classes, args.image_size, rng)
    x_test, y_test = make_patterns(args.test_images, args.classes, args.image_size, rng)
    if args.optimizer == "adam":
        opt = Adam(learning_rate=args.learning_rate or 3e-3)
    else:
        opt = SGD(learning_rate=args.learning_rate or 0.05, momentum=0.9)
    src, logits, loss, builder = inception_network(args.classes, args.image_size, opt, seed=args.seed,
                                                   width=args.width)
    training = g.Graph.training(loss, device=args.device, distributed=args.distributed)
    inference = g.Graph(logits, device=args.device)
    share_parameters(training, inference, x_train[:args.batch_size], y_train[:args.batch_size])
    bs, n = args.batch_size, len(x_train)
    gbs = bs * world  # the global batch; every rank takes its shard (the same order on every rank)
    order = np.concatenate([rng.permutation(n) for _ in range((args.steps * gbs) // n + 1)])
    say(f"metalnn: InceptionV3-style network ({len(builder.convolutions)} conv + batch-norm layers) on "
        f"{training.device}, {args.classes} classes, {args.image_size}x{args.image_size} images, batch {bs}"
        f"{f' x {world} processes' if world > 1 else ''}, {args.steps} steps, {num_threads()} thread(s)", flush=True)

    def batch(i):
        idx = order[i * gbs:(i + 1) * gbs][rank * bs:(rank + 1) * bs]
        return x_train[idx], y_train[idx]

    progress = Progress(args.steps, "inception", args.quiet or rank != 0, args.log_every)
    result = train(training, batch, args.steps, bs, progress)
    result["images_per_s"] *= world  # every rank's images
    training.synchronize()
    correct = 0
    for i in range(0, len(x_test), 128):
        out = inference.run(np.ascontiguousarray(x_test[i:i + 128])).result
        correct += int(np.sum(np.argmax(np.asarray(out), axis=1) == y_test[i:i + 128]))
    accuracy = correct / len(x_test)
    say(summary_line("inception", result))
    say(f"test accuracy on {len(x_test)} fresh images: {accuracy * 100:.1f}% (chance {100 / args.classes:.0f}%)")
    result.update(accuracy=accuracy, device=str(training.device), steps=args.steps, batch_size=bs, world_size=world)
    return result


if __name__ == "__main__":
    main()
