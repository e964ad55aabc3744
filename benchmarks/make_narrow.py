"""Build a narrow-regime dev dataset (issue 18): stochastic rollouts of one trained policy, nothing mixed in.

The mixed dev sets (``make_mixed.py``) ask whether an act-time rule finds the good actions among mostly bad
ones. Narrow data, one competent behaviour policy as in D4RL's medium datasets, asks the opposite: does a rule
improve on the behaviour without leaving it? IQL's AWR softmax won the mixed sets and lost to argmax Q on the
shared medium data, so a choice between them needs both kinds of dev data. The shared medium datasets are the
report data, so this one comes from another policy: the Gaussian AWR actor of an agent in the repository
(default: the shipped ``aligniql/pretrained/hopper-medium-v0``), sampled from its Gaussian (tanh mean plus its
learned std, clipped to [-1, 1]), as D4RL sampled its behaviour policies.

    MINARI_DATASETS_PATH=../shared/datasets python benchmarks/make_narrow.py            # -> narrow/hopper/gaussian-v0
    MINARI_DATASETS_PATH=benchmarks/.data/datasets python training/train.py --dataset narrow/hopper/gaussian-v0

The env spec, eval env spec, spaces and reference scores come from the agent's own training dataset (found under
``MINARI_DATASETS_PATH`` or ``--source-root``), so scores are on the same scale. Deterministic from ``--seed``:
a rebuild gives the same bytes on the same machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.common import file_sha256  # noqa: E402
from benchmarks.make_mixed import (  # noqa: E402
    DEFAULT_OUT, Episode, MixError, _existing, _part_stats, _write_results, default_source_root, open_source,
    rollout, write_dataset)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_AGENT = REPO / "aligniql" / "pretrained" / "hopper-medium-v0"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "narrow_datasets.json"


def narrow_id(source_dataset: str) -> str:
    """``bench/hopper/medium-v0`` -> ``narrow/hopper/gaussian-v0``."""
    parts = source_dataset.split("/")
    if len(parts) != 3:
        raise MixError(f"the agent's dataset id {source_dataset!r} is not of the form namespace/env/name-vN")
    return f"narrow/{parts[1]}/gaussian-v0"


class GaussianPolicy:
    """The agent's Gaussian actor as a sampling behaviour policy: raw env observation in, env action out."""

    def __init__(self, agent_dir: Path, seed: int):
        import torch

        from aligniql import AlignIQLAgent

        self.agent = AlignIQLAgent.from_pretrained(agent_dir)
        if self.agent.actor is None:
            raise MixError(f"{agent_dir} has no Gaussian actor (trained without --gaussian-actor); pass --agent "
                           "with one")
        if self.agent.config.obs_keys:
            raise MixError(f"{agent_dir} acts on dict observations; only flat Box envs are supported")
        self.torch = torch
        self.generator = torch.Generator().manual_seed(seed)
        self.std = self.agent.actor.log_std.detach().clamp(-5.0, 2.0).exp()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        torch, agent = self.torch, self.agent
        with torch.inference_mode():
            x = agent.normalize_obs(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))
            mean, _ = agent.actor(x)
            noise = torch.randn(mean.shape, generator=self.generator)
            action = (mean + self.std * noise).clamp(-1.0, 1.0)
            return agent.scale_action(action)[0].numpy()


def rollouts(env_spec, policy: GaussianPolicy, transitions: int, seed: int) -> list[Episode]:
    """Whole episodes until they hold at least ``transitions`` transitions; reset seeds from ``seed``."""
    import gymnasium as gym

    rng = np.random.default_rng([seed, 1])
    env = gym.make(env_spec)
    episodes, steps = [], 0
    try:
        while steps < transitions:
            episodes.append(rollout(env, policy, int(rng.integers(2**31))))
            steps += len(episodes[-1])
    finally:
        env.close()
    return episodes


