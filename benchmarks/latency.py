"""act() latency and throughput, and the fraction of the machine's matmul peak it reaches.

    python benchmarks/latency.py                      # CPU: fp32 and bf16, batches 1/64/1024, N 16/64/256
    python benchmarks/latency.py --device cuda        # GPU, with and without the compiled fast path

Writes benchmarks/results/latency_<device>.json. The agent has the default (paper) sizes, hopper dims.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from aligniql import AlignIQLAgent, AlignIQLConfig  # noqa: E402
from benchmarks.common import count_flops, machine, matmul_peak, percentiles, time_calls, write_json  # noqa: E402


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    peaks = {"fp32": matmul_peak(device, torch.float32)}
    if "bf16" in args.precision:
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    rows = []
    for fast in args.fast_path:
        agent = AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3))
        agent.set_normalization(torch.zeros(11), torch.ones(11))  # untrained weights: only the speed matters
        agent = agent.to(device)
        if fast:
            agent.compile()
        for precision in args.precision:
            agent.set_precision(precision)
            for batch, invariant, n in itertools.product(args.batch, args.batch_invariant, args.num_samples):
                obs = torch.randn(batch, 11, device=device) if device.type == "cuda" \
                    else np.random.default_rng(0).normal(size=(batch, 11)).astype(np.float32)
                if batch == 1:
                    obs = obs[0]
                fn = lambda agent=agent, obs=obs, n=n, inv=invariant: agent.act(  # noqa: E731  (bound now)
                    obs, num_samples=n, batch_invariant=inv)
                flops = count_flops(fn)
                est = flops / peaks[precision]
                if est > args.max_seconds_per_call:
                    print(f"skip batch={batch} N={n} {precision}: ~{est:.1f} s per call")
                    continue
                times = time_calls(fn, device=device, min_reps=3 if est > 0.5 else 10,
                                   min_seconds=args.min_seconds)
                stats = percentiles(times)
                row = {"fast_path": fast, "precision": precision, "batch": batch, "num_samples": n,
                       "batch_invariant": invariant,
                       **stats, "actions_per_s": batch / (stats["p50_ms"] / 1e3), "gflop_per_call": flops / 1e9,
                       "peak_fraction": flops / (stats["p50_ms"] / 1e3) / peaks[precision]}
                rows.append(row)
                print(f"fast={fast!s:5} {precision} batch={batch:5} invariant={invariant:d} N={n:4}  "
                      f"p50 {stats['p50_ms']:9.2f} ms  "
                      f"p90 {stats['p90_ms']:9.2f} ms  {row['actions_per_s']:10.0f} actions/s  "
                      f"{row['gflop_per_call']:7.2f} GFLOP  {100 * row['peak_fraction']:5.1f}% of peak")
    return {"machine": machine(), "device": str(device), "matmul_peak_flops": peaks, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024])
    p.add_argument("--num-samples", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--fast-path", type=int, nargs="+", default=None,
                   help="1 = agent.compile(), 0 = eager (default: 0 on CPU, 0 1 on CUDA)")
    p.add_argument("--batch-invariant", type=int, nargs="+", default=[0], choices=[0, 1],
                   help="act(batch_invariant=...): 1 computes each observation alone (0 1: both, side by side)")
    p.add_argument("--max-seconds-per-call", type=float, default=15.0, help="skip settings slower than this")
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--out", help="result file name (default latency_<device>.json, the README's sweep)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fast_path is None:
        args.fast_path = [0, 1] if args.device.startswith("cuda") else [0]
    args.fast_path = [bool(f) for f in args.fast_path]
    args.batch_invariant = [bool(b) for b in args.batch_invariant]
    result = run(args)
    print("wrote", write_json(args.out or f"latency_{torch.device(args.device).type}.json", result))


if __name__ == "__main__":
    main()
