"""Act-time settings on the quality benchmark's checkpoints: which extraction rule, selection and N to use.

    MINARI_DATASETS_PATH=../shared/datasets python benchmarks/extraction.py \
        --datasets bench/hopper/medium-v0 --seeds 0 1 --num-samples 16 64 256

Extraction happens at ``act()`` time, so one trained checkpoint answers the question for every rule: this
re-evaluates each finished ``benchmarks/quality.py`` run (``runs/quality/<dataset>/seed<s>``) with the same
episodes and episode seeds as its final evaluation, and reuses that evaluation's numbers where the setting
is the same. Writes benchmarks/results/extraction_<dataset>.json (resumable: settings already there are kept).
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
from benchmarks.common import RESULTS, file_sha256, machine, seed_stats, write_json  # noqa: E402
from benchmarks.quality import DATASETS, EVAL_SEED, VARIANTS, metric_name, score_of  # noqa: E402


def settings(num_samples: list[int], temperatures: list[float]) -> dict[str, dict]:
    """name -> ``act()`` overrides. Argmax rules at every N; the samplers at N=64 and each temperature."""
    grid: dict[str, dict] = {}
    for n in num_samples:
        grid[f"AlignIQL argmax, N={n}"] = {"extraction": "aligniql", "selection": "argmax", "num_samples": n}
        grid[f"IDQL argmax Q, N={n}"] = {"extraction": "idql", "selection": "argmax", "num_samples": n}
    # the official AlignIQL-hard evaluation (argmax of -beta(s) Q - 1); the quality table's row samples instead
    grid["AlignIQL-hard argmax, N=64"] = {"extraction": "aligniql_hard", "selection": "argmax", "num_samples": 64}
    for t in temperatures:
        grid[f"AlignIQL softmax T={t:g}, N=64"] = {"extraction": "aligniql", "selection": "softmax",
                                                   "temperature": t, "num_samples": 64}
        grid[f"AlignIQL-hard softmax T={t:g}, N=64"] = {"extraction": "aligniql_hard", "selection": "softmax",
                                                        "temperature": t, "num_samples": 64}
    grid["IDQL expectile softmax, N=64"] = {"extraction": "idql_expectile", "selection": "softmax", "num_samples": 64}
    grid["Diffusion BC (N=1)"] = {"extraction": "aligniql", "selection": "argmax", "num_samples": 1}
    return grid


ACT_DEFAULTS = ("extraction", "num_samples", "selection", "temperature", "eta")


def reusable(quality_seed: dict | None, run: Path, overrides: dict, episodes: int, defaults: dict) -> dict | None:
    """The quality benchmark's final result for the same checkpoint, setting and episodes, if there is one.

    ``defaults`` are the agent config's act() defaults, so that an override equal to a default compares equal.
    """
    if not quality_seed or "ours" not in quality_seed:
        return None
    if Path(quality_seed["ours"].get("run_dir", "")).resolve() != Path(run).resolve():
        return None
    for name, variant in VARIANTS.items():
        res = quality_seed["ours"]["final"].get(name)
        if (res is not None and res.get("episodes") == episodes and res.get("seed") == EVAL_SEED
                and effective(defaults, variant) == effective(defaults, overrides)):
            return res
    return None


def effective(defaults: dict, overrides: dict) -> dict:
    """The act() settings ``overrides`` give on an agent with ``defaults``, as ``AlignIQLAgent.act`` merges them:
    another extraction than the default's comes with its own selection and temperature, not the saved ones."""
    from aligniql.config import rule_defaults

    base = dict(defaults)
    if overrides.get("extraction", base["extraction"]) != base["extraction"]:
        base |= rule_defaults(overrides["extraction"])
    return base | overrides


DIAG_TEMPERATURES = (1.0, 0.1, 0.01)


def dataset_observations(dataset: str, count: int = 64, seed: int = 0):
    """``count`` observations drawn from the dataset's first episodes, as the env gives them (dicts stay dicts)."""
    import minari

    ds = minari.load_dataset(dataset)
    eps = list(ds.iterate_episodes(range(min(10, ds.total_episodes))))
    first = eps[0].observations
    if isinstance(first, dict):
        obs = {k: np.concatenate([ep.observations[k][:-1] for ep in eps]) for k in first}
        n = len(next(iter(obs.values())))
    else:
        obs = np.concatenate([ep.observations[:-1] for ep in eps])
        n = len(obs)
    idx = np.random.default_rng(seed).choice(n, size=min(count, n), replace=False)
    return {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]


