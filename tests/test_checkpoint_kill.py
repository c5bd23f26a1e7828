"""A process killed with SIGKILL while saving never costs the previous checkpoint (issue 9)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from metalnn.graph.checkpoint import load_arrays, save_arrays

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

# Saves versions 1, 2, 3, ... of a ~4 MiB checkpoint as fast as it can, announcing each.
_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from metalnn.graph.checkpoint import save_arrays
    path, v = sys.argv[1], 1
    print("ready", flush=True)
    while True:
        arrays = {f"layer{i}/weights": np.full((256, 1024), v, np.float32) for i in range(4)}
        save_arrays(path, arrays, {"version": v})
        print(v, flush=True)
        v += 1
""")


def _version(path) -> int:
    arrays, meta = load_arrays(path)
    v = meta["version"]
    assert sorted(arrays) == [f"layer{i}/weights" for i in range(4)]
    for a in arrays.values():  # every array of one version: never a mix
        assert a.shape == (256, 1024) and np.all(a == v)
    return v


@pytest.mark.parametrize("trial", range(6))
def test_sigkill_during_save_keeps_a_loadable_checkpoint(tmp_path, trial):
    path = tmp_path / "model.npz"
    save_arrays(path, {f"layer{i}/weights": np.zeros((256, 1024), np.float32) for i in range(4)}, {"version": 0})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.Random(trial).uniform(0.01, 0.3))  # a random point in some save
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    announced = [int(line) for line in proc.stdout.read().split()]
    proc.stdout.close()
    v = _version(path)
    last = announced[-1] if announced else 0
    # The file holds the last save that completed, or the one in flight if its rename landed.
    assert last <= v <= last + 1
    # Leftover temporary files (the killed save's) never shadow the checkpoint; a new save works.
    save_arrays(path, {f"layer{i}/weights": np.full((256, 1024), 99, np.float32) for i in range(4)},
                {"version": 99})
    assert _version(path) == 99
