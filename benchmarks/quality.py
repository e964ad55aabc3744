"""Learning quality on the shared datasets: AlignIQL and its extraction variants vs d3rlpy's IQL, same budget.

    bash benchmarks/setup.sh                                   # once: the venv with d3rlpy and matplotlib
    MINARI_DATASETS_PATH=../shared/datasets benchmarks/.venv/bin/python benchmarks/quality.py \
        --datasets bench/hopper/medium-v0 --seeds 0 1 2 --steps 30000 [--together]
    MINARI_DATASETS_PATH=../shared/datasets benchmarks/.venv/bin/python benchmarks/quality.py --engine sweep \
        --datasets bench/hopper/medium-v0 bench/walker2d/medium-v0 --seeds 0 1 2 --cpus-per-trial 1 [--address auto]

For each dataset and seed: one AlignIQL training run (with the AlignIQL-hard multipliers and a Gaussian
weighted-regression actor, so every variant comes from the same checkpoint), its learning curve (the run's
default rule, evaluated every --eval-every steps on the same episode seeds as d3rlpy's curve; runs before that
flag used the training seed's episodes), then a final evaluation of each extraction rule; and d3rlpy's IQL trained
on the same transitions with the same budget and evaluated by the same ``aligniql.evaluate`` (same episode
seeds, same reference scores). Writes benchmarks/results/quality_<dataset>.json and .png.

``--engine local`` (the default) trains the runs in this process, one after another (or a dataset's seeds as
one multi-seed run with --together). ``--engine sweep`` trains every (dataset, seed) as one trial of a Ray Tune
sweep (``training/sweep.py``, the ``[sweep]`` extra): scheduled over this machine's cores or a cluster
(--address auto), checkpointed and retried; rerunning the same command resumes it. Its run directories are under
``<--storage>/sweep-<hash of the settings>/runs/``; the rest (curves, final evaluations, d3rlpy) is the same.
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
    "AlignIQL": {"extraction": "aligniql", "selection": "argmax"},
    "AlignIQL-hard": {"extraction": "aligniql_hard", "selection": "softmax"},
    "IDQL (argmax Q)": {"extraction": "idql", "selection": "argmax"},
    "Gaussian (AWR)": {"extraction": "gaussian"},
    "Diffusion BC (N=1)": {"extraction": "aligniql", "selection": "argmax", "num_samples": 1},
    # IQL's own extracted policy, pi(a|s) ~ mu(a|s) exp(awr_beta A(s, a)), drawn from the N candidates of mu:
    # softmax over Q at T = 1 / the run's awr_beta (V(s) cancels); chosen on the mixed dev sets (benchmarks/README.md)
    "IQL-AWR softmax (T = 1/awr_beta)": {"extraction": "idql", "selection": "softmax", "temperature": "1/awr_beta"},
    # the sharper temperature the pre-registered dev selection picked (narrow + mixed hopper); it lost hopper/medium
    # on seed 1's report, so it is a reported variant, not the default (benchmarks/README.md)
    "IQL-AWR softmax (T = 1/10)": {"extraction": "idql", "selection": "softmax", "temperature": 0.1},
}
DATASETS = ("bench/hopper/medium-v0", "bench/walker2d/medium-v0", "bench/halfcheetah/medium-v0",
            "bench/hopper/medium-expert-v0", "bench/pointmaze/medium-v0", "bench/antmaze/umaze-v0",
            "bench/antmaze/medium-diverse-v0")  # the shared datasets
EVAL_SEED = 100_000  # evaluation episodes never share seeds with training


def metric_name(dataset: str) -> str:
    return "success rate (%)" if "pointmaze" in dataset or "antmaze" in dataset else "normalized score"


def group_dir(dataset: str, args: argparse.Namespace) -> Path:
    return Path(args.runs) / (dataset.replace("/", "_") + (f"_{args.tag}" if args.tag else ""))


def ours_settings(args: argparse.Namespace) -> dict:
    """The TrainConfig fields every AlignIQL run of this benchmark shares, whichever engine trains it."""
    extra = {"behavior_weights": args.behavior_weights} if getattr(args, "behavior_weights", None) else {}
    return dict(batch_size=args.batch_size, multipliers=True, gaussian_actor="awr", eval_every=args.eval_every,
                eval_episodes=args.curve_episodes, device=args.device, save_every=args.eval_every,
                eval_seed=EVAL_SEED, **extra)


def ours_config(dataset: str, seed: int, args: argparse.Namespace, output_dir: Path):
    from training.config import TrainConfig

    return TrainConfig.create(dataset=dataset, steps=args.steps, seed=seed, output_dir=str(output_dir),
                              **ours_settings(args))


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
    from training.train import train

    out = group_dir(dataset, args) / f"seed{seed}"
    config = ours_config(dataset, seed, args, out)
    if args.retrain and not args.together:
        move_finished_run_aside(out)
    if not (out / "results.json").exists():
        # an interrupted benchmark picks up where it stopped
        train(config.replace(resume=(out / "training_state").exists()))
    return evaluate_run(dataset, seed, out, args)


def scoring(args: argparse.Namespace) -> dict:
    """The final evaluation of every variant: --episodes episodes from EVAL_SEED, at --eval-precision. The sweep's
    trials run it on their own agents as they finish (training/sweep.py's score_rules), the local engine here."""
    return {"rules": VARIANTS, "episodes": args.episodes, "seed": EVAL_SEED, "precision": args.eval_precision}


def evaluate_run(dataset: str, seed: int, out: Path, args: argparse.Namespace) -> dict:
    """A seed's entry from its finished run directory, whichever engine trained it: the learning curve from
    metrics.jsonl and every variant scored on the final checkpoint (read back when the trial scored them)."""
    from training.sweep import score_rules

    curve = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        ev = {k[5:]: v for k, v in rec.items() if k.startswith("eval/")}
        if ev:
            curve.append({"step": rec["step"], "score": score_of(ev), "mean_return": ev.get("mean_return")})
    finals = score_rules(out, scoring(args), device=args.device, dataset=dataset)
    for name, final in finals.items():
        print(f"  {dataset} seed {seed} {name:20} score {final['score']:7.2f}", flush=True)
    return {"curve": curve, "final": finals, "run_dir": str(out), "default_extraction": default_extraction(out),
            **training_revision(out)}


def default_extraction(run_dir: Path) -> str | None:
    """The act-time rule the run's ``config.json`` names: the one its learning curve was evaluated with."""
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text()).get("extraction") if path.is_file() else None


