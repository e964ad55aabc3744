"""Sweeps on Ray Tune: datasets x seeds x hyperparameter points, one trial each, on one machine or a cluster.

    pip install -e ".[sweep]"
    python training/sweep.py --datasets bench/hopper/medium-v0 bench/walker2d/medium-v0 --seeds 0-4 \\
        --steps 30000 --grid expectile=0.7,0.9 eta=1,3 --set batch_size=256 --cpus-per-trial 1
    python training/sweep.py ... --address auto --storage /shared/sweeps     # on a running Ray cluster

Every trial calls ``training.train.train`` (the same loop as ``train.py``) on its own run directory under
``<storage>/<name>/runs/``, a loadable agent like any other run. After each training-state save the trial
reports that state (``training_state/`` with ``train_config.json`` and ``metrics.jsonl``: safetensors + JSON, no
pickle) as its Tune checkpoint; a failed trial is retried from it, and rerunning the same command resumes an
interrupted sweep without retraining finished trials. The sweep directory then holds the aggregated table
(``results.json``, ``results.csv``, ``results.md``: method x dataset, mean ± sample std over seeds) and the
learning curves (``curves.png``). ``--push --org ORG`` publishes every agent and a collection card.

``ray`` is imported only when a sweep runs, so this module (and ``--help``) works without it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # `python training/sweep.py`: make `training` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import GROUPS, TrainConfig, _base, _hints  # noqa: E402
from training.presets import dataset_slug  # noqa: E402
from training.trainer import score_of  # noqa: E402

logger = logging.getLogger("training.sweep")
SCRIPT = "python training/sweep.py"
RAY_MISSING = 'sweeps need Ray Tune: pip install "aligniql[sweep]" (or pip install "ray[tune]")'
SPEC_FILE = "sweep.json"
TUNE_DIR = "tune"
# set by the sweep itself, per trial or for all: not sweepable or settable with --grid / --set
RESERVED = {"seed": "--seeds", "dataset": "--datasets", "env": "--datasets", "steps": "--steps",
            "output_dir": "the sweep (runs/<trial>)", "resume": "the sweep", "push": "--push",
            "repo_id": "--push --org"}
FIELD_TYPES = {f.name: _hints(cls)[f.name] for cls in GROUPS.values() for f in dataclasses.fields(cls)}
# --variants: act-time rules scored on each trial's final agent (benchmarks/quality.py's names), each with the
# agent config flag it needs; the trial's own final evaluation (its config's extraction) stays the first row
VARIANTS: dict[str, tuple[dict[str, Any], str | None]] = {
    # the paper's rule, whatever the agent's default
    "AlignIQL -(Q-V)^2": ({"extraction": "aligniql", "selection": "argmax"}, None),
    "AlignIQL-hard": ({"extraction": "aligniql_hard", "selection": "softmax"}, "use_multipliers"),
    "IDQL (argmax Q)": ({"extraction": "idql", "selection": "argmax"}, None),
    "Gaussian (AWR)": ({"extraction": "gaussian"}, "use_gaussian_actor"),
    "Diffusion BC (N=1)": ({"extraction": "aligniql", "selection": "argmax", "num_samples": 1}, None),
}
VARIANTS_FILE = "variants.json"
# scoring: named act-time rules a trial scores on its final agent after training (benchmarks/quality.py's rows)
SCORES_FILE = "scores.json"
RULE_KEYS = frozenset({"extraction", "selection", "temperature", "num_samples", "eta"})
AWR_TEMPERATURE = "1/awr_beta"  # a rule's temperature: IQL's own AWR policy, T = 1 / the run's awr_beta


# ---------------------------------------------------------------------- the sweep's definition
def parse_seeds(tokens: list[str] | str) -> list[int]:
    """``["0-4"]``, ``["0,2,7"]``, ``["0-2,9", "11"]`` -> sorted distinct seeds; raises ``ValueError``."""
    seeds: set[int] = set()
    for token in [tokens] if isinstance(tokens, str) else tokens:
        for part in token.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                raise ValueError(f"--seeds: {part!r} is not a seed or a range 'A-B' with A <= B (e.g. 0-4, or "
                                 "0,2,7)")
            low, high = int(m.group(1)), int(m.group(2) or m.group(1))
            seeds.update(range(low, high + 1))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    return sorted(seeds)


def parse_value(name: str, text: str) -> Any:
    """A command-line value of the TrainConfig field ``name``, typed like the field (``none`` for optional ones)."""
    base, optional = _base(FIELD_TYPES[name])
    if optional and text.lower() in ("none", "null"):
        return None
    if base is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name}: {text!r} is not a boolean (true or false)")
    try:
        return base(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a {base.__name__}") from None


def parse_assignments(tokens: list[str], what: str, *, many: bool) -> dict[str, Any]:
    """``["expectile=0.7,0.9", "eta=3"]`` -> ``{"expectile": [0.7, 0.9], "eta": [3.0]}`` (one value each unless
    ``many``), field names checked against TrainConfig; raises ``ValueError``."""
    out: dict[str, Any] = {}
    for token in tokens:
        name, sep, values = token.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ValueError(f"{what}: {token!r} is not FIELD=VALUE{',VALUE...' if many else ''} "
                             "(e.g. expectile=0.7,0.9)")
        if name not in FIELD_TYPES:
            close = [f for f in FIELD_TYPES if name in f or f in name]
            hint = f" (did you mean {close}?)" if close else ""
            raise ValueError(f"{what}: {name!r} is not a TrainConfig field{hint}; the fields are the flags of "
                             "python training/train.py --help, with '_' for '-'")
        if name in RESERVED:
            raise ValueError(f"{what}: {name} is set by {RESERVED[name]}, not {what}")
        if name in out:
            raise ValueError(f"{what}: {name} is given twice")
        parts = [v.strip() for v in values.split(",")] if many else [values.strip()]
        if any(not p for p in parts):
            raise ValueError(f"{what}: {token!r} has an empty value")
        parsed = [parse_value(name, p) for p in parts]
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"{what}: {token!r} repeats a value")
        out[name] = parsed if many else parsed[0]
    return out


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains: every (dataset, seed, grid point) is one trial, each a ``TrainConfig`` made of
    ``settings`` (fixed fields), the point's fields, the dataset, the seed and ``steps``."""

    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    variants: bool = False
    """Also score :data:`VARIANTS` on every final agent (on the final evaluation's episodes)."""
    scoring: dict[str, Any] | None = None
    """Named act-time rules every trial scores on its final agent once trained, on its own node (so the
    evaluations run in parallel, as the trainings do): ``{"rules": {name: act() overrides}, "episodes": n,
    "seed": s}`` and optionally ``"precision"``; see :func:`score_rules`."""

    def __post_init__(self) -> None:
        if not self.datasets or len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"--datasets: give distinct dataset ids, got {list(self.datasets)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"--seeds: give distinct non-negative seeds, got {list(self.seeds)}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"--steps must be a positive integer, got {self.steps!r}")
        for name in (*self.grid, *self.settings):
            if name not in FIELD_TYPES or name in RESERVED:
                raise ValueError(f"{name} cannot be swept or set here (unknown, or set by the sweep)")
        if both := sorted(set(self.grid) & set(self.settings)):
            raise ValueError(f"{both} are both in --grid and --set")
        if self.scoring is not None:
            check_scoring(self.scoring)
        for point in self.points():  # every trial's config is valid before anything starts
            self.config(self.datasets[0], self.seeds[0], point)

    def points(self) -> list[dict[str, Any]]:
        """The grid's points in a fixed order (the product of the fields' values, first field slowest)."""
        points: list[dict[str, Any]] = [{}]
        for name, values in self.grid.items():
            points = [{**p, name: v} for p in points for v in values]
        return points

    def config(self, dataset: str, seed: int, point: dict[str, Any], output_dir: str | None = None) -> TrainConfig:
        source = {"env": dataset} if "/" not in dataset else {"dataset": dataset}  # a D4RL name or a Minari id
        return TrainConfig.create(**{**self.settings, **point, **source, "seed": seed, "steps": self.steps,
                                     "output_dir": output_dir})

    def to_dict(self) -> dict[str, Any]:
        d = {"datasets": list(self.datasets), "seeds": list(self.seeds), "steps": self.steps, "grid": self.grid,
             "settings": self.settings}
        # sweeps from before a field keep their hash
        return {**d, **({"variants": True} if self.variants else {}),
                **({"scoring": self.scoring} if self.scoring is not None else {})}

    def default_name(self) -> str:
        """``sweep-<hash of the spec>``: the same command finds (and resumes) the same sweep."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        return f"sweep-{digest[:8]}"


def point_slug(point: dict[str, Any]) -> str:
    """``{"expectile": 0.9, "eta": 3.0}`` -> ``expectile0.9-eta3.0`` (for run directories and repo ids)."""
    return "-".join(f"{k.replace('_', '')}{re.sub(r'[^A-Za-z0-9.]', '', str(v))}" for k, v in point.items())


def trial_key(dataset: str, seed: int, point: dict[str, Any]) -> str:
    return "-".join(filter(None, [dataset_slug(dataset), point_slug(point), f"seed{seed}"]))


def method_label(point: dict[str, Any], method: str = "AlignIQL") -> str:
    return method + (f" ({', '.join(f'{k}={v}' for k, v in point.items())})" if point else "")


def trials(spec: SweepSpec, sweep_dir: Path) -> list[dict[str, Any]]:
    """One JSON-able parameter dict per trial: what a Tune trial gets as its config."""
    out = []
    for dataset in spec.datasets:
        for point in spec.points():
            for seed in spec.seeds:
                key = trial_key(dataset, seed, point)
                run_dir = sweep_dir / "runs" / key
                out.append({"key": key, "dataset": dataset, "seed": seed, "point": point, "run_dir": str(run_dir),
                            "config": spec.config(dataset, seed, point, str(run_dir)).to_dict(),
                            "variants": spec.variants, "scoring": spec.scoring})
    if len({t["key"] for t in out}) != len(out):
        raise ValueError("two trials would share a run directory (datasets that differ only in their namespace?)")
    return out


# ---------------------------------------------------------------------- one trial (runs in a Ray worker)
def state_step(folder: Path) -> int:
    """The step of the training state saved in ``folder/training_state`` (-1 when there is none)."""
    try:
        return int(json.loads((folder / "training_state" / "latest.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1


CHECKPOINT_FILES = ("train_config.json", "metrics.jsonl")


def pack_checkpoint(run_dir: Path, into: Path) -> None:
    """What a run needs to resume: its training state, saved config and metrics (no agent export: the state
    holds the weights, and the agent files are rewritten at the next save)."""
    shutil.copytree(run_dir / "training_state", into / "training_state")
    for name in CHECKPOINT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, into / name)


def unpack_checkpoint(folder: Path, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / "training_state", ignore_errors=True)
    shutil.copytree(folder / "training_state", run_dir / "training_state")
    for name in CHECKPOINT_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, run_dir / name)


def last_metrics(run_dir: Path) -> dict[str, float]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return {}
    losses = [json.loads(x) for x in lines if "loss/bc" in x]
    return {k: v for k, v in losses[-1].items() if isinstance(v, (int, float))} if losses else {}


def check_scoring(scoring: dict[str, Any]) -> None:
    """Raise ValueError unless ``scoring`` is a usable :attr:`SweepSpec.scoring`."""
    rules = scoring.get("rules") if isinstance(scoring, dict) else None
    if not isinstance(rules, dict) or not rules:
        raise ValueError(f"scoring needs a non-empty 'rules' dict of name -> act() overrides, got {scoring!r}")
    for name, overrides in rules.items():
        if not isinstance(overrides, dict) or not set(overrides) <= RULE_KEYS:
            raise ValueError(f"scoring rule {name!r}: overrides must be a dict with keys from {sorted(RULE_KEYS)}, "
                             f"got {overrides!r}")
        t = overrides.get("temperature", 1.0)
        if not (t == AWR_TEMPERATURE or (isinstance(t, (int, float)) and t > 0)):
            raise ValueError(f"scoring rule {name!r}: temperature must be > 0 or {AWR_TEMPERATURE!r}, got {t!r}")
    episodes, seed = scoring.get("episodes"), scoring.get("seed")
    if not (isinstance(episodes, int) and episodes >= 1 and isinstance(seed, int) and seed >= 0):
        raise ValueError(f"scoring needs 'episodes' >= 1 and a 'seed' >= 0, got {episodes!r} and {seed!r}")
    if scoring.get("precision", "fp32") not in ("fp32", "bf16", "auto"):
        raise ValueError(f"scoring precision must be fp32, bf16 or auto, got {scoring['precision']!r}")


def resolve_rule(overrides: dict[str, Any], train_config: dict[str, Any]) -> dict[str, Any]:
    """A rule's act() overrides with a temperature of ``"1/awr_beta"`` replaced by 1 / the run's resolved
    ``optim.awr_beta`` (from its ``train_config.json``)."""
    if overrides.get("temperature") != AWR_TEMPERATURE:
        return overrides
    beta = train_config.get("config", {}).get("optim", {}).get("awr_beta")
    if not beta:
        raise ValueError("train_config.json records no resolved config.optim.awr_beta")
    return {**overrides, "temperature": 1.0 / float(beta)}


def score_rules(run_dir: Path, scoring: dict[str, Any], device: str = "cpu", *, dataset: str | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Each rule of ``scoring`` evaluated on the finished run's agent (``scoring["episodes"]`` episodes, one env
    each, from ``scoring["seed"]``, in ``dataset``'s eval env, by default the run's own): name -> {"score",
    **EvalResult.to_dict()}, kept in ``scores.json``. A file
    written for the same scoring is read back instead (a trial that scored its agent, or a retried one); one for
    other rules or episodes is replaced."""
    from aligniql import AlignIQLAgent
    from aligniql.evaluation import evaluate
    from aligniql.hub import atomic_write_text

    check_scoring(scoring)
    path = Path(run_dir) / SCORES_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("scoring") == json.loads(json.dumps(scoring)):
            return saved["rules"]
    train_config = json.loads((Path(run_dir) / "train_config.json").read_text())
    agent = AlignIQLAgent.from_pretrained(run_dir, device=device).set_precision(scoring.get("precision", "fp32"))
    n, rules = scoring["episodes"], {}
    for name, overrides in scoring["rules"].items():
        res = evaluate(agent, dataset or train_config["dataset"]["id"], episodes=n, num_envs=n, seed=scoring["seed"],
                       **resolve_rule(overrides, train_config)).to_dict()
        rules[name] = {"score": score_of(res), **res}
        if log is not None:
            log(f"{name:32} score {rules[name]['score']:7.2f}")
    atomic_write_text(path, json.dumps({"scoring": scoring, "rules": rules}, indent=2) + "\n")
    return rules


