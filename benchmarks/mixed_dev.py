"""Choosing the default on the mixed-quality dev suite (issue: quality where extraction matters).

    MINARI_DATASETS_PATH=/work/main/benchmarks/.data/datasets MUJOCO_GL=egl python benchmarks/mixed_dev.py \
        --dataset mixed/hopper/medium-random-v0 --seeds 0 --threads 1        # one process per seed, in parallel
    python benchmarks/mixed_dev.py --dataset mixed/hopper/medium-random-v0 --report   # the table over seeds

Per seed: one full training run (behaviour model + the default critic, τ = 0.7, with the AlignIQL-hard multipliers
and IQL's AWR Gaussian actor), then one critic-only run per other critic point (expectile τ, critic updates
per step), each reusing the full run's frozen behaviour model (``--behavior-from``: IQL's critic never reads the
behaviour policy, so the behaviour model is a constant of the comparison and each point costs a critic's
training). Every act-time rule is then evaluated on every point's agent, on the dev evaluation seeds
(``DEV_EVAL_SEED``: neither the training seeds nor the report seeds of benchmarks/quality.py). The held-out
validation losses of each critic are recorded next to its scores. Nothing is selected here: the script records
every point; the choice and its protocol are in benchmarks/README.md.

d3rlpy's IQL is the reference: ``benchmarks/.venv/bin/python benchmarks/d3rlpy_iql.py train --dataset <id> --steps
30000 --seed <k> --eval-seed 200000 --episodes 10 > benchmarks/results/mixed_dev/<dataset>_d3rlpy_seed<k>.json``.

Runs are resumable (finished runs and evaluations are kept in ``<runs>`` and in
``benchmarks/results/mixed_dev/<dataset>_seed<k>.json``, written after every evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import RESULTS, machine, seed_stats, versus  # noqa: E402

DEV_EVAL_SEED = 200_000
OUT = RESULTS / "mixed_dev"
# critic points: name -> TrainConfig fields of its critic-only run; "tau0.7" is the full run's own critic.
# tau0.7_noln: V without the input LayerNorm of the official launchers (paper-era IDQL and d3rlpy have none),
# with the AWR Gaussian actor, to see whether the critic is what separates us from d3rlpy's IQL on mixed data
POINTS = {"tau0.7": {}, "tau0.8": {"expectile": 0.8}, "tau0.9": {"expectile": 0.9},
          "tau0.95": {"expectile": 0.95}, "tau0.9_cu3": {"expectile": 0.9, "critic_updates": 3},
          "tau0.7_noln": {"value_layer_norm": False, "gaussian_actor": "awr"},
          # and d3rlpy's actor-side choices on top of it: nn.Linear's default init of every MLP (ours: Xavier,
          # zero bias), then also its sigmoid-mapped log-std that starts at -1.5 (ours: clipped, starts at 0)
          "tau0.7_noln_torchinit": {"value_layer_norm": False, "gaussian_actor": "awr", "init": "torch"},
          "tau0.7_d3actor": {"value_layer_norm": False, "gaussian_actor": "awr", "init": "torch",
                             "actor_log_std": "sigmoid"},
          # the expectile again, without V's LayerNorm (not run)
          "tau0.8_noln": {"expectile": 0.8, "value_layer_norm": False},
          "tau0.9_noln": {"expectile": 0.9, "value_layer_norm": False},
          # a full run, not critic-only: the behaviour model itself changes (advantage-weighted denoising, IQL's
          # AWR weights at awr_beta 3); its critic is the tau0.7 run's, bit for bit (same seed, no RNG shared)
          "tau0.7_awd": {"behavior_weights": "awr"}}
FULL_POINTS = ("tau0.7", "tau0.7_awd")
# act-time rules evaluated on every point: name -> act() overrides
RULES = {
    "AlignIQL argmax N=64 (paper default)": {"extraction": "aligniql", "selection": "argmax"},
    "IDQL argmax Q N=64": {"extraction": "idql", "selection": "argmax"},
    "AlignIQL-hard sampled N=64": {"extraction": "aligniql_hard", "selection": "softmax"},
}
# names results were saved under before the package's default moved to argmax Q: read as their current names
RENAMED_RULES = {"AlignIQL argmax N=64 (default)": "AlignIQL argmax N=64 (paper default)"}


def load_seed(path: Path) -> dict:
    """One seed's saved state, with rules saved under an old name (:data:`RENAMED_RULES`) under the current one."""
    state = json.loads(path.read_text())
    for record in state.get("points", {}).values():
        scores = record.get("scores", {})
        for old, new in RENAMED_RULES.items():
            if old in scores:
                scores.setdefault(new, scores.pop(old))
    return state