# ---------------------------------------------------------------------- --engine sweep
def sweep_spec(args: argparse.Namespace):
    """One trial per (dataset, seed) with this benchmark's settings; each trial scores the variants on its final
    agent (``scoring``) as soon as it is trained, in parallel with the other trials."""
    from training.sweep import SweepSpec

    return SweepSpec(datasets=tuple(args.datasets), seeds=tuple(dict.fromkeys(args.seeds)), steps=args.steps,
                     settings=ours_settings(args), scoring=scoring(args))


def sweep_dir_of(spec, args: argparse.Namespace) -> Path:
    """Named by the hash of the spec (as training/sweep.py names it), so the same command resumes the same sweep
    and another budget or setting never mixes with it."""
    storage = Path(args.storage) if args.storage else Path(args.runs) / "sweep"
    return storage.expanduser().resolve() / spec.default_name()


def train_sweep(spec, args: argparse.Namespace) -> tuple[dict[tuple[str, int], Path], dict]:
    """Train (or resume) every trial of ``spec`` with Ray Tune; returns each (dataset, seed)'s run directory and
    the sweep's wall clock. Every requested seed is a trial, even one whose entry exists, so that the sweep's
    name (and with it what a rerun resumes) depends on the command only."""
    from training.sweep import run_sweep, trials

    sweep_dir = sweep_dir_of(spec, args)
    runs = {(t["dataset"], t["seed"]): Path(t["run_dir"]) for t in trials(spec, sweep_dir)}
    if args.retrain:
        retrain_sweep(sweep_dir, runs.values())
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else float(args.device.startswith("cuda"))
    start = time.monotonic()
    try:
        run_sweep(spec, storage=sweep_dir.parent, name=sweep_dir.name, cpus_per_trial=args.cpus_per_trial,
                  gpus_per_trial=gpus, address=args.address)
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    timing = {"engine": "sweep", "wall_clock_s": time.monotonic() - start, "sweep_dir": str(sweep_dir)}
    return runs, timing


def evaluate_sweep_run(run_dirs: dict[tuple[str, int], Path]):
    """``run_ours`` for runs the sweep trained: only their evaluation is left."""
    return lambda dataset, seed, args: evaluate_run(dataset, seed, run_dirs[dataset, seed], args)


