"""Train a small YOLO-style detector on generated shapes and report a detection metric.

    python -m metalnn.examples.detector [--steps 400] [--batch-size 32] [--device cpu|cuda] [--seed 0]

Data: 64x64 RGB images holding 1-3 filled squares, circles and triangles (the classes) of
random size, colour and position on a noisy background, generated from ``--seed``. Targets
follow :func:`metalnn.ops.yolo_loss_forward`'s layout over an 8x8 grid with 2 anchors: per
anchor ``X Y W H C F_1..F_K``; the anchor whose shape best matches a box (IoU of the sizes)
in the cell holding the box's centre gets ``C = 1``, the centre within the cell, the size in
grid cells and a one-hot class.

Network: four conv 3x3 + batch norm + leaky ReLU layers, three of them followed by 2x2 max
pooling (64 -> 8), and a 1x1 convolution head with ``anchors * (5 + classes)`` channels;
YOLOLossNode; Adam. The training graph is derived from the loss node. Prints the loss per
step, images/s, time, then on fresh images: the fraction of true boxes whose cell/anchor has
confidence ``sigmoid(C) > 0.5`` and the right class (recall), the false detections per image
and the mean IoU of the predicted boxes at the true boxes' anchors.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import graph as g
from .. import num_threads, set_num_threads
from ..graph.data_source import ConvolutionWeights
from ..graph.optimizers import Adam
from ..ops.loss import YOLOLossDescriptor
from ._loop import Progress, add_run_arguments, check_run_arguments, share_parameters, summary_line, train

SHAPES = ("square", "circle", "triangle")
ANCHORS = ((1.5, 1.5), (2.6, 2.6))  # (width, height) in grid cells


def _iou_wh(w1, h1, w2, h2):
    """IoU of two boxes with the same centre."""
    inter = np.minimum(w1, w2) * np.minimum(h1, h2)
    return inter / (w1 * h1 + w2 * h2 - inter)


def _iou(a, b):
    """IoU of boxes (cx, cy, w, h) (broadcasting over the leading axes)."""
    ax0, ax1 = a[..., 0] - a[..., 2] / 2, a[..., 0] + a[..., 2] / 2
    ay0, ay1 = a[..., 1] - a[..., 3] / 2, a[..., 1] + a[..., 3] / 2
    bx0, bx1 = b[..., 0] - b[..., 2] / 2, b[..., 0] + b[..., 2] / 2
    by0, by1 = b[..., 1] - b[..., 3] / 2, b[..., 1] + b[..., 3] / 2
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * \
        np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter + 1e-12)


def make_shapes(n: int, rng: np.random.Generator, size: int = 64, grid: int = 8, max_objects: int = 3,
                anchors=ANCHORS) -> tuple[np.ndarray, np.ndarray, list]:
    """``n`` images (n, 3, size, size) float32, YOLO labels (n, A * (5 + K), grid, grid) and the
    boxes per image as (class, cx, cy, w, h, cell_y, cell_x, anchor) in pixels. Boxes overlap
    little (IoU < 0.1) and no two share a cell and anchor."""
    k, a_count, cell = len(SHAPES), len(anchors), size / grid
    images = rng.normal(0.1, 0.08, (n, 3, size, size)).astype(np.float32)
    labels = np.zeros((n, a_count, 5 + k, grid, grid), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    boxes: list = []
    for i in range(n):
        placed: list = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(20):
                cls = int(rng.integers(0, k))
                s = float(rng.uniform(10, 24))
                cx, cy = (float(v) for v in rng.uniform(s / 2, size - s / 2, 2))
                gy, gx = int(cy // cell), int(cx // cell)
                gw, gh = s / cell, s / cell
                anchor = int(np.argmax([_iou_wh(gw, gh, aw, ah) for aw, ah in anchors]))
                box = np.array([cx, cy, s, s])
                if all(_iou(box, np.array(p[1:5])) < 0.1 and (p[5], p[6], p[7]) != (gy, gx, anchor) for p in placed):
                    break
            else:
                continue  # no room left in this image
            placed.append((cls, cx, cy, s, s, gy, gx, anchor))
            colour = rng.uniform(0.4, 1.0, 3).astype(np.float32)
            if SHAPES[cls] == "square":
                mask = (np.abs(xx - cx) <= s / 2) & (np.abs(yy - cy) <= s / 2)
            elif SHAPES[cls] == "circle":
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= (s / 2) ** 2
            else:  # triangle pointing up, filling its box
                t = (yy - (cy - s / 2)) / s
                mask = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * s / 2)
            images[i][:, mask] = colour[:, None]
            lab = labels[i, anchor, :, gy, gx]
            lab[0], lab[1] = cx / cell - gx, cy / cell - gy
            lab[2], lab[3], lab[4] = gw, gh, 1.0
            lab[5 + cls] = 1.0
        boxes.append(placed)
    images += rng.normal(0, 0.03, images.shape).astype(np.float32)
    return images, labels.reshape(n, a_count * (5 + k), grid, grid), boxes


def detector_network(optimizer, *, seed: int = 0, width: float = 1.0, anchors=ANCHORS):
    """Builds the nodes; returns (source, head output, loss node, descriptor)."""
    k, a_count = len(SHAPES), len(anchors)
    src = g.ImageNode("images")
    x, cin = src, 3
    for i, (c, pool) in enumerate([(16, True), (32, True), (48, True), (64, False)], start=1):
        c = max(2, int(round(c * width)))
        conv = g.ConvolutionNode(x, ConvolutionWeights(cin, c, 3, bias=False, optimizer=optimizer, seed=seed * 100 + i,
                                                       label=f"conv{i}"), label=f"conv{i}")
        bn = g.BatchNormalizationNode(conv.result, g.BatchNormalizationWeights(c, optimizer=optimizer,
                                                                               label=f"conv{i}.bn"))
        x = g.NeuronLeakyReLUNode(bn.result, a=0.1, label=f"conv{i}.leaky").result
        if pool:
            x = g.PoolingMaxNode(x, 2, 2, label=f"pool{i}").result
        cin = c
    channels = a_count * (5 + k)
    # Confidence logits start at -3 (sigmoid 0.05): most anchors hold no object.
    bias = np.zeros(channels, np.float32)
    bias[4::5 + k] = -3.0
    head = g.ConvolutionNode(x, ConvolutionWeights(cin, channels, 1, optimizer=optimizer, seed=seed * 100 + 99,
                                                   weights_init="glorot", bias=bias, label="head"), label="head")
    descriptor = YOLOLossDescriptor(anchor_boxes=anchors, num_classes=k, scale_xy=5.0, scale_wh=5.0,
                                    scale_no_object=1.0, scale_object=5.0, scale_class=1.0, rescore=False,
                                    reduction="sum")
    loss = g.YOLOLossNode(head.result, descriptor, label="yolo_loss")
    return src, head.result, loss, descriptor


def evaluate(predictions: np.ndarray, boxes: list, anchors=ANCHORS, grid: int = 8, size: int = 64,
             threshold: float = 0.5) -> dict:
    """Recall (true boxes whose cell/anchor has sigmoid(C) > threshold and the right class), false
    detections per image (other anchors above the threshold) and the mean IoU of the predicted box at
    each true box's anchor."""
    n, k, a_count = len(boxes), len(SHAPES), len(anchors)
    p = predictions.reshape(n, a_count, 5 + k, grid, grid).astype(np.float64)
    conf = 1 / (1 + np.exp(-p[:, :, 4]))
    cell = size / grid
    hits = total = 0
    ious = []
    positive = np.zeros_like(conf, dtype=bool)
    for i, placed in enumerate(boxes):
        for cls, cx, cy, w, h, gy, gx, a in placed:
            total += 1
            positive[i, a, gy, gx] = True
            q = p[i, a, :, gy, gx]
            hits += int(conf[i, a, gy, gx] > threshold and int(np.argmax(q[5:])) == cls)
            pred = np.array([(gx + 1 / (1 + np.exp(-q[0]))) * cell, (gy + 1 / (1 + np.exp(-q[1]))) * cell,
                             anchors[a][0] * np.exp(q[2]) * cell, anchors[a][1] * np.exp(q[3]) * cell])
            ious.append(float(_iou(pred, np.array([cx, cy, w, h]))))
    false = int(np.sum((conf > threshold) & ~positive))
    return {"recall": hits / max(total, 1), "false_per_image": false / max(n, 1),
            "mean_iou": float(np.mean(ious)) if ious else 0.0, "boxes": total}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--learning-rate", type=float, default=3e-3, help="Adam learning rate")
    add_run_arguments(p, 4096, "fresh images for the detection metric")
    args = p.parse_args(argv)
    check_run_arguments(p, args)
    return args