# rules evaluated on the tau0.9 point only (the a-priori candidate for a new default) and the full run
EXTRA_RULES = {
    "AlignIQL argmax N=16": {"extraction": "aligniql", "selection": "argmax", "num_samples": 16},
    "AlignIQL softmax N=64, T = spread": {"extraction": "aligniql", "selection": "softmax", "temperature": "spread"},
    "IDQL expectile softmax N=64": {"extraction": "idql_expectile", "selection": "softmax"},
}
# more candidates for the greedy rule: on mixed data few of a state's candidates come from the good behaviour
WIDE_RULES = {"IDQL argmax Q N=256": {"extraction": "idql", "num_samples": 256}}
# IQL's AWR policy over the candidates: p ~ exp(awr_beta Q) = exp(awr_beta A) per state, the locomotion awr_beta 3;
# softer than argmax Q, whose pick of the largest of 64 noisy Q values favours the critic's errors
# and the grid between it and argmax Q (T -> 0), for a choice that holds on the mixed and the narrow dev sets
AWR_RULES = {f"IDQL softmax Q N=64, T = 1/{k}": {"extraction": "idql", "selection": "softmax", "temperature": 1 / k}
             for k in (3, 10, 30)}
# rules that do not depend on the critic point: evaluated on the full run only
BEHAVIOUR_RULES = {
    "Diffusion BC (N=1)": {"extraction": "aligniql", "selection": "argmax", "num_samples": 1},
    "Gaussian (AWR, tau 0.7)": {"extraction": "gaussian"},
}

# rules beyond RULES, per point: the behaviour-only rules on the full run, the extra ones where they were asked
POINT_RULES = {
    "tau0.7": BEHAVIOUR_RULES | EXTRA_RULES | AWR_RULES,
    "tau0.9": EXTRA_RULES,
    "tau0.7_awd": {k: v for k, v in (BEHAVIOUR_RULES | EXTRA_RULES).items()
                   if k in ("Diffusion BC (N=1)", "IDQL expectile softmax N=64")} | AWR_RULES,
    "tau0.7_noln": {k: v for k, v in (BEHAVIOUR_RULES | EXTRA_RULES).items()
                    if k in ("Gaussian (AWR, tau 0.7)", "IDQL expectile softmax N=64")} | WIDE_RULES,
    "tau0.7_noln_torchinit": {"Gaussian (AWR, tau 0.7)": BEHAVIOUR_RULES["Gaussian (AWR, tau 0.7)"]},
    "tau0.7_d3actor": {"Gaussian (AWR, tau 0.7)": BEHAVIOUR_RULES["Gaussian (AWR, tau 0.7)"]},
}


def slug(dataset: str) -> str:
    return dataset.replace("/", "_")


def full_config(dataset: str, seed: int, args: argparse.Namespace):
    from training.config import TrainConfig

    # pinned (expectile, preset): the points must not move if the package defaults change
    return TrainConfig.create(dataset=dataset, steps=args.steps, batch_size=args.batch_size, seed=seed,
                              expectile=0.7, preset="paper", multipliers=True, gaussian_actor="awr",
                              eval_every=10_000, eval_episodes=5,
                              eval_seed=DEV_EVAL_SEED, save_every=5000, threads=args.threads, video=False,
                              output_dir=str(Path(args.runs) / slug(dataset) / "tau0.7" / f"seed{seed}"))


def behavior_seed(seed: int, args: argparse.Namespace) -> int:
    """The seed whose full run's behaviour model a critic-only point of ``seed`` reuses (``--behavior-seed``)."""
    return seed if args.behavior_seed is None else args.behavior_seed