def diagnose(agent, obs, temperatures, num_samples: int = 64, seed: int = 0) -> dict:
    """How far apart a state's candidates are, per rule: the spread of their Q, the std of their log-weights,
    and the effective sample size 1 / sum(p^2) of softmax selection at each temperature (N = uniform
    sampling, i.e. diffusion BC; 1 = argmax)."""
    import torch

    from aligniql.selection import softmax_probabilities

    rules = ["aligniql", "idql"] + (["aligniql_hard"] if agent.beta_net is not None else [])
    out: dict = {"num_samples": num_samples, "rules": {}}
    for rule in rules:
        g = torch.Generator(device=agent.device).manual_seed(seed)  # same candidates for every rule
        c = agent.candidates(obs, num_samples=num_samples, extraction=rule, generator=g)
        out["states"] = int(c.q.shape[0])
        ess = {f"{t:g}": float((1 / softmax_probabilities(c.log_weights, t).pow(2).sum(-1)).mean())
               for t in sorted(set(DIAG_TEMPERATURES) | set(temperatures), reverse=True)}
        out["rules"][rule] = {"q_spread": float((c.q.max(-1).values - c.q.min(-1).values).median()),
                              "log_weight_std": float(c.log_weights.std(-1).median()), "softmax_ess": ess}
    return out


def summarize(dataset: str, per_seed: dict, grid: dict, episodes: int) -> dict:
    table = {}
    for name in grid:
        scores = [s[name]["score"] for s in per_seed.values() if name in s]
        if scores:
            table[name] = seed_stats(scores)
    return {"dataset": dataset, "episodes": episodes, "eval_seed": EVAL_SEED,
            "metric": metric_name(dataset),
            "settings": grid, "table": table, "per_seed": per_seed, "machine": machine()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, nargs="+", default=[16, 64], help="N for the argmax rules")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0], help="softmax temperatures")
    p.add_argument("--episodes", type=int, default=10, help="as the quality benchmark's final evaluation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default="runs/quality", help="where benchmarks/quality.py put its runs")
    args = p.parse_args(argv)

    from aligniql import AlignIQLAgent
    from aligniql.evaluation import evaluate

    grid = settings(args.num_samples, args.temperatures)
    for dataset in args.datasets:
        slug = dataset.replace("/", "_")
        path = RESULTS / f"extraction_{slug}.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        per_seed = old.get("per_seed", {})
        every = old.get("settings", {}) | grid  # settings measured by earlier calls with other flags stay listed
        qpath = RESULTS / f"quality_{slug}.json"
        quality_runs = json.loads(qpath.read_text())["per_seed"] if qpath.exists() else {}
        for seed in args.seeds:
            run = Path(args.runs) / slug / f"seed{seed}"
            if not (run / "model.safetensors").exists():
                print(f"  {dataset} seed {seed}: no finished quality run in {run}, skipped", flush=True)
                continue
            agent = AlignIQLAgent.from_pretrained(run, device=args.device)
            defaults = {k: getattr(agent.config, k) for k in ACT_DEFAULTS}
            weights = file_sha256(run / "model.safetensors")
            done = per_seed.setdefault(str(seed), {})
            if done.get("model_sha256", weights) != weights:  # retrained since: every score of the seed is stale
                print(f"  {dataset} seed {seed}: the checkpoint changed, evaluating it again", flush=True)
                done.clear()
            done["model_sha256"] = weights
            diag_rules = done.get("diagnostics", {}).get("rules", {}).values()
            measured = {float(t) for r in diag_rules for t in r["softmax_ess"]}
            if not set(args.temperatures) <= measured:
                done["diagnostics"] = diagnose(agent, dataset_observations(dataset), args.temperatures)
                write_json(path.name, summarize(dataset, per_seed, every, args.episodes))
            for name, overrides in grid.items():
                if name in done:
                    continue
                res = reusable(quality_runs.get(str(seed)), run, overrides, args.episodes, defaults)
                if res is None:
                    start = time.perf_counter()
                    res = evaluate(agent, dataset, episodes=args.episodes, num_envs=args.episodes, seed=EVAL_SEED,
                                   **overrides).to_dict()
                    res = {"score": score_of(res), **res, "eval_seconds": time.perf_counter() - start}
                done[name] = res
                print(f"  {dataset} seed {seed} {name:34} score {res['score']:7.2f}", flush=True)
                write_json(path.name, summarize(dataset, per_seed, every, args.episodes))  # nothing lost if stopped
        summary = summarize(dataset, per_seed, every, args.episodes)
        write_json(path.name, summary)
        for name, row in summary["table"].items():
            print(f"{dataset:32} {name:34} {row['mean']:7.2f} ± {row['std']:5.2f} ({row['seeds']} seeds)")


if __name__ == "__main__":
    main()
