import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
# The suite checks the CPU backend (the reference) unless a test names a device; graphs
# and tensors would otherwise default to the best device present (CUDA on a GPU machine).
os.environ.setdefault("METALNN_DEVICE", "cpu")


def pytest_terminal_summary(terminalreporter):
    """Reports how many fuzz cases ran (the hypothesis suites count them in fuzz_support)."""
    support = sys.modules.get("fuzz_support")
    if support is not None and support.CASES:
        for line in support.summary():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def torch():
    """PyTorch with a CUDA device (tests comparing against it or sharing its memory), else skip."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA")
    return torch


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """Runs a test with 1 and with 2 worker threads (results must not depend on the count)."""
    import metalnn as mnn

    before = mnn.num_threads()
    mnn.set_num_threads(request.param)
    yield request.param
    mnn.set_num_threads(before)