def retrain_sweep(sweep_dir: Path, run_dirs) -> None:
    """--retrain: the finished trials' runs go aside (as the local engine's), and so does Tune's record of the
    experiment, which would otherwise keep them finished; unfinished trials resume from their run directories."""
    from training.sweep import TUNE_DIR

    moved = [move_finished_run_aside(run_dir) for run_dir in run_dirs]
    if any(moved) and (sweep_dir / TUNE_DIR).exists():
        move_aside(sweep_dir / TUNE_DIR)


def move_finished_run_aside(out: Path) -> Path | None:
    """For --retrain: rename a finished run (kept, not deleted: it may be the only copy of an earlier result) so
    the seed trains anew. An unfinished run stays and resumes, so an interrupted --retrain loses nothing."""
    if not (out / "results.json").exists():
        return None
    return move_aside(out)


def move_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.before-retrain-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    print(f"  --retrain: moved {path} aside, to {aside}", flush=True)
    return aside


def training_revision(run_dir: Path) -> dict:
    """The commit, hold-out and CPU of a training run, so that seeds trained by different code (or on different
    CPUs of the machine class) are told apart."""
    path = Path(run_dir) / "train_config.json"
    if not path.is_file():
        return {}
    tc = json.loads(path.read_text())
    return {"git_sha": tc.get("git_sha"), "held_out": tc.get("dataset", {}).get("held_out", 0),
            **({"machine": tc["machine"]} if "machine" in tc else {})}  # runs before it was recorded have none


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


def summarize(dataset: str, per_seed: dict, args: argparse.Namespace, timing: dict | None = None) -> dict:
    table = {}
    methods = list(VARIANTS) + ["d3rlpy IQL"]
    for m in methods:  # a variant added later has only the seeds evaluated since: its row says how many
        scores = [(s["ours"]["final"][m] if m in VARIANTS else s["d3rlpy"]["final"])["score"]
                  for s in per_seed.values()
                  if (m in s.get("ours", {}).get("final", {}) if m in VARIANTS else "d3rlpy" in s)]
        if scores:
            table[m] = seed_stats(scores)
    return {"dataset": dataset, "steps": args.steps, "batch_size": args.batch_size, "episodes": args.episodes,
            "metric": metric_name(dataset), **({"tag": args.tag} if args.tag else {}),
            "table": table, "commits": commits(per_seed), **(timing or {}), "per_seed": per_seed,
            "machine": machine()}


def commits(per_seed: dict) -> list[str | None]:
    """The distinct commits that trained the table's seeds, in seed order; null for a seed whose run did not
    record one, so that one commit in the list means every seed was trained by the same code."""
    seeds = sorted(per_seed, key=int)
    return list(dict.fromkeys(per_seed[s]["ours"].get("git_sha") for s in seeds if "ours" in per_seed[s]))


TIMING_KEYS = ("engine", "wall_clock_s", "sweep_dir")


def load_table(dataset: str, args: argparse.Namespace) -> tuple[str, dict, dict | None]:
    """A dataset's results so far: its file slug, the per-seed entries (less the seeds to --retrain) and the
    timing of the invocation that last trained it."""
    slug = dataset.replace("/", "_") + (f"_{args.tag}" if args.tag else "")
    path = RESULTS / f"quality_{slug}.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    per_seed = saved.get("per_seed", {})
    if args.retrain:  # only our runs of the seeds asked for: the other seeds and d3rlpy's (whose code and
        for seed in args.seeds:  # all-transitions data did not change) stay
            per_seed.get(str(seed), {}).pop("ours", None)
    for entry in per_seed.values():  # seeds written before revisions were kept: read them from their runs
        if "ours" in entry and "git_sha" not in entry["ours"]:
            entry["ours"].update(training_revision(entry["ours"]["run_dir"]))
    timing = {k: saved[k] for k in TIMING_KEYS if k in saved} or None
    return slug, per_seed, timing


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    # the curve is the run's own evaluation, with the rule its config.json names (older entries: AlignIQL's)
    rule = next((s["ours"].get("default_extraction") or "aligniql" for s in summary["per_seed"].values()
                 if "ours" in s), "aligniql")
    for key, label in (("ours", f"ours, extraction={rule}"), ("d3rlpy", "d3rlpy IQL")):
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


