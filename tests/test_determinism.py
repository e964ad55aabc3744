"""The determinism promises under other kernel paths and thread counts than the suite's own process uses.

MKL, oneDNN and ATen pick kernels by instruction set, row count and thread count, and the CPU of this
project's machines varies (AMD EPYC, Intel Sapphire Rapids): running the same checks with AVX2 kernels and
with 1 and 2 threads makes an assumption that holds only for one CPU's kernels fail here, not on the next
machine. Each run is a fresh process, as the capability and thread pool are fixed at torch's import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("capability,threads", [("default", 1), ("default", 2), ("avx2", 1), ("avx2", 2)])
def test_determinism_under_kernel_path(capability, threads):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability != "default":
        env["ATEN_CPU_CAPABILITY"] = capability
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "determinism_check.py")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"threads={threads}" in run.stdout, run.stdout
    if capability != "default":
        assert f"capability={capability.upper()}" in run.stdout, run.stdout
