"""The InceptionV3-style and YOLO-style examples train: tiny configurations of each must run end to end
with finite outputs and a falling loss; the same seed gives the same run; the shapes dataset's labels
follow yolo_loss_forward's layout and the detection metric scores perfect predictions as perfect."""

import numpy as np

from metalnn.examples import detector, inception

TINY_INCEPTION = ["--steps", "40", "--batch-size", "16", "--image-size", "32", "--width", "0.5", "--classes", "3",
                  "--train-images", "256", "--test-images", "24", "--quiet"]
TINY_DETECTOR = ["--steps", "40", "--batch-size", "16", "--width", "0.5", "--train-images", "256",
                 "--test-images", "16", "--learning-rate", "5e-3", "--quiet"]


def _falls(losses, k=5):
    losses = np.asarray(losses)
    assert np.isfinite(losses).all(), losses
    assert np.mean(losses[-k:]) < 0.75 * np.mean(losses[:k]), losses


def test_inception_tiny_run_loss_falls(capsys):
    r = inception.main(TINY_INCEPTION)
    assert len(r["loss"]) == 40
    _falls(r["loss"])
    assert r["time_s"] > 0 and np.isfinite(r["images_per_s"]) and r["images_per_s"] > 0
    assert 0.0 <= r["accuracy"] <= 1.0
    out = capsys.readouterr().out
    assert "images/s" in out and "test accuracy" in out


def test_inception_is_deterministic_with_a_seed():
    args = TINY_INCEPTION[:]
    args[1] = "3"  # three steps suffice
    a, b = inception.main(args + ["--seed", "3"]), inception.main(args + ["--seed", "3"])
    np.testing.assert_array_equal(a["loss"], b["loss"])
    c = inception.main(args + ["--seed", "4"])
    assert not np.array_equal(a["loss"], c["loss"])


def test_inception_patterns_are_seeded_and_balanced():
    x1, y1 = inception.make_patterns(60, 6, 16, np.random.default_rng(1))
    x2, y2 = inception.make_patterns(60, 6, 16, np.random.default_rng(1))
    assert x1.shape == (60, 3, 16, 16) and x1.dtype == np.float32 and np.isfinite(x1).all()
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert set(y1.tolist()) == set(range(6))


def test_detector_tiny_run_loss_falls(capsys):
    r = detector.main(TINY_DETECTOR)
    assert len(r["loss"]) == 40
    _falls(r["loss"])
    assert r["time_s"] > 0 and r["images_per_s"] > 0
    for key in ("recall", "false_per_image", "mean_iou"):
        assert np.isfinite(r[key]), (key, r[key])
    assert 0.0 <= r["recall"] <= 1.0 and 0.0 <= r["mean_iou"] <= 1.0 and r["boxes"] > 0
    out = capsys.readouterr().out
    assert "images/s" in out and "of the boxes found" in out


def test_shapes_labels_follow_the_yolo_layout():
    k, anchors = len(detector.SHAPES), detector.ANCHORS
    x, y, boxes = detector.make_shapes(40, np.random.default_rng(2))
    assert x.shape == (40, 3, 64, 64) and y.shape == (40, len(anchors) * (5 + k), 8, 8)
    lab = y.reshape(40, len(anchors), 5 + k, 8, 8)
    conf = lab[:, :, 4]
    assert set(np.unique(conf).tolist()) <= {0.0, 1.0}
    assert int(conf.sum()) == sum(len(b) for b in boxes) and all(1 <= len(b) <= 3 for b in boxes)
    obj = np.moveaxis(lab, 2, -1)[conf == 1]  # (objects, 5 + K)
    assert ((obj[:, :2] >= 0) & (obj[:, :2] < 1)).all() and (obj[:, 2:4] > 0).all()
    np.testing.assert_array_equal(obj[:, 5:].sum(axis=1), 1)
    for i, placed in enumerate(boxes):
        for cls, cx, cy, w, h, gy, gx, a in placed:
            v = lab[i, a, :, gy, gx]
            assert v[4] == 1 and v[5 + cls] == 1
            np.testing.assert_allclose([(gx + v[0]) * 8, (gy + v[1]) * 8, v[2] * 8, v[3] * 8], [cx, cy, w, h],
                                       rtol=1e-5)
            # The shape's colour is painted at its centre (well above the dark background).
            assert x[i, :, int(cy), int(cx)].max() > 0.3


def test_detection_metric_scores_perfect_and_empty_predictions():
    k, a_count = len(detector.SHAPES), len(detector.ANCHORS)
    _, y, boxes = detector.make_shapes(12, np.random.default_rng(5))
    lab = y.reshape(12, a_count, 5 + k, 8, 8)
    # Raw outputs that decode exactly to the labels: logit of X/Y, log of size / anchor, +-10 confidence.
    p = np.zeros_like(lab)
    xy = np.clip(lab[:, :, :2], 1e-4, 1 - 1e-4)
    p[:, :, :2] = np.log(xy / (1 - xy))
    anchor = np.asarray(detector.ANCHORS, np.float32).reshape(1, a_count, 2, 1, 1)
    p[:, :, 2:4] = np.log(np.where(lab[:, :, 2:4] > 0, lab[:, :, 2:4], anchor) / anchor)
    p[:, :, 4] = np.where(lab[:, :, 4] > 0, 10.0, -10.0)
    p[:, :, 5:] = lab[:, :, 5:] * 5
    m = detector.evaluate(p.reshape(y.shape), boxes)
    assert m["recall"] == 1.0 and m["false_per_image"] == 0.0 and m["mean_iou"] > 0.999, m
    # Wrong classes: confident but no hits.
    q = p.copy()
    q[:, :, 5:] = np.roll(lab[:, :, 5:], 1, axis=2) * 5
    assert detector.evaluate(q.reshape(y.shape), boxes)["recall"] == 0.0
    # Confident everywhere: every empty anchor is a false detection.
    q = p.copy()
    q[:, :, 4] = 10.0
    m = detector.evaluate(q.reshape(y.shape), boxes)
    assert m["false_per_image"] == a_count * 64 - m["boxes"] / 12