def main(argv=None) -> dict:
    """Trains; returns {"loss": per-step loss per image, "time_s", "images_per_s", "recall",
    "false_per_image", "mean_iou", ...}."""
    args = parse_args(argv)
    if args.threads:
        set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    x_train, y_train, _ = make_shapes(args.train_images, rng)
    x_test, _, test_boxes = make_shapes(args.test_images, rng)
    opt = Adam(learning_rate=args.learning_rate)
    src, head, loss, _ = detector_network(opt, seed=args.seed, width=args.width)
    training = g.Graph.training(loss, device=args.device)
    inference = g.Graph(head, device=args.device)
    bs, n = args.batch_size, len(x_train)
    share_parameters(training, inference, x_train[:bs], y_train[:bs])
    order = np.concatenate([rng.permutation(n) for _ in range((args.steps * bs) // n + 1)])
    print(f"metalnn: YOLO-style detector on {training.device}, {len(SHAPES)} classes, {len(ANCHORS)} anchors, "
          f"8x8 grid, batch {bs}, {args.steps} steps, {num_threads()} thread(s)", flush=True)

    def batch(i):
        idx = order[i * bs:(i + 1) * bs]
        return x_train[idx], y_train[idx]

    # The loss is summed over the batch; the history holds it per image.
    result = train(training, batch, args.steps, bs, Progress(args.steps, "detector", args.quiet, args.log_every),
                   loss_scale=1.0 / bs)
    training.synchronize()
    preds = np.concatenate([np.asarray(inference.run(np.ascontiguousarray(x_test[i:i + 128])).result)
                            for i in range(0, len(x_test), 128)])
    metric = evaluate(preds, test_boxes)
    print(summary_line("detector (loss per image)", result))
    print(f"on {args.test_images} fresh images ({metric['boxes']} boxes): {metric['recall'] * 100:.1f}% of the boxes "
          f"found (confidence > 0.5 at their cell/anchor, right class), {metric['false_per_image']:.2f} false "
          f"detections per image, mean IoU at the true anchors {metric['mean_iou']:.2f}")
    result.update(metric, device=str(training.device), steps=args.steps, batch_size=bs)
    return result


if __name__ == "__main__":
    main()