def evaluate_variants(run_dir: Path, device: str = "cpu") -> dict[str, float | None] | None:
    """Score each of :data:`VARIANTS` the agent has the networks for, on the episodes of its final evaluation
    (same count, env seeds and envs, so the rows compare like for like), into ``variants.json``. None for a run
    without a final evaluation; a retried trial reads the file instead of evaluating again."""
    from aligniql import AlignIQLAgent
    from aligniql.evaluation import evaluate
    from aligniql.hub import atomic_write_text

    path = run_dir / VARIANTS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    result = json.loads((run_dir / "results.json").read_text())
    if not result.get("evaluated"):
        return None
    agent = AlignIQLAgent.from_pretrained(run_dir, device=device)
    scores = {}
    for name, (overrides, needs) in VARIANTS.items():
        if needs is None or getattr(agent.config, needs):
            res = evaluate(agent, result["dataset_id"], episodes=result["episodes"], num_envs=result["num_envs"],
                           seed=result["seed"], **overrides)
            scores[name] = score_of(res.to_dict())
    atomic_write_text(path, json.dumps(scores, indent=2) + "\n")
    return scores


def driver_data_path() -> str | None:
    """The driver's ``MINARI_DATASETS_PATH``, made absolute (in this process too): a trial runs in a working
    directory of its own, where a relative path (``../shared/datasets``) names nothing."""
    path = os.environ.get("MINARI_DATASETS_PATH")
    if path and not os.path.isabs(os.path.expanduser(path)):
        os.environ["MINARI_DATASETS_PATH"] = path = os.path.abspath(os.path.expanduser(path))
    return path


