"""Multi-seed training speed (issue 14): per-member steps/s of K members trained together on stacked weights
(training/multi_seed.py) against K single-seed runs stepped one after another in the same process, for
K = 1, 2, 4, 8 at batch 256 (full AlignIQL step, the default networks), with peak memory and the fraction of
the measured matmul peak.

    python benchmarks/multi_seed_speed.py --threads 2
    python benchmarks/multi_seed_speed.py --device cuda --members 1 4 16

Each measurement runs in its own subprocess, so its peak memory is its own. Writes
benchmarks/results/multi_seed_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import count_flops, git_sha, machine, matmul_peak, sync, write_json  # noqa: E402

OBS_DIM, ACT_DIM = 17, 6  # walker2d-shaped synthetic data, as benchmarks/speed.py


def synthetic(n: int):
    from training.datasets import Transitions

    g = torch.Generator().manual_seed(0)
    return Transitions(torch.randn(n, OBS_DIM, generator=g), torch.rand(n, ACT_DIM, generator=g) * 2 - 1,
                       torch.randn(n, generator=g), torch.randn(n, OBS_DIM, generator=g), torch.ones(n))


def build(kind: str, members: int, batch: int, device: str, precision: str):
    """A callable doing one round (``members`` member-steps), and whatever must stay alive for it."""
    import numpy as np

    from aligniql import AlignIQLAgent, AlignIQLConfig
    from training.multi_seed import MultiSeedTrainer
    from training.trainer import Trainer, TrainerConfig

    config = AlignIQLConfig(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tconf = TrainerConfig(steps=10**6, batch_size=batch, precision=precision)
    data, zeros, ones = synthetic(100_000), np.zeros(OBS_DIM), np.ones(OBS_DIM)
    if kind == "stacked":
        trainer = MultiSeedTrainer.from_seeds(data, config, tconf, list(range(members)), obs_mean=zeros,
                                              obs_std=ones, device=device)
        return trainer.train_step
    trainers = []
    for seed in range(members):
        torch.manual_seed(seed)
        agent = AlignIQLAgent(config)
        agent.set_normalization(zeros, ones)
        trainers.append(Trainer(agent, data, tconf, seed=seed, device=device))

    def round_() -> dict:
        logs = {}
        for t in trainers:
            logs = t.train_step()
        return logs

    return round_


def measure(kind: str, members: int, batch: int, device: str, seconds: float, precision: str) -> dict:
    step = build(kind, members, batch, device, precision)
    flops = count_flops(step)
    for _ in range(3):
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        logs = step()
        n += 1
    float(next(iter(logs.values())).sum())  # one host sync, as a logging step would
    sync(device)
    rounds = n / (time.perf_counter() - t0)
    return {"rounds_per_s": rounds, "member_steps_per_s": rounds * members, "gflop_per_round": flops / 1e9,
            "achieved_gflops": rounds * flops / 1e9, "timed_rounds": n}


def one(args: argparse.Namespace) -> None:
    """Child process: one measurement, printed as JSON with this process's peak memory."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = measure(args.one, args.k, args.batch, args.device, args.seconds, args.precision)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def child(kind: str, members: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, "--k", str(members), "--batch", str(args.batch),
           "--device", args.device, "--seconds", str(args.seconds), "--precision", args.precision]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{kind} K={members} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8], help="values of K")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--skip-peak", action="store_true", help="do not measure the matmul peak (a quick check)")
    p.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return one(args)
    if any(k < 1 for k in args.members):
        p.error(f"--members must be >= 1, got {args.members}")
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = None if args.skip_peak else matmul_peak(args.device, torch.float32)
    rows = []
    for members in args.members:
        by = {}
        for kind in ("stacked", "sequential"):
            r = {"kind": kind, "members": members, "batch_size": args.batch, **child(kind, members, args)}
            if peak:
                r["peak_fraction"] = r["achieved_gflops"] * 1e9 / peak
            rows.append(r)
            by[kind] = r
            print(json.dumps(r), flush=True)
        s, q = by["stacked"], by["sequential"]
        print(f"K={members}: stacked {s['member_steps_per_s']:.1f} member-steps/s ({s['peak_rss_mb']:.0f} MB), "
              f"{members} single runs {q['member_steps_per_s']:.1f} ({q['peak_rss_mb']:.0f} MB) -> "
              f"{s['member_steps_per_s'] / q['member_steps_per_s']:.2f}x", flush=True)
    result = {"machine": machine(), "git_sha": git_sha(), "device": args.device, "precision": args.precision,
              "matmul_peak_gflops": None if peak is None else peak / 1e9, "seconds": args.seconds, "rows": rows}
    if args.no_write:
        return
    print("wrote", write_json(f"multi_seed_speed_{args.device.split(':')[0]}.json", result))


if __name__ == "__main__":
    main()
