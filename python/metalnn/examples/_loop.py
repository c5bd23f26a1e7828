"""The training loop the inception and detector examples share: double-buffered batches through
a training graph, the per-step loss on a tqdm bar (plain prints when tqdm is missing or stderr
is not a terminal), images/s and wall time."""

from __future__ import annotations

import collections
import math
import sys
import time
from typing import Callable

import numpy as np


def add_run_arguments(p, train_images: int, test_help: str) -> None:
    """The command-line arguments the synthetic-data examples share (after their own)."""
    p.add_argument("--train-images", type=int, default=train_images, help="size of the generated training set")
    p.add_argument("--test-images", type=int, default=256, help=test_help)
    p.add_argument("--device", default=None, help="cpu, metal or cuda (default: the best available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--log-every", type=int, default=1, help="print every N steps without a progress bar")
    p.add_argument("--quiet", action="store_true", help="only the summary lines")


def check_run_arguments(p, args) -> None:
    """Rejects non-positive sizes with argparse's usage error."""
    for name in ("steps", "batch_size", "train_images", "test_images"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.width <= 0:
        p.error("--width must be > 0")


class Progress:
    """A tqdm bar when tqdm is installed and stderr is a terminal; otherwise one printed line
    every ``every`` steps (and for the last one); nothing when ``quiet``."""

    def __init__(self, total: int, desc: str, quiet: bool, every: int = 1):
        self.total, self.desc, self.quiet, self.every = total, desc, quiet, max(1, every)
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, step: int, loss: float, images_per_second: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_second:.0f}", refresh=False)
            self.bar.update(1)
        elif step % self.every == 0 or step == self.total:
            print(f"{self.desc} step {step}/{self.total}: loss {loss:.4f} ({images_per_second:.0f} images/s)",
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(graph, batches: Callable[[int], tuple[np.ndarray, np.ndarray]], steps: int, batch_size: int,
          progress: Progress, loss_scale: float = 1.0) -> dict:
    """Runs ``steps`` batches (``batches(i) -> (images, labels)``) through ``graph`` with one batch
    queued while the previous one runs; returns the loss history (times ``loss_scale``), the wall
    time and images/s. Stops with RuntimeError at the first non-finite loss."""
    losses: list[float] = []
    in_flight: collections.deque = collections.deque()
    started = time.perf_counter()

    def retire(handle) -> None:
        loss = float(handle.loss) * loss_scale
        if not math.isfinite(loss):
            raise RuntimeError(f"the loss became {loss} at step {len(losses) + 1}")
        losses.append(loss)
        elapsed = time.perf_counter() - started
        progress.update(len(losses), loss, len(losses) * batch_size / max(elapsed, 1e-9))

    try:
        for i in range(steps):
            x, labels = batches(i)
            in_flight.append(graph.encode_batch(x, labels=labels))
            if len(in_flight) > 1:  # double buffering: batch i is queued while batch i-1 runs
                retire(in_flight.popleft())
        while in_flight:
            retire(in_flight.popleft())
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    return {"loss": losses, "time_s": seconds, "images_per_s": steps * batch_size / max(seconds, 1e-9)}


def share_parameters(training, inference, images: np.ndarray, labels: np.ndarray) -> None:
    """Points ``inference`` at the parameters ``training`` trains. On the CPU both graphs bind the
    data sources' arrays themselves (nothing to do); a device graph holds its own copies, so the
    inference graph binds the training graph's tensors (batch-norm running statistics included)."""
    if training.device.type == "cpu":
        return
    training.memory_plan(images, labels)  # compiling binds every node's parameters
    for node in list(training._params):
        trained, inferred = training._parameters(node), inference._parameters(node)
        for a, b in zip(trained, inferred):
            if a is not None and b is not None:
                b.bind(a.value)
        running = getattr(node, "_running", None)
        if running is not None and training in running and inference in running:
            for a, b in zip(running[training], running[inference]):
                b.bind(a.value)


def summary_line(name: str, result: dict, k: int = 5) -> str:
    """First / last loss (means of ``k`` steps), time and images/s."""
    losses = result["loss"]
    k = max(1, min(k, len(losses) // 2 or 1))
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    return (f"{name}: loss {first:.4f} -> {last:.4f} (mean of the first / last {k} steps), "
            f"{result['time_s']:.1f} s, {result['images_per_s']:.0f} images/s")