WORKER_NICENESS = "RAY_worker_niceness"


def local_ray_env() -> dict[str, str]:
    """Environment for a Ray started here (its raylet and workers inherit the driver's): trials at the priority of
    everything else. Ray starts workers at nice 15 by default, so any other job on the machine takes the cores first;
    measured on a 2-core EPYC, two 1-CPU trials fell to 2.5 steps/s each beside one 1-thread training at 12.7.
    An explicit ``RAY_worker_niceness`` is kept. A ``ray start`` node needs it in its own environment."""
    return {} if WORKER_NICENESS in os.environ else {WORKER_NICENESS: "0"}


def worker_data_path(driver_path: str | None) -> None:
    """In a trial: the driver's datasets path where this worker has none or only a relative one; a node whose
    ``ray start`` set an absolute path of its own keeps it (its datasets may live elsewhere)."""
    own = os.environ.get("MINARI_DATASETS_PATH")
    if driver_path and not (own and os.path.isabs(os.path.expanduser(own))):
        os.environ["MINARI_DATASETS_PATH"] = driver_path


def run_trial(config: dict[str, Any], on_save: Callable[[dict[str, Any], int, Path], None] | None = None) -> None:
    """The Tune trainable: train one run to the end, reporting each training-state save as a checkpoint.

    A retried or restored trial starts from the newer of its run directory's state and its Tune checkpoint
    (they are the same on shared storage; the checkpoint wins when the run directory was lost or is older, e.g.
    the trial moved to a node with its own copy), resuming through ``train(config.replace(resume=True))``.
    ``on_save(params, step, run_dir)`` runs after each report (tests inject failures there).
    """
    from ray import tune

    from training.train import setup_logging, train

    setup_logging()
    params = config["trial"]
    worker_data_path(params.get("minari_datasets_path"))
    run_dir = Path(params["run_dir"])
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            if state_step(Path(folder)) > state_step(run_dir):
                logger.info("%s: restoring the Tune checkpoint of step %d", params["key"], state_step(Path(folder)))
                unpack_checkpoint(Path(folder), run_dir)
    train_config = TrainConfig.from_dict(params["config"])
    resume = state_step(run_dir) >= 0

    import ray

    node = ray.get_runtime_context().get_node_id()  # in Tune's result.json: where each trial ran

    def report(step: int, out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="aligniql-ckpt-") as staging:
            pack_checkpoint(out, Path(staging))
            tune.report({"step": step, "done": False, "node_id": node, **last_metrics(out)},
                        checkpoint=tune.Checkpoint.from_directory(staging))
        if on_save is not None:
            on_save(params, step, out)

    out = train(train_config.replace(resume=resume), command=f"{SCRIPT} (trial {params['key']})", on_save=report)
    if params.get("variants"):
        evaluate_variants(out, train_config.run.device)
    if params.get("scoring"):
        score_rules(out, params["scoring"], train_config.run.device,
                    log=lambda line: logger.info("%s: %s", params["key"], line))
    result = json.loads((out / "results.json").read_text())
    score = score_of(result)
    tune.report({"step": result["step"], "done": True, "node_id": node,
                 **({"score": score} if score is not None else {})})


