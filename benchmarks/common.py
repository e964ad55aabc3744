"""Helpers shared by the benchmark scripts: timing, FLOP counting, machine description."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from aligniql.hub import sha256_of as file_sha256  # noqa: F401  (re-exported for the benchmark scripts)
from aligniql.precision import cpu_features, cpu_name
from training.push import git_sha  # noqa: F401  (re-exported for the benchmark scripts)

RESULTS = Path(__file__).resolve().parent / "results"


def seed_stats(scores: list[float]) -> dict:
    """Mean and *sample* standard deviation (ddof 1) over seeds; std 0 for a single seed."""
    mean = statistics.fmean(scores)
    return {"mean": mean, "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "seeds": len(scores),
            "std_ddof": 1}


def versus(ours: dict, theirs: dict) -> str:
    """``ahead``, ``tie`` or ``behind``: the issues' rule, a gap under two standard errors of the difference of
    the seed means (sqrt(s1^2/n1 + s2^2/n2), sample stds) is a tie; ``n/a`` unless both sides have 2+ seeds."""
    if ours["seeds"] < 2 or theirs["seeds"] < 2:
        return "n/a"
    gap = ours["mean"] - theirs["mean"]
    two_se = 2 * math.sqrt(ours["std"] ** 2 / ours["seeds"] + theirs["std"] ** 2 / theirs["seeds"])
    return "tie" if abs(gap) < two_se else ("ahead" if gap > 0 else "behind")


def machine() -> dict:
    cpu = cpu_name()
    info = {"cpu": cpu, "cpu_features": cpu_features(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn, *, device="cpu", min_reps: int = 5, min_seconds: float = 1.0, warmup: int = 2) -> list[float]:
    """Seconds per call, repeated until both ``min_reps`` calls and ``min_seconds`` have passed."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def percentiles(times: list[float]) -> dict:
    qs = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return {"p50_ms": 1e3 * statistics.median(times), "p90_ms": 1e3 * qs[8], "reps": len(times)}


def count_flops(fn) -> int:
    """FLOPs of one call as counted by torch (matmuls and convolutions; 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(device="cpu", dtype=torch.float32, n: int = 2048) -> float:
    """Measured FLOP/s of a large square matmul: the machine's practical ceiling for dense layers."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_calls(lambda: a @ b, device=device, min_reps=5, min_seconds=1.0)
    return 2 * n**3 / min(times)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
