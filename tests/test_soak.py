"""Short soak (issue 9): a few hundred training steps; memory stays flat after warm-up.
The long run is `python benchmarks/soak.py` (10,000 steps)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from soak import soak, verdict  # noqa: E402


def test_short_soak_memory_is_flat():
    m = soak(steps=400, batch_size=8, width=0.25, warmup=100, progress=False)
    assert verdict(m) == [], m
    assert m["loss_last"] < m["loss_first"]  # it trains


def test_verdict_reports_growth():
    m = {"rss_growth": 0.07, "alloc_warmup": {"bytes_in_use": 10, "bytes_cached": 0},
         "alloc_end": {"bytes_in_use": 12, "bytes_cached": 0}, "all_finite": False}
    problems = verdict(m)
    assert len(problems) == 4 and "RSS grew 7.0%" in problems[0]