# ---------------------------------------------------------------------- results
def _stats(scores: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "seeds": len(scores)}


def collect(spec: SweepSpec, sweep_dir: Path) -> list[dict[str, Any]]:
    """Every trial's outcome read from its run directory (the source of truth, not Tune's records)."""
    rows = []
    for t in trials(spec, sweep_dir):
        path, variants = Path(t["run_dir"]) / "results.json", Path(t["run_dir"]) / VARIANTS_FILE
        result = json.loads(path.read_text()) if path.is_file() else None
        rows.append({"key": t["key"], "dataset": t["dataset"], "seed": t["seed"], "point": t["point"],
                     "method": method_label(t["point"]), "run_dir": t["run_dir"], "finished": result is not None,
                     "score": None if result is None else score_of(result), "result": result,
                     "variants": json.loads(variants.read_text()) if variants.is_file() else {}})
    return rows


def aggregate(spec: SweepSpec, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The D4RL-style table: one row per (method, dataset), mean ± sample std (ddof 1) over the seeds scored."""
    table = []
    for point in spec.points():
        for method in ("AlignIQL", *VARIANTS):
            for dataset in spec.datasets:
                mine = [(r["seed"], r["score"] if method == "AlignIQL" else r["variants"].get(method)) for r in runs
                        if r["dataset"] == dataset and r["point"] == point]
                mine = [(seed, score) for seed, score in mine if score is not None]
                if mine:
                    table.append({"method": method_label(point, method), "dataset": dataset, "point": point,
                                  **_stats([s for _, s in mine]), "scores": [s for _, s in mine],
                                  "seed_list": [seed for seed, _ in mine]})
    return {"spec": spec.to_dict(), "std_ddof": 1,
            "metric": "success rate (%) on goal-reaching tasks, else normalized score (else mean return)",
            "table": table, "trials": [{k: r[k] for k in ("key", "dataset", "seed", "point", "run_dir", "finished",
                                                          "score")} for r in runs]}


def markdown_table(summary: dict[str, Any]) -> str:
    methods = list(dict.fromkeys(row["method"] for row in summary["table"]))
    datasets = list(dict.fromkeys(row["dataset"] for row in summary["table"]))
    cell = {(r["method"], r["dataset"]): f"{r['mean']:.1f} ± {r['std']:.1f} ({r['seeds']})" for r in summary["table"]}
    lines = ["| dataset | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    lines += [f"| {d} | " + " | ".join(cell.get((m, d), "–") for m in methods) + " |" for d in datasets]
    return "\n".join(lines) + (f"\n\nmean ± sample std over seeds (number of seeds); {summary['metric']}. AlignIQL: "
                               "each trial's agent with its own default act() (the extraction its config.json "
                               "names: IQL's AWR softmax over Q at T = 1/awr_beta for locomotion agents "
                               "of the default preset, else AlignIQL's -(Q-V)^2); the other columns: that agent "
                               "with the rule named.\n")


def write_results(spec: SweepSpec, sweep_dir: Path) -> dict[str, Any]:
    """``results.json``, ``results.csv``, ``results.md`` and ``curves.png`` in the sweep directory."""
    from aligniql.hub import atomic_write_text

    runs = collect(spec, sweep_dir)
    summary = aggregate(spec, runs)
    atomic_write_text(sweep_dir / "results.json", json.dumps(summary, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "dataset", "mean", "std", "seeds"])
    for row in summary["table"]:
        writer.writerow([row["method"], row["dataset"], f"{row['mean']:.6g}", f"{row['std']:.6g}", row["seeds"]])
    atomic_write_text(sweep_dir / "results.csv", buf.getvalue())
    atomic_write_text(sweep_dir / "results.md", markdown_table(summary))
    plot_curves(spec, runs, sweep_dir / "curves.png")
    return summary


def curve_of(run_dir: Path) -> list[tuple[int, float]]:
    points = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        rec = json.loads(line)
        ev = {k[5:]: v for k, v in rec.items() if k.startswith("eval/")}
        if ev and (score := score_of(ev)) is not None:
            points.append((int(rec["step"]), score))
    return points


def plot_curves(spec: SweepSpec, runs: list[dict[str, Any]], path: Path) -> bool:
    """One panel per dataset, one line per method (mean over seeds, ± sample std band); skipped (False) without
    matplotlib, which is not a dependency of the sweep."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no %s (pip install matplotlib)", path.name)
        return False
    fig, axes = plt.subplots(1, len(spec.datasets), figsize=(5 * len(spec.datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], spec.datasets):
        for point in spec.points():
            curves = [curve_of(Path(r["run_dir"])) for r in runs if r["dataset"] == dataset and r["point"] == point]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)  # seeds still running have shorter curves
            steps = [s for s, _ in curves[0][:n]]
            scores = [[v for _, v in c[:n]] for c in curves]
            mean = [statistics.fmean(col) for col in zip(*scores)]
            ax.plot(steps, mean, marker="o", label=f"{method_label(point)} ({len(curves)} seeds)")
            if len(curves) > 1:
                std = [statistics.stdev(col) for col in zip(*scores)]
                ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                alpha=0.2)
        ax.set_title(dataset)
        ax.set_xlabel("gradient steps")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel("score")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------- the Hub