def build_parser() -> argparse.ArgumentParser:
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
                   "seeds' results and d3rlpy's stay)")
    p.add_argument("--together", action="store_true",
                   help="train the seeds of a dataset together in one process (train.py --seeds: stacked weights); "
                   "the fast way on a GPU, about even with one process per seed on a CPU")
    p.add_argument("--skip-d3rlpy", action="store_true")
    p.add_argument("--behavior-weights", choices=["none", "awr"],
                   help="train.py --behavior-weights for every AlignIQL run (default: the preset's); use with --tag")
    p.add_argument("--tag", help="keeps a second budget of a dataset apart (e.g. 200k): results go to "
                   "quality_<dataset>_<tag>.json and runs to <runs>/<dataset>_<tag>, as seeds of different budgets "
                   "must not merge")
    engine = p.add_argument_group("engine", "who trains the AlignIQL runs")
    engine.add_argument("--engine", default="local", choices=["local", "sweep"],
                        help="local: in this process; sweep: one Ray Tune trial per (dataset, seed), needs ray[tune]")
    engine.add_argument("--address", help="--engine sweep: the Ray cluster (auto: the one `ray start` runs here); "
                        "default: Ray on this machine alone")
    engine.add_argument("--cpus-per-trial", type=float, help="--engine sweep: CPUs (and torch threads) per trial "
                        "(default: 1)")
    engine.add_argument("--gpus-per-trial", type=float, help="--engine sweep: GPUs per trial (default: 1 with a "
                        "cuda --device, else 0; 0.25 puts four trials on a GPU)")
    engine.add_argument("--storage", help="--engine sweep: where the sweep goes, a path every node can reach "
                        "(default: <runs>/sweep)")
    return p


SWEEP_ONLY = ("address", "cpus_per_trial", "gpus_per_trial", "storage")


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace):
    """Every misuse is reported before anything trains; returns the sweep's spec for --engine sweep."""
    if args.tag is not None and not args.tag.replace("-", "").replace("_", "").isalnum():
        p.error(f"--tag must be letters, digits, '-' or '_' (it names files), got {args.tag!r}")
    sweep_flags = [f"--{name.replace('_', '-')}" for name in SWEEP_ONLY if getattr(args, name) is not None]
    if args.engine == "local":
        if sweep_flags:
            p.error(f"{', '.join(sweep_flags)} need --engine sweep")
        return None
    if args.together:
        p.error("--together is --engine local's (stacked seeds in one process); the sweep trains each seed as a trial")
    if args.cpus_per_trial is None:
        args.cpus_per_trial = 1.0
    if args.cpus_per_trial <= 0 or (args.gpus_per_trial or 0) < 0:
        p.error("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    try:
        return sweep_spec(args)
    except ValueError as e:
        p.error(str(e))


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    spec = check_args(p, args)
    tables = {dataset: load_table(dataset, args) for dataset in args.datasets}
    missing = {d: [s for s in args.seeds if "ours" not in per_seed.get(str(s), {})]
               for d, (_, per_seed, _) in tables.items()}
    ours, sweep_timing = run_ours, None
    if spec is not None and any(missing.values()):
        run_dirs, sweep_timing = train_sweep(spec, args)
        ours = evaluate_sweep_run(run_dirs)
    for dataset in args.datasets:
        slug, per_seed, timing = tables[dataset]
        spent = 0.0  # local: this invocation's AlignIQL runs one after another, their final evaluations included
        if args.together:
            start = time.monotonic()
            train_together(dataset, missing[dataset], args)
            spent += time.monotonic() - start
        for seed in args.seeds:
            entry = per_seed.setdefault(str(seed), {})
            if "ours" not in entry:
                start = time.monotonic()
                entry["ours"] = ours(dataset, seed, args)
                spent += time.monotonic() - start
                timing = sweep_timing or {"engine": "local", "wall_clock_s": spent}
            if not args.skip_d3rlpy and "d3rlpy" not in entry:
                entry["d3rlpy"] = run_d3rlpy(dataset, seed, args)
            summary = summarize(dataset, per_seed, args, timing)
            write_json(f"quality_{slug}.json", summary)  # after every seed: nothing is lost on interruption
            plot(summary, RESULTS / f"quality_{slug}.png")
        for m, row in summarize(dataset, per_seed, args)["table"].items():
            print(f"{dataset:32} {m:20} {row['mean']:7.2f} ± {row['std']:5.2f} ({row['seeds']} seeds)")


if __name__ == "__main__":
    main()
