"""What ``batch_invariant=True`` costs: act() on B observations with and without it, calls alternated so that a
busy machine slows both alike; the median of the per-pair ratios (invariant / batched) is the figure.

    python benchmarks/batch_invariance_cost.py [--threads 2] [--batch 1 3 10 64] [--pairs 30]

Writes benchmarks/results/batch_invariance_cost.json. The agent has the default (paper) sizes, hopper dims.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from aligniql import AlignIQLAgent, AlignIQLConfig  # noqa: E402
from benchmarks.common import machine, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 3, 10, 64])
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--pairs", type=int, default=30, help="alternated (batched, invariant) call pairs per batch")
    p.add_argument("--max-seconds", type=float, default=60.0, help="stop a batch size's pairs after this long")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    agent = AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, num_samples=args.num_samples))
    agent.set_normalization(np.zeros(11), np.ones(11))
    rows = []
    for batch in args.batch:
        obs = np.random.default_rng(0).normal(size=(batch, 11)).astype(np.float32)
        seeds = list(range(batch))
        times = {False: [], True: []}
        for invariant in (False, True):  # warm-up
            agent.act(obs, generator=seeds, batch_invariant=invariant)
        start = time.perf_counter()
        for i in range(args.pairs):
            for invariant in ((False, True) if i % 2 == 0 else (True, False)):
                t0 = time.perf_counter()
                agent.act(obs, generator=seeds, batch_invariant=invariant)
                times[invariant].append(time.perf_counter() - t0)
            if time.perf_counter() - start > args.max_seconds and i >= 4:
                break
        ratios = [b / a for a, b in zip(times[False], times[True])]
        row = {"batch": batch, "num_samples": args.num_samples, "pairs": len(ratios),
               "batched_ms_p50": 1e3 * statistics.median(times[False]),
               "invariant_ms_p50": 1e3 * statistics.median(times[True]),
               "ratio_p50": statistics.median(ratios)}
        rows.append(row)
        print(f"batch {batch:4}: batched {row['batched_ms_p50']:8.1f} ms, invariant {row['invariant_ms_p50']:8.1f} ms,"
              f" ratio {row['ratio_p50']:.2f} (median of {len(ratios)} alternated pairs)")
    print("wrote", write_json("batch_invariance_cost.json", {"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