def agent_repo_id(org: str, row: dict[str, Any]) -> str:
    return f"{org}/aligniql-{row['key']}"


def collection_card(name: str, org: str, summary: dict[str, Any], pushed: dict[str, str]) -> str:
    score = {t["key"]: t["score"] for t in summary["trials"]}
    lines = ["---", "library_name: aligniql", "tags:", "- reinforcement-learning", "- offline-reinforcement-learning",
             "- aligniql", "---", "", f"# AlignIQL sweep `{name}`", "",
             f"{len(pushed)} agents trained by `training/sweep.py` "
             f"({summary['spec']['steps']} gradient steps each).", "", "## Results", "", markdown_table(summary),
             "## Agents", "", "| agent | dataset | seed | hyperparameters | score |", "|---|---|---|---|---|"]
    for t in summary["trials"]:
        if t["key"] in pushed:
            s = "–" if score[t["key"]] is None else f"{score[t['key']]:.1f}"
            hp = ", ".join(f"{k}={v}" for k, v in t["point"].items()) or "–"
            lines.append(f"| [{pushed[t['key']]}](https://huggingface.co/{pushed[t['key']]}) | {t['dataset']} | "
                         f"{t['seed']} | {hp} | {s} |")
    lines += ["", "Load one with `AlignIQLAgent.from_pretrained(\"<agent>\")`.", ""]
    return "\n".join(lines)


