"""Training speed: full AlignIQL steps/s (diffusion BC + critic), critic-only steps/s and critic + AWR Gaussian
actor steps/s (the work of d3rlpy's IQL step) at batch 256 and 512, with d3rlpy's IQL update measured in the same
run as the reference; peak memory; FLOPs per step and the
fraction of the machine's matmul peak; the seconds to turn a 1M-transition Minari dataset into tensors; and
many seeds in one process (training/multi_seed.py): per-member steps/s of K members trained together on stacked
weights against K single-seed runs stepped one after another in the same run, for K = 1, 2, 4, 8 (batch 256).

    bash benchmarks/setup.sh      # once
    MINARI_DATASETS_PATH=../shared/datasets benchmarks/.venv/bin/python benchmarks/speed.py
    python benchmarks/speed.py --only-members --threads 1             # just the many-seeds rows
    python benchmarks/speed.py --device cuda --members 1 4 16 --only-members
    python benchmarks/speed.py --profile 4 --threads 1                # where a K=4 step spends its time vs K=1

Each measurement runs in its own subprocess so its peak memory is its own. Writes
benchmarks/results/speed_<device>.json (speed_members_<device>.json with --only-members; the profile to
profile_members_<device>.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import RESULTS, count_flops, git_sha, machine, matmul_peak, sync, write_json  # noqa: E402


def write_text(name: str, text: str) -> Path:
    path = RESULTS / name
    path.write_text(text + "\n")
    return path

OBS_DIM, ACT_DIM = 17, 6  # walker2d-shaped synthetic data, as the peer figures in issue 5


def synthetic(n: int, device: str):
    from training.datasets import Transitions

    g = torch.Generator().manual_seed(0)
    t = Transitions(torch.randn(n, OBS_DIM, generator=g), torch.rand(n, ACT_DIM, generator=g) * 2 - 1,
                    torch.randn(n, generator=g), torch.randn(n, OBS_DIM, generator=g), torch.ones(n))
    return t.to(device)


def timed(step, device: str, seconds: float, warmup: int = 10) -> dict:
    """Calls of ``step`` per second over ``seconds`` (after ``warmup`` calls), with its FLOPs per call."""
    flops = count_flops(step)
    for _ in range(warmup):
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        logs = step()
        n += 1
    float(next(iter(logs.values())).sum())  # one host sync, as a logging step would
    sync(device)
    rate = n / (time.perf_counter() - t0)
    return {"steps_per_s": rate, "gflop_per_step": flops / 1e9, "achieved_gflops": rate * flops / 1e9,
            "timed_steps": n}


def build_members(kind: str, members: int, batch: int, device: str, precision: str = "fp32"):
    """One round of ``members`` member-steps: ``stacked`` (one MultiSeedTrainer) or ``sequential`` (K Trainers)."""
    import numpy as np

    from aligniql import AlignIQLAgent, AlignIQLConfig
    from training.multi_seed import MultiSeedTrainer
    from training.trainer import Trainer, TrainerConfig

    config = AlignIQLConfig(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tconf = TrainerConfig(steps=10**6, batch_size=batch, precision=precision)
    data, zeros, ones = synthetic(100_000, "cpu"), np.zeros(OBS_DIM), np.ones(OBS_DIM)
    if kind == "stacked":
        return MultiSeedTrainer.from_seeds(data, config, tconf, list(range(members)), obs_mean=zeros, obs_std=ones,
                                           device=device).train_step
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


def measure_members(kind: str, members: int, batch: int, device: str, seconds: float) -> dict:
    r = timed(build_members(kind, members, batch, device), device, seconds, warmup=3)
    return {"rounds_per_s": r["steps_per_s"], "member_steps_per_s": r["steps_per_s"] * members,
            "gflop_per_round": r["gflop_per_step"], "achieved_gflops": r["achieved_gflops"],
            "timed_rounds": r["timed_steps"]}


def profile_members(members: int, batch: int, device: str, threads: int | None) -> str:
    """torch.profiler's op table of 20 rounds of K stacked members and of 20 single-seed steps: what the time
    goes to (matmuls, elementwise kernels, optimizer) and how it changes when members are stacked."""
    from torch.profiler import ProfilerActivity, profile

    if threads:
        torch.set_num_threads(threads)
    parts = [f"# {machine()['cpu']}, {torch.get_num_threads()} threads, batch {batch}, torch {torch.__version__}"]
    for kind, k in (("sequential", 1), ("stacked", members)):
        step = build_members(kind, k, batch, device)
        for _ in range(5):
            step()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        with profile(activities=activities) as prof:
            for _ in range(20):
                step()
            sync(device)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        parts.append(f"\n## {kind} K={k}: 20 rounds ({20 * k} member-steps)\n{table}")
    return "\n".join(parts)


def measure_ours(kind: str, batch: int, device: str, seconds: float, precision: str = "fp32") -> dict:
    from aligniql import AlignIQLAgent, AlignIQLConfig
    from training.trainer import Trainer, TrainerConfig

    torch.manual_seed(0)
    agent = AlignIQLAgent(AlignIQLConfig(obs_dim=OBS_DIM, act_dim=ACT_DIM, use_gaussian_actor=kind == "critic-awr"))
    agent.set_normalization(torch.zeros(OBS_DIM), torch.ones(OBS_DIM))  # the synthetic data is standard normal
    trainer = Trainer(agent, synthetic(100_000, device),
                      TrainerConfig(steps=10**6, batch_size=batch, precision=precision), device=device)

    # "critic-awr" is the work of d3rlpy's IQL step: V, twin Q, Polyak and the AWR Gaussian actor
    step = {"full": trainer.train_step, "critic": lambda: trainer.update_critic(trainer.sample_batch()),
            "critic-awr": lambda: trainer.update_critic_and_extras(trainer.sample_batch())}[kind]
    return timed(step, device, seconds)


def measure_d3rlpy(batch: int, device: str, seconds: float) -> dict:
    from benchmarks.d3rlpy_iql import _quiet, speed

    _quiet()
    probe = speed(argparse.Namespace(batch_size=batch, steps=50, device="cuda:0" if device == "cuda" else "cpu:0"))
    steps = max(50, int(probe["steps_per_s"] * seconds))
    return speed(argparse.Namespace(batch_size=batch, steps=steps, device="cuda:0" if device == "cuda" else "cpu:0"))


def measure_conversion(source: str) -> dict:
    """Build a 1M-transition dataset by repeating ``source``'s episodes, then time load_dataset + prepare."""
    import tempfile

    import minari
    import numpy as np
    from minari.data_collector import EpisodeBuffer

    from training.datasets import load_dataset, prepare

    src = minari.load_dataset(source)
    episodes = list(src.iterate_episodes())
    reps = -(-1_000_000 // src.total_steps)
    buffers, total = [], 0
    for _ in range(reps):
        for ep in episodes:
            n = min(len(ep.actions), 1_000_000 - total)
            if n <= 0:
                break
            buffers.append(EpisodeBuffer(id=len(buffers), observations=ep.observations[: n + 1], actions=ep.actions[:n],
                                         rewards=ep.rewards[:n], terminations=ep.terminations[:n],
                                         truncations=np.r_[ep.truncations[: n - 1], n < len(ep.actions) or
                                                           ep.truncations[n - 1]], infos={}))
            total += n
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = tmp
        env = src.recover_environment()
        minari.create_dataset_from_buffers("bench/speed/1m-v0", buffers, env=env, ref_min_score=0.0,
                                           ref_max_score=1.0)
        t0 = time.perf_counter()
        data = prepare(load_dataset("bench/speed/1m-v0", download=False))
        seconds = time.perf_counter() - t0
    return {"transitions": len(data.transitions), "episodes": len(buffers), "seconds": seconds}


def one(args: argparse.Namespace) -> None:
    """Child process: one measurement, printed as JSON with this process's peak memory."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one in ("stacked", "sequential"):
        out = measure_members(args.one, args.k, args.batch, args.device, args.seconds)
    elif args.one == "d3rlpy":
        out = measure_d3rlpy(args.batch, args.device, args.seconds)
    elif args.one == "convert":
        out = measure_conversion(args.source)
    elif args.one == "full-bf16":
        out = measure_ours("full", args.batch, args.device, args.seconds, "bf16")
    else:
        out = measure_ours(args.one, args.batch, args.device, args.seconds)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def child(kind: str, batch: int, args: argparse.Namespace, members: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, "--batch", str(batch), "--device", args.device, "--k",
           str(members), "--seconds", str(args.seconds), "--source", args.source] + (
               ["--threads", str(args.threads)] if args.threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{kind} batch {batch} K={members} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def member_rows(args: argparse.Namespace, peak: float) -> list[dict]:
    """Stacked vs sequential, each K, alternating in one run so that both see the same machine."""
    rows = []
    for members in args.members:
        by = {}
        for kind in ("stacked", "sequential"):
            r = {"kind": kind, "members": members, "batch_size": 256, **child(kind, 256, args, members)}
            r["peak_fraction"] = r["achieved_gflops"] * 1e9 / peak
            rows.append(r)
            by[kind] = r
        s, q = by["stacked"], by["sequential"]
        print(f"K={members}: stacked {s['member_steps_per_s']:.1f} member-steps/s ({s['peak_rss_mb']:.0f} MB, "
              f"{s['peak_fraction']:.0%} of peak), {members} single runs {q['member_steps_per_s']:.1f} "
              f"({q['peak_rss_mb']:.0f} MB) -> {s['member_steps_per_s'] / q['member_steps_per_s']:.2f}x", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--source", default="bench/hopper/medium-v0", help="dataset repeated to 1M transitions")
    p.add_argument("--skip-d3rlpy", action="store_true")
    p.add_argument("--skip-conversion", action="store_true")
    p.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8], help="values of K (0: none)")
    p.add_argument("--only-members", action="store_true", help="only the many-seeds rows")
    p.add_argument("--profile", type=int, metavar="K", help="only profile a K-member step against a single one")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return one(args)
    args.members = [k for k in args.members if k > 0]
    if args.threads:  # the peaks are measured with the threads the children use
        torch.set_num_threads(args.threads)
    if args.profile:
        path = write_text(f"profile_members_{args.device.split(':')[0]}.txt",
                          profile_members(args.profile, 256, args.device, args.threads))
        print("wrote", path)
        return
    peak = matmul_peak(args.device, torch.float32)
    if args.only_members:
        result = {"machine": machine(), "git_sha": git_sha(), "device": args.device, "threads": args.threads,
                  "matmul_peak_gflops": peak / 1e9, "members": member_rows(args, peak)}
        print("wrote", write_json(f"speed_members_{args.device.split(':')[0]}.json", result))
        return
    # the bf16 rows against the bf16 peak (their fp32 critic part makes that a lower bound of their efficiency)
    peak_bf16 = matmul_peak(args.device, torch.bfloat16)
    rows = []
    for batch in args.batch_sizes:
        for kind in ["full", "full-bf16", "critic", "critic-awr"] + ([] if args.skip_d3rlpy else ["d3rlpy"]):
            r = {"kind": kind, "batch_size": batch, **child(kind, batch, args)}
            if "achieved_gflops" in r:
                r["peak_fraction"] = r["achieved_gflops"] * 1e9 / (peak_bf16 if kind == "full-bf16" else peak)
            rows.append(r)
            print(json.dumps(r), flush=True)
        by = {r["kind"]: r["steps_per_s"] for r in rows if r["batch_size"] == batch}
        if "d3rlpy" in by:
            print(f"batch {batch}: full {by['full']:.1f}/s (bf16 {by['full-bf16']:.1f}/s), "
                  f"critic {by['critic']:.1f}/s, critic + AWR actor {by['critic-awr']:.1f}/s, d3rlpy IQL "
                  f"{by['d3rlpy']:.1f}/s -> (critic + actor)/d3rlpy {by['critic-awr'] / by['d3rlpy']:.2f}x", flush=True)
    result = {"machine": machine(), "git_sha": git_sha(), "device": args.device, "threads": args.threads,
              "matmul_peak_gflops": peak / 1e9, "matmul_peak_bf16_gflops": peak_bf16 / 1e9, "rows": rows,
              "members": member_rows(args, peak)}
    if not args.skip_conversion:
        result["conversion_1m"] = child("convert", 0, args)
        print(json.dumps(result["conversion_1m"]), flush=True)
    print("wrote", write_json(f"speed_{args.device.split(':')[0]}.json", result))


if __name__ == "__main__":
    main()
