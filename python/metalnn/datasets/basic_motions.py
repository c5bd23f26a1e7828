"""BasicMotions (smart-watch accelerometer + gyroscope, 4 activities) from the ``aeon`` package.

Install the data with ``pip install --no-deps aeon==1.6.0``: the wheel ships
``aeon/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts`` (40 + 40 series of 6
channels x 100 samples at 10 Hz; classes Standing, Running, Walking, Badminton). Nothing is
downloaded at run time, and aeon itself is never imported (its dependencies are not needed):
the files are found through the import system and read by the small ``.ts`` parser below.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["load_basic_motions", "parse_ts"]

_INSTALL = "pip install --no-deps aeon==1.6.0"


def parse_ts(text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parses a multivariate, equal-length ``.ts`` file (sktime/aeon format).

    Header lines start with ``@`` (``@dimensions``, ``@seriesLength``, ``@classLabel true a b c``,
    ``@data``), comments with ``#``. Each data line holds one series: the channels separated by
    ``:``, each a comma-separated list of numbers (``?`` is missing, read as NaN), then the class
    label. Returns ``(x (N, C, L) float32, labels (N,) int64 indices into classes, classes)``.
    """
    dims = length = None
    classes: list[str] = []
    rows: list[np.ndarray] = []
    labels: list[int] = []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise ValueError(f".ts line {lineno}: expected a header line, got {line[:40]!r}")
            key, *rest = line.split()
            key = key.lower()
            if key == "@dimensions":
                dims = int(rest[0])
            elif key == "@serieslength":
                length = int(rest[0])
            elif key == "@classlabel":
                if not rest or rest[0].lower() != "true":
                    raise ValueError(f".ts line {lineno}: only labelled data is supported")
                classes = rest[1:]
            elif key == "@data":
                in_data = True
            continue
        fields = line.split(":")
        label, channels = fields[-1].strip(), fields[:-1]
        if dims is not None and len(channels) != dims:
            raise ValueError(f".ts line {lineno}: expected {dims} channels, got {len(channels)}")
        series = [[float("nan") if v.strip() == "?" else float(v) for v in ch.split(",")] for ch in channels]
        n = len(series[0])
        if any(len(s) != n for s in series) or (length is not None and n != length):
            raise ValueError(f".ts line {lineno}: channels of unequal or unexpected length")
        if label not in classes:
            raise ValueError(f".ts line {lineno}: unknown class label {label!r}")
        rows.append(np.asarray(series, dtype=np.float32))
        labels.append(classes.index(label))
    if not rows:
        raise ValueError(".ts file holds no data")
    return np.stack(rows), np.asarray(labels, dtype=np.int64), classes


def _data_dir() -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"BasicMotions not found: install it with `{_INSTALL}` "
                                "(the package ships the data; nothing is downloaded at run time)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "BasicMotions"
    if not path.is_dir():
        raise FileNotFoundError(f"BasicMotions data missing from the aeon package ({path}); `{_INSTALL}`")
    return path


def load_basic_motions() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(x_train, y_train, x_test, y_test, classes)``: x (40, 6, 100) float32, y int64 in [0, 4)."""
    d = _data_dir()
    x_train, y_train, classes = parse_ts((d / "BasicMotions_TRAIN.ts").read_text())
    x_test, y_test, classes_test = parse_ts((d / "BasicMotions_TEST.ts").read_text())
    if classes_test != classes:
        raise ValueError("BasicMotions: train and test files list different classes")
    return x_train, y_train, x_test, y_test, classes