def push_all(spec: SweepSpec, sweep_dir: Path, name: str, org: str, *, private: bool = False) -> dict[str, str]:
    """Push every finished agent (``org/aligniql-<dataset>-<hyperparameters>-seed<seed>``) with its card, then
    the collection card ``org/aligniql-<name>`` listing them with their scores. Returns ``{trial: repo id}``."""
    from huggingface_hub import HfApi

    from training.push import push

    summary = write_results(spec, sweep_dir)
    pushed = {}
    for row in collect(spec, sweep_dir):
        if row["finished"]:
            pushed[row["key"]] = push(row["run_dir"], agent_repo_id(org, row), private=private)
    card = collection_card(name, org, summary, pushed)
    (sweep_dir / "README.md").write_text(card)
    repo_id = f"{org}/aligniql-{name}"
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aligniql-sweep-") as staging:
        for file in ("README.md", "results.json", "results.csv", "results.md", "curves.png"):
            if (sweep_dir / file).is_file():
                shutil.copy2(sweep_dir / file, Path(staging) / file)
        api.upload_folder(repo_id=repo_id, folder_path=staging,
                          commit_message=f"AlignIQL sweep {name}: {len(pushed)} agents")
    logger.info("pushed the collection card to https://huggingface.co/%s", repo_id)
    return {**pushed, "collection": repo_id}