def train_point(dataset: str, seed: int, point: str, args: argparse.Namespace) -> Path:
    from training.train import train

    full = full_config(dataset, seed, args)
    out = Path(args.runs) / slug(dataset) / point / f"seed{seed}"
    if point in FULL_POINTS:
        config = full.replace(output_dir=str(out), **POINTS[point])
    else:
        behavior = full_config(dataset, behavior_seed(seed, args), args).run.output_dir
        config = full.replace(**{"gaussian_actor": None, "eval_episodes": 0, "behavior_from": behavior,
                                 "output_dir": str(out), **POINTS[point]})
    if not (out / "results.json").exists():
        t0 = time.perf_counter()
        train(config.replace(resume=(out / "training_state").exists()))
        print(f"  trained {point} seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def last_validation(run_dir: Path) -> dict[str, float]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "val/value" in r][-1]
    return {k: last[k] for k in ("val/bc", "val/value", "val/q") if k in last}


def spread_temperature(agent, dataset: str) -> float:
    """The median over 256 dataset states of the std of AlignIQL's log-weights among a state's 64 candidates:
    a softmax at this temperature is neither argmax nor uniform, whatever the reward scale."""
    import torch

    from training.datasets import load_dataset, prepare

    data = prepare(load_dataset(dataset, download=False)).transitions
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:256]
    obs = data.obs[rows].numpy()
    cand = agent.candidates(obs, num_samples=64, extraction="aligniql", generator=torch.Generator().manual_seed(0))
    return float(cand.log_weights.std(dim=1).median())


def evaluate_rules(run_dir: Path, rules: dict, dataset: str, record: dict, save, args) -> None:
    """Score each rule not in ``record["scores"]`` yet, calling ``save()`` after each (nothing is lost)."""
    import torch

    from aligniql import AlignIQLAgent
    from aligniql.evaluation import evaluate
    from training.trainer import score_of

    agent = AlignIQLAgent.from_pretrained(run_dir)
    for name, overrides in rules.items():
        if name in record["scores"]:
            continue
        overrides = dict(overrides)
        if overrides.get("temperature") == "spread":
            if "spread_temperature" not in record:
                record["spread_temperature"] = spread_temperature(agent, dataset)
            overrides["temperature"] = record["spread_temperature"]
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            res = evaluate(agent, dataset, episodes=args.episodes, num_envs=args.episodes, seed=DEV_EVAL_SEED,
                           batch_invariant=False, **overrides).to_dict()
        record["scores"][name] = {"score": score_of(res), "returns": res["returns"], "lengths": res["lengths"],
                                  "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  {run_dir.parent.name:12} {name:36} {record['scores'][name]['score']:7.2f}", flush=True)
        save()


