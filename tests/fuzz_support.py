"""Shared pieces of the property-based (hypothesis) suites: settings, case counting and
the check that an invalid call raises the documented exception naming its op."""

from __future__ import annotations

import collections
import os

from hypothesis import HealthCheck, settings

# Derandomized: CI runs the same cases every time and a failure reproduces locally;
# METALNN_FUZZ_EXAMPLES=1000 searches longer.
FUZZ = settings(max_examples=int(os.environ.get("METALNN_FUZZ_EXAMPLES", "60")), deadline=None, derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])

#: How many valid / invalid cases ran, per op (printed at the end of the test run).
CASES: collections.Counter = collections.Counter()


def valid(op: str) -> None:
    CASES[(op, "valid")] += 1


def expect_error(op: str, fn, *args, **kwargs) -> Exception:
    """Runs an invalid call: it must raise ValueError or TypeError whose message starts
    with ``[op]`` (anything else -- success, another type, a crash -- fails)."""
    CASES[(op, "invalid")] += 1
    try:
        fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        assert str(e).startswith(f"[{op}]"), f"{op}: message does not name the op: {e}"
        return e
    raise AssertionError(f"{op}: invalid input was accepted: args={args!r} kwargs={kwargs!r}")


def summary() -> list[str]:
    ops = sorted({op for op, _ in CASES})
    total_valid = sum(v for (_, kind), v in CASES.items() if kind == "valid")
    total_invalid = sum(v for (_, kind), v in CASES.items() if kind == "invalid")
    lines = [f"fuzz: {total_valid} valid and {total_invalid} invalid cases over {len(ops)} ops"]
    lines += [f"  {op}: {CASES[(op, 'valid')]} valid, {CASES[(op, 'invalid')]} invalid" for op in ops]
    return lines
