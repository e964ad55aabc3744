"""d3rlpy's IQL on exactly our transitions, evaluated by ``aligniql.evaluate``: the side-by-side baseline.

Run with the benchmark venv (``bash benchmarks/setup.sh``), normally from quality.py / speed.py:

    benchmarks/.venv/bin/python benchmarks/d3rlpy_iql.py train --dataset bench/hopper/medium-v0 --steps 30000
    benchmarks/.venv/bin/python benchmarks/d3rlpy_iql.py speed --batch-size 256

Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script by the bench venv's python


def _quiet() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def episodes_dataset(dataset_id: str):
    """A d3rlpy MDPDataset holding the same transitions as ``training.datasets.prepare`` (same reward transform,
    actions in [-1, 1], terminations-only bootstrap; a truncated episode keeps its final next observation)."""
    import d3rlpy

    from training.datasets import episodes, load_dataset, prepare

    ds = load_dataset(dataset_id, download=False)
    data = prepare(ds)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "term", "tout")}
    for ep in episodes(ds, data):
        o, a, r, terminated = ep.observations, ep.actions, ep.rewards, ep.terminated
        if terminated:  # d3rlpy treats the last stored step as terminal
            o = o[:-1]
        else:  # keep o[T] as the next observation of the last step: append a dummy step d3rlpy never samples
            a, r = np.concatenate([a, a[-1:]]), np.concatenate([r, [0.0]])
        n = len(o)
        parts["obs"].append(o)
        parts["act"].append(a)
        parts["rew"].append(r)
        parts["term"].append(np.eye(1, n, n - 1)[0] * terminated)
        parts["tout"].append(np.eye(1, n, n - 1)[0] * (not terminated))
    cat = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    mdp = d3rlpy.dataset.MDPDataset(cat["obs"], cat["act"], cat["rew"], cat["term"], cat["tout"])
    return mdp, data


class D3rlpyAgent:
    """Enough of the AlignIQLAgent surface for ``aligniql.evaluate``: a config and a batched ``act``."""

    def __init__(self, algo, data) -> None:
        from aligniql import AlignIQLConfig

        self.algo = algo
        self.config = AlignIQLConfig(obs_dim=int(data.transitions.obs.shape[1]),
                                     act_dim=int(data.transitions.actions.shape[1]), obs_keys=data.obs_keys,
                                     obs_key_dims=data.obs_key_dims, action_low=data.action_low,
                                     action_high=data.action_high, env_id=data.env_id, dataset_id=data.dataset_id)

    def act(self, obs, **_):
        from training.datasets import from_unit_actions

        if isinstance(obs, dict):
            obs = np.concatenate([np.asarray(obs[k], np.float32) for k in self.config.obs_keys], axis=-1)
        a = self.algo.predict(np.asarray(obs, np.float32).reshape(-1, self.config.obs_dim))
        return from_unit_actions(a, self.config.action_low, self.config.action_high).astype(np.float32)


def make_iql(steps: int, batch_size: int, expectile: float, weight_temp: float, device: str):
    import d3rlpy

    cosine = d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)
    return d3rlpy.algos.IQLConfig(
        batch_size=batch_size, expectile=expectile, weight_temp=weight_temp,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=cosine),
    ).create(device=device)


def train(args: argparse.Namespace) -> dict:
    import d3rlpy

    from aligniql.evaluation import evaluate
    from training.presets import preset_for

    d3rlpy.seed(args.seed)
    mdp, data = episodes_dataset(args.dataset)
    preset = preset_for(args.dataset, data.env_id)
    algo = make_iql(args.steps, args.batch_size, preset.expectile, preset.awr_beta, args.device)
    agent, curve, t0 = D3rlpyAgent(algo, data), [], time.perf_counter()
    for epoch, _ in algo.fitter(mdp, n_steps=args.steps, n_steps_per_epoch=args.eval_every, show_progress=False,
                                save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory()):
        step = epoch * args.eval_every
        res = evaluate(agent, args.dataset, episodes=args.episodes, num_envs=args.episodes, seed=args.eval_seed)
        curve.append({"step": step, "score": res.normalized_score, "success_rate": res.success_rate,
                      "mean_return": res.mean_return})
        print(f"d3rlpy IQL step {step}: score {res.normalized_score}", file=sys.stderr)
    return {"method": "d3rlpy IQL", "dataset": args.dataset, "seed": args.seed, "curve": curve,
            "final": res.to_dict(), "train_seconds": time.perf_counter() - t0, "agent": agent}


def speed(args: argparse.Namespace) -> dict:
    """IQL update steps/s (critic + value + AWR actor) on walker2d-shaped synthetic data."""
    import d3rlpy

    rng = np.random.default_rng(0)
    n = 100_000
    mdp = d3rlpy.dataset.MDPDataset(rng.normal(size=(n, 17)).astype(np.float32),
                                    rng.uniform(-1, 1, (n, 6)).astype(np.float32),
                                    rng.normal(size=n).astype(np.float32), np.eye(1, n, n - 1)[0],
                                    np.zeros(n))
    algo = make_iql(10**6, args.batch_size, 0.7, 3.0, args.device)
    algo.config.observation_scaler.fit_with_transition_picker(mdp.episodes, mdp.transition_picker)
    algo.build_with_dataset(mdp)
    batch = mdp.sample_transition_batch(args.batch_size)
    for _ in range(20):
        algo.update(batch)
    t = time.perf_counter()
    for _ in range(args.steps):
        algo.update(mdp.sample_transition_batch(args.batch_size))
    return {"method": "d3rlpy IQL", "batch_size": args.batch_size,
            "steps_per_s": args.steps / (time.perf_counter() - t)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["train", "speed"])
    p.add_argument("--dataset", default="bench/hopper/medium-v0")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=100_000)
    p.add_argument("--device", default="cpu:0")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _quiet()
    result = train(args) if args.mode == "train" else speed(args)
    result.pop("agent", None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