# ---------------------------------------------------------------------- the driver
def check_spec(sweep_dir: Path, spec: SweepSpec) -> None:
    """The same --name with another sweep would mix their trials: refuse."""
    path = sweep_dir / SPEC_FILE
    if path.is_file():
        saved = json.loads(path.read_text())["spec"]
        if saved != json.loads(json.dumps(spec.to_dict())):
            raise ValueError(f"{sweep_dir} holds another sweep ({path}: {saved}); rerun its command to resume it, "
                             "or pick another --name")


def run_sweep(spec: SweepSpec, *, storage: str | Path = "sweeps", name: str | None = None,
              cpus_per_trial: float = 1, gpus_per_trial: float = 0, max_failures: int = 2,
              address: str | None = None, on_save: Callable[[dict[str, Any], int, Path], None] | None = None,
              callbacks: list[Any] | None = None, verbose: int = 1) -> dict[str, Any]:
    """Run (or resume) a sweep; returns the aggregated results (also written to the sweep directory).

    Args:
        spec: the trials.
        storage: a filesystem path every node can reach (shared in a cluster); the sweep goes to
            ``storage/name``: ``runs/`` (one run directory per trial), ``tune/`` (Tune's state and
            checkpoints), ``sweep.json`` and the results.
        name: default ``sweep-<hash of spec>``, so that the same command resumes the same sweep.
        cpus_per_trial, gpus_per_trial: each trial's Ray resources (fractional GPUs share one device).
        max_failures: retries of a failed trial, each from its last checkpoint.
        address: the Ray cluster (``auto``: the one ``ray start`` runs on this machine; ``ray://host:10001``);
            ``None`` starts Ray on this machine alone. An initialised Ray (``ray.init`` before) is used as it is.
        on_save: ``on_save(trial params, step, run dir)`` in the worker after each checkpoint (fault injection).
        callbacks: extra ``ray.tune.Callback`` objects for the driver.

    Raises:
        ValueError: storage is not a filesystem path, or ``name`` holds another sweep.
        RuntimeError: trials failed for good (their errors are in the log; the rest are in the table).
    """
    try:
        import ray
        from ray import tune
    except ImportError:
        raise RuntimeError(RAY_MISSING) from None
    from aligniql.hub import atomic_write_text

    if re.match(r"^[a-z][a-z0-9+.-]*://", str(storage)):
        raise ValueError(f"--storage {storage}: trials write their run directories there, so it must be a "
                         "filesystem path (shared by every node, e.g. NFS), not a URI")
    name = name or spec.default_name()
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise ValueError(f"--name {name!r}: letters, digits, '.', '-' and '_' only (it names a folder and a repo)")
    sweep_dir = Path(storage).expanduser().resolve() / name
    check_spec(sweep_dir, spec)
    params = trials(spec, sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / SPEC_FILE, json.dumps({"spec": spec.to_dict(), "trials": len(params),
                                                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                                        indent=2) + "\n")
    data_path = driver_data_path()  # before ray.init: the local workers inherit it
    for p in params:
        p["minari_datasets_path"] = data_path
    if not ray.is_initialized():  # no address: Ray on this machine only (a cluster needs --address auto)
        os.environ.update(local_ray_env())
        ray.init(address=address or "local")
    threads = max(1, math.floor(cpus_per_trial))
    for p in params:  # torch threads follow the trial's CPUs unless --set threads=... says otherwise
        if "threads" not in spec.settings:
            p["config"]["run"]["threads"] = threads
    trainable = tune.with_resources(tune.with_parameters(run_trial, on_save=on_save),
                                    {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    experiment = sweep_dir / TUNE_DIR
    if tune.Tuner.can_restore(str(experiment)):
        logger.info("resuming the sweep in %s (finished trials are kept)", sweep_dir)
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(params)},
            tune_config=tune.TuneConfig(trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname,
                                        reuse_actors=True),  # no fresh process (imports) per trial
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(sweep_dir), verbose=verbose, callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    grid = tuner.fit()
    summary = write_results(spec, sweep_dir)
    unfinished = [t["key"] for t in summary["trials"] if not t["finished"]]
    errors = [r.error for r in grid if r.error is not None]
    if unfinished:
        why = f"; {len(errors)} failed: {errors[0]!r:.300}" if errors else ""
        raise RuntimeError(f"{len(unfinished)} of {len(params)} trials did not finish ({unfinished[:5]}){why}; the "
                           f"table in {sweep_dir} has the rest; rerun the same command to resume")
    return summary


def _trial_dirname(trial: Any) -> str:
    return trial.config["trial"]["key"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SCRIPT if Path(sys.argv[0]).name != "aligniql-sweep" else "aligniql-sweep",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", required=True, help="Minari ids or D4RL names (as --dataset/--env)")
    p.add_argument("--seeds", nargs="+", default=["0"], help="seeds: 0-4, 0,2,7 or 0 1 2 (default: 0)")
    p.add_argument("--steps", type=int, required=True, help="gradient steps of every trial")
    p.add_argument("--grid", nargs="+", default=[], metavar="FIELD=V1,V2",
                   help="hyperparameters to sweep (TrainConfig field names), e.g. expectile=0.7,0.9 eta=1,3")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=V", dest="settings",
                   help="fixed settings of every trial, e.g. batch_size=256 multipliers=true eval_episodes=10")
    p.add_argument("--variants", action="store_true",
                   help="also score AlignIQL-hard (needs multipliers=true), IDQL (argmax Q), Gaussian (AWR; needs "
                   "gaussian_actor=awr) and diffusion BC (N=1) on every final agent, as benchmarks/quality.py")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="e.g. 0.25: four trials share a GPU")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its checkpoint")
    p.add_argument("--address", help="Ray cluster: auto (the one `ray start` runs here) or ray://HOST:10001")
    p.add_argument("--storage", default="sweeps", help="a path every node can reach (default: ./sweeps)")
    p.add_argument("--name", help="the sweep's folder under --storage (default: sweep-<hash of the sweep>)")
    p.add_argument("--push", action="store_true", help="publish every agent and a collection card")
    p.add_argument("--org", help="Hub user or organisation for --push")
    p.add_argument("--private", action="store_true", help="create the pushed repos private")
    return p


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    return SweepSpec(datasets=tuple(args.datasets), seeds=tuple(parse_seeds(args.seeds)), steps=args.steps,
                     grid=parse_assignments(args.grid, "--grid", many=True),
                     settings=parse_assignments(args.settings, "--set", many=False), variants=args.variants)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 when every trial finished (and pushed), 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
        if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_failures < 0:
            raise ValueError("--cpus-per-trial must be > 0, --gpus-per-trial and --max-failures >= 0")
        if args.push:
            from training.push import NO_TOKEN, has_token, repo_id_problem

            if not args.org:
                raise ValueError("--push needs --org (the Hub user or organisation of the agents)")
            for t in trials(spec, Path(".")):  # every repo id is checked before anything trains
                if problem := repo_id_problem(agent_repo_id(args.org, t)):
                    raise ValueError(problem)
            if not has_token():
                raise ValueError(NO_TOKEN)
    except ValueError as e:
        parser.error(str(e))
    from training.train import setup_logging

    setup_logging()
    name = args.name or spec.default_name()
    try:
        summary = run_sweep(spec, storage=args.storage, name=name, cpus_per_trial=args.cpus_per_trial,
                            gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures, address=args.address)
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    sweep_dir = Path(args.storage).expanduser().resolve() / name
    print(markdown_table(summary), end="")
    print(f"results: {sweep_dir}/results.{{json,csv,md}}; agents: {sweep_dir}/runs/")
    if args.push:
        from training.push import PushError

        try:
            pushed = push_all(spec, sweep_dir, name, args.org, private=args.private)
        except (PushError, FileNotFoundError) as e:
            logger.error("push failed: %s; rerun the same command with --push (training is not repeated)", e)
            return 1
        print(f"pushed {len(pushed) - 1} agents and https://huggingface.co/{pushed['collection']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
