"""Measuring one step of a benchmark in a child process of its own."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence


def run_measured(cmd: Sequence[str]) -> tuple[int, float, float]:
    """Run ``cmd`` in a child process with idle OpenMP threads sleeping (``OMP_WAIT_POLICY=PASSIVE``, as the
    detect_cell rule sets it before torch loads); returns (exit code, wall seconds, that child's own peak
    resident memory in MB, from ``ru_maxrss`` of ``wait4``, which Linux gives in KiB). A child's ru_maxrss counts
    what it inherited at fork, so the caller should be a small process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    _, status, ru = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, ru.ru_maxrss / 1024.0