def run_seed(dataset: str, seed: int, args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from aligniql.hub import atomic_write_text

    path = Path(args.out) / f"{slug(dataset)}_seed{seed}.json"
    state = load_seed(path) if path.exists() else {
        "dataset": dataset, "seed": seed, "steps": args.steps, "batch_size": args.batch_size,
        "episodes": args.episodes, "eval_seed": DEV_EVAL_SEED, "points": {}, "machine": machine()}
    path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        atomic_write_text(path, json.dumps(state, indent=1) + "\n")

    for point in args.points:
        run_dir = train_point(dataset, seed, point, args)
        record = state["points"].setdefault(point, {"scores": {}})
        record["validation"] = last_validation(run_dir)
        record["git_sha"] = json.loads((run_dir / "train_config.json").read_text()).get("git_sha")
        if point not in FULL_POINTS and behavior_seed(seed, args) != seed:
            record["behavior_seed"] = behavior_seed(seed, args)
        rules = RULES | POINT_RULES.get(point, {})
        if args.rules:  # a subset now; the rest can be scored later by the same command (the state is kept)
            rules = {k: v for k, v in rules.items() if k in args.rules}
        evaluate_rules(run_dir, rules, dataset, record, save, args)


def report(dataset: str, out: Path = OUT) -> dict:
    """Mean ± sample std over the seeds found, per (point, rule); writes mixed_dev/<dataset>.json and .md."""
    seeds = [load_seed(p) for p in sorted(out.glob(f"{slug(dataset)}_seed*.json"))]
    table: dict[str, dict[str, dict]] = {}
    val: dict[str, dict[str, float]] = {}
    for point in POINTS:
        for name in {**RULES, **EXTRA_RULES, **WIDE_RULES, **AWR_RULES, **BEHAVIOUR_RULES}:
            scores = [s["points"][point]["scores"][name]["score"] for s in seeds
                      if point in s["points"] and name in s["points"][point]["scores"]]
            if scores:
                table.setdefault(point, {})[name] = seed_stats(scores)
        vals = [s["points"][point]["validation"] for s in seeds if point in s["points"]]
        if vals:
            val[point] = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
    # d3rlpy's IQL on the same data, budget and dev evaluation seeds: benchmarks/d3rlpy_iql.py train --dataset
    # <id> --steps 30000 --seed k --eval-seed 200000 --episodes 10, its JSON line saved as <dataset>_d3rlpy_seed<k>.json
    d3 = [json.loads(p.read_text()) for p in sorted(out.glob(f"{slug(dataset)}_d3rlpy_seed*.json"))]
    if d3:
        table["d3rlpy IQL"] = {"d3rlpy IQL (tau 0.7, AWR actor)": seed_stats([r["final"]["normalized_score"]
                                                                                for r in d3])}
    summary = {"dataset": dataset, "seeds": [s["seed"] for s in seeds], "table": table, "validation": val,
               "eval_seed": DEV_EVAL_SEED, "d3rlpy_seeds": [r["seed"] for r in d3]}
    baseline = next(iter(table.get("d3rlpy IQL", {}).values()), None)
    lines = [f"# {dataset}: seeds {summary['seeds']}, dev evaluation seeds {DEV_EVAL_SEED}+", "",
             "| critic point | rule | score (mean ± std) | seeds | vs d3rlpy IQL (2 SE) | val/value | val/q |",
             "|---|---|---|---|---|---|---|"]
    for point, rows in table.items():
        for name, row in rows.items():
            v = val.get(point, {})
            vs = "" if baseline is None or point == "d3rlpy IQL" else versus(row, baseline)
            row["vs_d3rlpy"] = vs or None
            lines.append(f"| {point} | {name} | {row['mean']:.1f} ± {row['std']:.1f} | {row['seeds']} | {vs} | "
                         f"{v.get('val/value', float('nan')):.4f} | {v.get('val/q', float('nan')):.4f} |")
    borrowed = {f"{point} seed {s['seed']}": s["points"][point]["behavior_seed"] for s in seeds
                for point in s["points"] if "behavior_seed" in s["points"][point]}
    if borrowed:
        summary["behavior_seed"] = borrowed
        lines += ["", "Critic-only runs that reuse another seed's behaviour model (only the diffusion rules read it): "
                  + ", ".join(f"{k} from seed {v}" for k, v in borrowed.items())]
    (out / f"{slug(dataset)}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / f"{slug(dataset)}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(summary, out / f"{slug(dataset)}.png")
    return summary


def plot(summary: dict, path: Path) -> None:
    """One group of bars per critic point, one bar per rule (mean ± sample std over seeds); needs matplotlib
    (the benchmark venv has it), else nothing is drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rules = list(dict.fromkeys(name for rows in summary["table"].values() for name in rows))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(rules))
    colors = plt.get_cmap("tab20" if len(rules) > 10 else "tab10")  # tab10 repeats its colours after 10 rules
    for i, name in enumerate(rules):
        xs, means, stds = [], [], []
        for j, rows in enumerate(summary["table"].values()):
            if name in rows:
                xs.append(j + i * width)
                means.append(rows[name]["mean"])
                stds.append(rows[name]["std"])
        ax.bar(xs, means, width, yerr=stds, label=name, capsize=2, color=colors(i % colors.N))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(summary["table"]))], list(summary["table"]))
    ax.set_ylabel("normalized score (dev seeds)")
    ax.set_title(f"{summary['dataset']}: seeds {summary['seeds']} (some points have fewer: see the .md)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS))
    p.add_argument("--rules", nargs="+", choices=list(RULES | EXTRA_RULES | WIDE_RULES | AWR_RULES | BEHAVIOUR_RULES),
                   help="score only these act-time rules (default: every rule of each point)")
    p.add_argument("--behavior-seed", type=int, default=None,
                   help="critic-only points reuse this seed's full run's behaviour model (default: their own "
                        "seed's); the Gaussian actor never reads it, the diffusion rules do")
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--runs", default="runs/dev")
    p.add_argument("--out", default=str(OUT), help="where the per-seed and aggregate results go")
    p.add_argument("--report", action="store_true", help="only aggregate the per-seed files")
    args = p.parse_args(argv)
    if args.report:
        report(args.dataset, Path(args.out))
        return
    for seed in args.seeds:
        run_seed(args.dataset, seed, args)


if __name__ == "__main__":
    main()
