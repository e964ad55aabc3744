"""Learning quality on the shared datasets: AlignIQL and its extraction variants vs d3rlpy's IQL, same budget.

    bash benchmarks/setup.sh                                   # once: the venv with d3rlpy and matplotlib
    MINARI_DATASETS_PATH=../shared/datasets benchmarks/.venv/bin/python benchmarks/quality.py \
        --datasets bench/hopper/medium-v0 --seeds 0 1 2 --steps 30000 [--together]

For each dataset and seed: one AlignIQL training run (with the AlignIQL-hard multipliers and a Gaussian
weighted-regression actor, so every variant comes from the same checkpoint), its learning curve (AlignIQL,
evaluated every --eval-every steps on the same episode seeds as d3rlpy's curve; runs before that flag used
the training seed's episodes), then a final evaluation of each extraction rule; and d3rlpy's IQL trained
on the same transitions with the same budget and evaluated by the same ``aligniql.evaluate`` (same episode
seeds, same reference scores). Writes benchmarks/results/quality_<dataset>.json and .png.
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
from benchmarks.common import RESULTS, machine, seed_stats, write_json  # noqa: E402
from training.trainer import score_of  # noqa: E402,F401  (benchmarks/extraction.py imports it from here)

# name -> act() overrides evaluated on the final checkpoint
VARIANTS = {
    "AlignIQL": {"extraction": "aligniql"},
    "AlignIQL-hard": {"extraction": "aligniql_hard", "selection": "softmax"},
    "IDQL (argmax Q)": {"extraction": "idql"},
    "Gaussian (AWR)": {"extraction": "gaussian"},
    "Diffusion BC (N=1)": {"extraction": "aligniql", "num_samples": 1},
}
DATASETS = ("bench/hopper/medium-v0", "bench/walker2d/medium-v0", "bench/halfcheetah/medium-v0",
            "bench/hopper/medium-expert-v0", "bench/pointmaze/medium-v0", "bench/antmaze/umaze-v0",
            "bench/antmaze/medium-diverse-v0")  # the shared datasets
EVAL_SEED = 100_000  # evaluation episodes never share seeds with training


def metric_name(dataset: str) -> str:
    return "success rate (%)" if "pointmaze" in dataset or "antmaze" in dataset else "normalized score"


def group_dir(dataset: str, args: argparse.Namespace) -> Path:
    return Path(args.runs) / (dataset.replace("/", "_") + (f"_{args.tag}" if args.tag else ""))


def ours_config(dataset: str, seed: int, args: argparse.Namespace, output_dir: Path):
    from training.config import TrainConfig

    return TrainConfig.create(dataset=dataset, steps=args.steps, batch_size=args.batch_size, seed=seed,
                              multipliers=True, gaussian_actor="awr", eval_every=args.eval_every,
                              eval_episodes=args.curve_episodes, output_dir=str(output_dir), device=args.device,
                              save_every=args.eval_every, eval_seed=EVAL_SEED)


def train_together(dataset: str, seeds: list[int], args: argparse.Namespace) -> None:
    """--together: the seeds not trained yet, as the members of one multi-seed run (training/multi_seed.py) in
    ``<runs>/<dataset>/``; each member's directory is ``seed<k>/``, as a single run's, so the rest is unchanged."""
    from training.train import train_seeds

    out = group_dir(dataset, args)
    if args.retrain:
        for seed in seeds:
            move_finished_run_aside(out / f"seed{seed}")
    todo = [s for s in seeds if not (out / f"seed{s}" / "results.json").exists()]
    if todo:
        from training import checkpoint

        config = ours_config(dataset, 0, args, out)
        train_seeds(config.replace(resume=checkpoint.has_state(out)), todo)


def run_ours(dataset: str, seed: int, args: argparse.Namespace) -> dict:
    from aligniql import AlignIQLAgent
    from aligniql.evaluation import evaluate
    from training.train import train

    out = group_dir(dataset, args) / f"seed{seed}"
    config = ours_config(dataset, seed, args, out)
    if args.retrain and not args.together:
        move_finished_run_aside(out)
    if not (out / "results.json").exists():
        # an interrupted benchmark picks up where it stopped
        train(config.replace(resume=(out / "training_state").exists()))
    curve = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        ev = {k[5:]: v for k, v in rec.items() if k.startswith("eval/")}
        if ev:
            curve.append({"step": rec["step"], "score": score_of(ev), "mean_return": ev.get("mean_return")})
    agent = AlignIQLAgent.from_pretrained(out, device=args.device).set_precision(args.eval_precision)
    finals = {}
    for name, overrides in VARIANTS.items():
        res = evaluate(agent, dataset, episodes=args.episodes, num_envs=args.episodes, seed=EVAL_SEED, **overrides)
        finals[name] = {"score": score_of(res.to_dict()), **res.to_dict()}
        print(f"  {dataset} seed {seed} {name:20} score {finals[name]['score']:7.2f}", flush=True)
    return {"curve": curve, "final": finals, "run_dir": str(out), **training_revision(out)}


def move_finished_run_aside(out: Path) -> Path | None:
    """For --retrain: rename a finished run (kept, not deleted: it may be the only copy of an earlier result) so
    the seed trains anew. An unfinished run stays and resumes, so an interrupted --retrain loses nothing."""
    if not (out / "results.json").exists():
        return None
    aside = out.with_name(f"{out.name}.before-retrain-{time.strftime('%Y%m%d-%H%M%S')}")
    out.rename(aside)
    print(f"  --retrain: moved the previous run to {aside}", flush=True)
    return aside


def training_revision(run_dir: Path) -> dict:
    """The commit and hold-out of a training run, so that seeds trained by different code are told apart."""
    path = Path(run_dir) / "train_config.json"
    if not path.is_file():
        return {}
    tc = json.loads(path.read_text())
    return {"git_sha": tc.get("git_sha"), "held_out": tc.get("dataset", {}).get("held_out", 0)}


def run_d3rlpy(dataset: str, seed: int, args: argparse.Namespace) -> dict:
    from benchmarks.d3rlpy_iql import _quiet, train

    _quiet()
    ns = argparse.Namespace(dataset=dataset, steps=args.steps, batch_size=args.batch_size, seed=seed,
                            eval_every=args.eval_every, episodes=args.curve_episodes, eval_seed=EVAL_SEED,
                            device="cuda:0" if args.device.startswith("cuda") else "cpu:0")
    res = train(ns)
    curve = [{"step": c["step"], "score": score_of(c | {"normalized_score": c["score"]}),
              "mean_return": c["mean_return"]} for c in res["curve"]]
    # the final score uses as many episodes as the AlignIQL variants
    from aligniql.evaluation import evaluate

    final = evaluate(res["agent"], dataset, episodes=args.episodes, num_envs=args.episodes, seed=EVAL_SEED)
    return {"curve": curve, "final": {"score": score_of(final.to_dict()), **final.to_dict()}}


def summarize(dataset: str, per_seed: dict, args: argparse.Namespace) -> dict:
    table = {}
    methods = list(VARIANTS) + ["d3rlpy IQL"]
    for m in methods:
        scores = [(s["ours"]["final"][m] if m in VARIANTS else s["d3rlpy"]["final"])["score"]
                  for s in per_seed.values() if (m in VARIANTS or "d3rlpy" in s)]
        if scores:
            table[m] = seed_stats(scores)
    return {"dataset": dataset, "steps": args.steps, "batch_size": args.batch_size, "episodes": args.episodes,
            "metric": metric_name(dataset), **({"tag": args.tag} if args.tag else {}),
            "table": table, "per_seed": per_seed, "machine": machine()}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("ours", "AlignIQL"), ("d3rlpy", "d3rlpy IQL")):
        curves = [s[key]["curve"] for s in summary["per_seed"].values() if key in s and s[key]["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [c["step"] for c in curves[0][:n]]
        scores = np.array([[c["score"] for c in cur[:n]] for cur in curves])
        seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
        ax.plot(steps, scores.mean(0), marker="o", label=f"{label} ({seeds})")
        if len(curves) > 1:  # sample std over seeds, as in the tables
            std = scores.std(0, ddof=1)
            ax.fill_between(steps, scores.mean(0) - std, scores.mean(0) + std, alpha=0.2)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"{summary['dataset']} (batch {summary['batch_size']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=30_000, help="gradient steps per run (CPU default; scale up on GPU)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--curve-episodes", type=int, default=5, help="episodes per learning-curve point")
    p.add_argument("--episodes", type=int, default=10, help="episodes of each final evaluation")
    p.add_argument("--eval-precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default="runs/quality", help="where training runs go (resumable)")
    p.add_argument("--retrain", action="store_true",
                   help="train --seeds again (finished runs are moved aside, an interrupted retrain resumes; other "
                   "seeds' results stay)")
    p.add_argument("--together", action="store_true",
                   help="train the seeds of a dataset together in one process (train.py --seeds: stacked weights); "
                   "the fast way on a GPU, about even with one process per seed on a CPU")
    p.add_argument("--skip-d3rlpy", action="store_true")
    p.add_argument("--tag", help="keeps a second budget of a dataset apart (e.g. 200k): results go to "
                   "quality_<dataset>_<tag>.json and runs to <runs>/<dataset>_<tag>, as seeds of different budgets "
                   "must not merge")
    args = p.parse_args(argv)
    if args.tag is not None and not args.tag.replace("-", "").replace("_", "").isalnum():
        p.error(f"--tag must be letters, digits, '-' or '_' (it names files), got {args.tag!r}")
    for dataset in args.datasets:
        slug = dataset.replace("/", "_") + (f"_{args.tag}" if args.tag else "")
        path = RESULTS / f"quality_{slug}.json"
        per_seed = json.loads(path.read_text())["per_seed"] if path.exists() else {}
        if args.retrain:  # only the seeds asked for: the others' results stay
            for seed in args.seeds:
                per_seed.pop(str(seed), None)
        for entry in per_seed.values():  # seeds written before revisions were kept: read them from their runs
            if "ours" in entry and "git_sha" not in entry["ours"]:
                entry["ours"].update(training_revision(entry["ours"]["run_dir"]))
        if args.together:
            train_together(dataset, [s for s in args.seeds if "ours" not in per_seed.get(str(s), {})], args)
        for seed in args.seeds:
            entry = per_seed.setdefault(str(seed), {})
            if "ours" not in entry:
                entry["ours"] = run_ours(dataset, seed, args)
            if not args.skip_d3rlpy and "d3rlpy" not in entry:
                entry["d3rlpy"] = run_d3rlpy(dataset, seed, args)
            summary = summarize(dataset, per_seed, args)
            write_json(f"quality_{slug}.json", summary)  # after every seed: nothing is lost on interruption
            plot(summary, RESULTS / f"quality_{slug}.png")
        for m, row in summarize(dataset, per_seed, args)["table"].items():
            print(f"{dataset:32} {m:20} {row['mean']:7.2f} ± {row['std']:5.2f} ({row['seeds']} seeds)")


if __name__ == "__main__":
    main()