def build(agent_dir: Path, source_root: Path, out_root: Path, *, transitions: int, seed: int,
          force: bool = False) -> tuple[str, dict, str]:
    """Build (or find) the narrow dataset of ``agent_dir``; returns its id, generation record and status."""
    policy = GaussianPolicy(agent_dir, seed)
    src_id = policy.agent.config.dataset_id
    if not src_id:
        raise MixError(f"{agent_dir}/config.json names no dataset_id, so there is no env or reference scores")
    out_id = narrow_id(src_id)
    weights = file_sha256(agent_dir / "model.safetensors")
    old = _existing(out_root, out_id)
    if old is not None and not force:
        if (old.get("seed"), old.get("transitions_target"), old.get("agent_sha256")) != (seed, transitions, weights):
            raise MixError(f"{out_id} exists at {out_root} from another seed, size or agent; pass --force to rebuild")
        return out_id, old, "exists"
    if (out_root / out_id).exists():  # --force, or left incomplete by an interrupted build
        shutil.rmtree(out_root / out_id)
    source = open_source(source_root, src_id)
    print(f"building {out_id}: Gaussian actor of {agent_dir} on {source.spec.env_spec.id} ...", file=sys.stderr,
          flush=True)
    episodes = rollouts(source.spec.env_spec, policy, transitions, seed)
    meta = source.storage.metadata
    ref = (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    part = _part_stats("gaussian-actor", f"{agent_dir.name} (sha256 {weights[:12]})", episodes, 0, ref)
    info = {"source_dataset": src_id, "agent": str(agent_dir.relative_to(REPO) if agent_dir.is_relative_to(REPO)
                                                   else agent_dir),
            "agent_sha256": weights, "policy": "tanh mean + learned std x N(0, 1), clipped to [-1, 1]",
            "policy_std": [round(float(s), 4) for s in policy.std], "seed": seed, "transitions_target": transitions,
            "transitions": part["transitions"], "episodes": part["episodes"], "parts": [part],
            "best_part": part["policy"], "best_normalized_return_mean": part["normalized_return_mean"],
            "behaviour_normalized_return_mean": part["normalized_return_mean"],
            "ref_min_score": ref[0], "ref_max_score": ref[1]}
    description = (f"{out_id}: {part['transitions']} transitions ({part['episodes']} whole episodes) of the Gaussian "
                   f"AWR actor of {info['agent']} (std {info['policy_std']}) on {source.spec.env_spec.id}, mean "
                   f"return {part['return_mean']:.1f} (normalized {part['normalized_return_mean']:.1f}); reset seeds "
                   f"and action noise from --seed {seed}. Env spec, eval env spec and reference scores from {src_id}. "
                   "Built by benchmarks/make_narrow.py (aligniql).")
    write_dataset(source, out_id, out_root, episodes, info, algorithm_name=f"gaussian actor of {agent_dir.name}",
                  description=description)
    return out_id, info, "built"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", type=Path, default=DEFAULT_AGENT, help="agent directory with a Gaussian actor "
                   "(default: the shipped hopper agent)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Minari root to write into "
                   "(default: benchmarks/.data/datasets, beside the mixed dev sets)")
    p.add_argument("--source-root", type=Path, default=None, help="Minari root holding the agent's training "
                   "dataset (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)")
    p.add_argument("--transitions", type=int, default=100_000, help="at least this many, in whole episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild a dataset that already exists")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="summary JSON to update (default: benchmarks/results/narrow_datasets.json)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    if args.transitions < 1:
        raise MixError(f"--transitions must be >= 1, got {args.transitions}")
    agent_dir = args.agent.resolve()
    if not (agent_dir / "model.safetensors").is_file():
        raise MixError(f"--agent {agent_dir} holds no model.safetensors; pass a trained agent's directory")
    out_root = args.out.resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    out_id, info, status = build(agent_dir, (args.source_root or default_source_root()).resolve(), out_root,
                                 transitions=args.transitions, seed=args.seed, force=args.force)
    _write_results(args.results, {out_id: info}, generator="benchmarks/make_narrow.py")
    print(f"{out_id} ({status}): {info['transitions']:,} transitions, {info['episodes']} episodes, normalized "
          f"return {info['behaviour_normalized_return_mean']:.1f}; train with MINARI_DATASETS_PATH={out_root} "
          f"python training/train.py --dataset {out_id}")
    return {out_id: info}


if __name__ == "__main__":
    try:
        main()
    except MixError as e:
        sys.exit(f"error: {e}")
