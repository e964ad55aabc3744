"""Build the mixed-quality dev datasets (issue 18): uniform-random rollouts mixed with the shared medium data.

Each mix keeps every episode of a source dataset (``bench/<env>/<quality>-v0``) and adds whole episodes of a
uniform-random policy on the same Gymnasium env until they make up ``--random-fraction`` of the transitions,
like the low-quality share of D4RL's replay datasets. The result is a local Minari dataset with the source's
reference scores, env spec and eval env spec, plus a ``mix_generation`` metadata entry that records every
behaviour part (random, then the source's own parts) with its size and mean (normalized) return, so the best
behaviour policy inside a mixture is known. A summary of all mixes also goes to
``benchmarks/results/mixed_datasets.json``.

    MINARI_DATASETS_PATH=/path/to/shared/datasets python benchmarks/make_mixed.py --out benchmarks/.data/datasets

Train on one with ``MINARI_DATASETS_PATH=benchmarks/.data/datasets python training/train.py --dataset
mixed/hopper/medium-random-v0``. The random part depends only on ``--seed`` and the env, so two mixes of the
same env share their first random episodes, and a rebuild gives the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / ".data" / "datasets"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "mixed_datasets.json"
MIX_KEY = "mix_generation"  # written last, so its presence also marks a dataset as completely written

# Which shared sources each env mixes (the shared folder has medium-expert for hopper only).
MIXES: dict[str, tuple[str, ...]] = {
    "hopper": ("medium", "medium-expert"),
    "walker2d": ("medium",),
    "halfcheetah": ("medium",),
}


def source_id(env: str, quality: str) -> str:
    return f"bench/{env}/{quality}-v0"


def mixed_id(env: str, quality: str) -> str:
    return f"mixed/{env}/{quality}-random-v0"


class MixError(ValueError):
    """Bad input or an unusable source; the message says what to do."""


@dataclass(frozen=True)
class Episode:
    observations: np.ndarray  # (T + 1, S) float32
    actions: np.ndarray  # (T, A)
    rewards: np.ndarray  # (T,) float64, as the env returns them
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    seed: int | None  # the reset seed, when known

    def __len__(self) -> int:
        return len(self.rewards)


def rollout(env: Any, policy: Any, reset_seed: int) -> Episode:
    """One episode of ``policy`` (observation -> action) in ``env`` from ``env.reset(seed=reset_seed)``, to the env's
    own termination or truncation."""
    obs, _ = env.reset(seed=reset_seed)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    while True:
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        if terminated or truncated:
            break
    return Episode(np.asarray(observations, np.float32), np.asarray(actions, np.float32),
                   np.asarray(rewards, np.float64), np.asarray(terms, bool), np.asarray(truncs, bool), reset_seed)


class RandomRollouts:
    """Uniform-random episodes of one env, generated on demand and kept, so every mix of that env takes a
    prefix of the same sequence (hopper's medium and medium-expert mixes share their random episodes)."""

    def __init__(self, env_spec: Any, seed: int, key: str):
        import gymnasium as gym

        # Keyed by env rather than by mix, for the shared prefix; [seed, crc] keeps envs independent.
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        self._reset_seeds = rng
        self.env = gym.make(env_spec)
        self.action_seed = int(rng.integers(2**31))
        self.env.action_space.seed(self.action_seed)
        self.episodes: list[Episode] = []

    def _rollout(self) -> Episode:
        return rollout(self.env, lambda obs: self.env.action_space.sample(), int(self._reset_seeds.integers(2**31)))

    def take(self, min_steps: int) -> list[Episode]:
        """The shortest prefix of the sequence with at least ``min_steps`` transitions (whole episodes)."""
        chosen, steps = [], 0
        i = 0
        while steps < min_steps:
            if i == len(self.episodes):
                self.episodes.append(self._rollout())
            chosen.append(self.episodes[i])
            steps += len(self.episodes[i])
            i += 1
        return chosen

    def close(self) -> None:
        self.env.close()


@contextlib.contextmanager
def _datasets_path(root: Path) -> Iterator[None]:
    """Minari resolves dataset ids against MINARI_DATASETS_PATH at call time, so point it at ``root`` briefly."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def default_source_root() -> Path:
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def open_source(root: Path, dataset_id: str) -> Any:
    from minari import MinariDataset

    data = root / dataset_id / "data"
    if not (data / "metadata.json").is_file():
        raise MixError(f"source dataset {dataset_id!r} not found at {data}. Point MINARI_DATASETS_PATH (or "
                       f"--source-root) at the folder that holds bench/<env>/..., e.g. "
                       f"MINARI_DATASETS_PATH=/work/shared/datasets python benchmarks/make_mixed.py ...")
    dataset = MinariDataset(data)
    meta = dataset.storage.metadata
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        raise MixError(f"source {dataset_id!r} has no ref_min_score/ref_max_score; a mix without reference "
                       f"scores cannot be normalized")
    if dataset.spec.env_spec is None:
        raise MixError(f"source {dataset_id!r} has no env spec, so there is no env to roll the random policy in")
    return dataset


def _source_episodes(dataset: Any) -> list[Episode]:
    from gymnasium import spaces

    if not isinstance(dataset.observation_space, spaces.Box):
        raise MixError(f"{dataset.spec.dataset_id}: only flat Box observations are supported, got "
                       f"{dataset.observation_space}")
    indices = list(dataset.episode_indices)
    seeds = [m.get("seed") for m in dataset.storage.get_episode_metadata(indices)]
    act_dtype = dataset.action_space.dtype
    # Source infos are dropped: the random rollouts' infos have other keys, and training reads none of them.
    return [Episode(np.asarray(ep.observations, np.float32), np.asarray(ep.actions, act_dtype),
                    np.asarray(ep.rewards, np.float64), np.asarray(ep.terminations, bool),
                    np.asarray(ep.truncations, bool), seed)
            for ep, seed in zip(dataset.iterate_episodes(indices), seeds)]


def _source_parts(dataset: Any, n_episodes: int) -> list[dict]:
    """The source's behaviour parts as episode ranges: its ``bench_generation`` segments when they tile the
    episodes, else the whole source as one part named after its algorithm."""
    meta = dataset.storage.metadata
    segments = (meta.get("bench_generation") or {}).get("segments") or []
    parts, expect = [], 0
    for seg in segments:
        if seg.get("first_episode") != expect or seg.get("last_episode", -1) < expect:
            break
        parts.append({"policy": str(seg.get("policy", "source")), "origin": seg.get("source"),
                      "first": int(seg["first_episode"]), "last": int(seg["last_episode"])})
        expect = parts[-1]["last"] + 1
    if parts and expect == n_episodes:
        return parts
    return [{"policy": str(meta.get("algorithm_name") or "source"), "origin": None, "first": 0,
             "last": n_episodes - 1}]


def _part_stats(name: str, origin: str, episodes: list[Episode], first: int, ref: tuple[float, float]) -> dict:
    returns = np.array([float(e.rewards.sum()) for e in episodes])
    norm = lambda r: float(100.0 * (r - ref[0]) / (ref[1] - ref[0]))  # noqa: E731 (minari's formula, in %)
    return {"policy": name, "origin": origin, "transitions": int(sum(len(e) for e in episodes)),
            "episodes": len(episodes), "first_episode": first, "last_episode": first + len(episodes) - 1,
            "terminated_episodes": int(sum(bool(e.terminations[-1]) for e in episodes)),
            "truncated_episodes": int(sum(bool(e.truncations[-1]) for e in episodes)),
            "length_mean": float(np.mean([len(e) for e in episodes])),
            "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_min": float(returns.min()), "return_max": float(returns.max()),
            "normalized_return_mean": norm(returns.mean())}


def _description(out_id: str, src_id: str, env_id: str, max_steps: Any, info: dict) -> str:
    parts = "; ".join(f"{p['policy']}: {p['transitions']} transitions, {p['episodes']} episodes "
                      f"{p['first_episode']}-{p['last_episode']}, mean return {p['return_mean']:.1f} "
                      f"(normalized {p['normalized_return_mean']:.1f})" for p in info["parts"])
    return (f"{out_id}: uniform-random rollouts mixed with all of {src_id}; "
            f"{100 * info['random_fraction']:.1f}% of the transitions are random (target "
            f"{100 * info['random_fraction_target']:.0f}%, whole episodes). Env {env_id} (time limit {max_steps}); "
            f"random actions from env.action_space.sample(), action space seeded {info['action_space_seed']}, "
            f"reset seeds drawn from --seed {info['seed']}. Parts: {parts}. Best behaviour part: "
            f"{info['best_part']} (normalized {info['best_normalized_return_mean']:.1f}). Observations stored as "
            f"float32; terminations/truncations are the env's own. ref_min_score/ref_max_score, env spec and eval "
            f"env spec are copied from {src_id}. Built by benchmarks/make_mixed.py (aligniql).")


def build_mix(source: Any, out_id: str, out_root: Path, rollouts: RandomRollouts, *, random_fraction: float,
              seed: int) -> dict:
    """Write ``out_id`` under ``out_root``: random episodes first (as a replay buffer would hold them), then
    every source episode in order. Returns the ``mix_generation`` record."""
    src_id = source.spec.dataset_id
    meta = source.storage.metadata
    ref = (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    src_eps = _source_episodes(source)
    n_src = sum(len(e) for e in src_eps)
    # Smallest whole-episode random part with random / total >= fraction.
    target = math.ceil(random_fraction * n_src / (1.0 - random_fraction))
    random_eps = rollouts.take(target)
    n_rand = sum(len(e) for e in random_eps)

    parts = [_part_stats("uniform-random", "env.action_space.sample()", random_eps, 0, ref)]
    offset = len(random_eps)
    for p in _source_parts(source, len(src_eps)):
        origin = f"{src_id} episodes {p['first']}-{p['last']}" + (f" ({p['origin']})" if p["origin"] else "")
        parts.append(_part_stats(p["policy"], origin, src_eps[p["first"]:p["last"] + 1], offset + p["first"], ref))
    best = max(parts, key=lambda p: p["normalized_return_mean"])
    all_eps = random_eps + src_eps
    returns = np.array([float(e.rewards.sum()) for e in all_eps])
    info = {
        "source_dataset": src_id, "seed": seed, "random_fraction_target": random_fraction,
        "random_fraction": n_rand / (n_rand + n_src), "transitions": n_rand + n_src, "episodes": len(all_eps),
        "action_space_seed": rollouts.action_seed,
        "reset_seeds": "drawn from numpy default_rng([seed, crc32(env id)]); per episode in its 'seed' attribute",
        "parts": parts, "best_part": best["policy"], "best_normalized_return_mean": best["normalized_return_mean"],
        "behaviour_return_mean": float(returns.mean()),
        "behaviour_normalized_return_mean": float(100.0 * (returns.mean() - ref[0]) / (ref[1] - ref[0])),
        "ref_min_score": ref[0], "ref_max_score": ref[1],
    }

    description = _description(out_id, src_id, source.spec.env_spec.id, source.spec.env_spec.max_episode_steps,
                               info)
    write_dataset(source, out_id, out_root, all_eps, info,
                  algorithm_name=f"uniform-random + {meta.get('algorithm_name') or src_id}", description=description)
    return info


def write_dataset(source: Any, out_id: str, out_root: Path, episodes: list[Episode], info: dict, *,
                  algorithm_name: str, description: str) -> None:
    """Write ``episodes`` as the Minari dataset ``out_id`` under ``out_root`` with ``source``'s env spec, eval env
    spec, spaces and reference scores, and ``info`` as its ``mix_generation`` record (written last)."""
    import minari
    from gymnasium import spaces
    from gymnasium.envs.registration import EnvSpec
    from minari.data_collector import EpisodeBuffer

    meta = source.storage.metadata
    env_spec = source.spec.env_spec
    eval_spec = meta.get("eval_env_spec")
    eval_spec = EnvSpec.from_json(eval_spec) if isinstance(eval_spec, str) else (eval_spec or env_spec)
    obs_space = source.observation_space
    obs_space = spaces.Box(obs_space.low.astype(np.float32), obs_space.high.astype(np.float32), dtype=np.float32)
    buffers = [EpisodeBuffer(id=i, seed=e.seed, observations=e.observations, actions=e.actions, rewards=e.rewards,
                             terminations=e.terminations, truncations=e.truncations, infos={})
               for i, e in enumerate(episodes)]
    with _datasets_path(out_root), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about every optional field it is not given
        dataset = minari.create_dataset_from_buffers(
            out_id, buffers, env=env_spec, eval_env=eval_spec, algorithm_name=algorithm_name,
            author="aligniql benchmarks (local)", author_email="n/a",
            code_permalink="benchmarks/make_mixed.py (aligniql)", observation_space=obs_space,
            action_space=source.action_space, ref_min_score=float(meta["ref_min_score"]),
            ref_max_score=float(meta["ref_max_score"]),
            num_episodes_average_score=int(meta.get("num_episodes_average_score", 100)),
            description=description, requirements=meta.get("requirements"))
        dataset.storage.update_metadata({MIX_KEY: info})


def _existing(out_root: Path, out_id: str) -> dict | None:
    """The ``mix_generation`` record of a complete dataset at ``out_id``, else None."""
    path = out_root / out_id / "data" / "metadata.json"
    try:
        return json.loads(path.read_text()).get(MIX_KEY)
    except (OSError, ValueError):
        return None


def _write_results(path: Path, records: dict[str, dict], generator: str = "benchmarks/make_mixed.py") -> None:
    data: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError):
            data = json.loads(path.read_text())
    datasets = {**data.get("datasets", {}), **records}
    data = {"generator": generator,
            "load_with": "MINARI_DATASETS_PATH=<--out folder> python training/train.py --dataset <id>",
            "normalized": "100 * (return - ref_min_score) / (ref_max_score - ref_min_score), episode means",
            "datasets": dict(sorted(datasets.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def summary_table(records: dict[str, dict], status: dict[str, str]) -> str:
    rows = ["| id | source | transitions | episodes | random | per part: transitions, episodes, mean return "
            "(normalized) | behaviour normalized | best part (normalized) | |",
            "|---|---|---|---|---|---|---|---|---|"]
    for out_id, r in records.items():
        parts = "; ".join(f"{p['policy']}: {p['transitions']:,}, {p['episodes']:,}, {p['return_mean']:.1f} "
                          f"({p['normalized_return_mean']:.1f})" for p in r["parts"])
        rows.append(f"| `{out_id}` | `{r['source_dataset']}` | {r['transitions']:,} | {r['episodes']:,} | "
                    f"{100 * r['random_fraction']:.1f}% | {parts} | {r['behaviour_normalized_return_mean']:.1f} | "
                    f"{r['best_part']} ({r['best_normalized_return_mean']:.1f}) | {status[out_id]} |")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Minari root to write the mixes into "
                   "(default: benchmarks/.data/datasets)")
    p.add_argument("--source-root", type=Path, default=None,
                   help="Minari root holding bench/<env>/... (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)")
    p.add_argument("--envs", nargs="+", default=list(MIXES), metavar="ENV", help=f"of {', '.join(MIXES)}")
    p.add_argument("--qualities", nargs="+", default=None, metavar="Q",
                   help="source qualities to mix (default: all known for each env: "
                        + "; ".join(f"{e}: {', '.join(q)}" for e, q in MIXES.items()) + ")")
    p.add_argument("--random-fraction", type=float, default=0.3, help="share of random transitions (default 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild datasets that already exist")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="summary JSON to update (default: benchmarks/results/mixed_datasets.json)")
    return p.parse_args(argv)


def plan(envs: Sequence[str], qualities: Sequence[str] | None) -> list[tuple[str, str]]:
    unknown = [e for e in envs if e not in MIXES]
    if unknown:
        raise MixError(f"unknown env {', '.join(map(repr, unknown))}; known: {', '.join(MIXES)}")
    pairs = [(e, q) for e in dict.fromkeys(envs) for q in MIXES[e] if qualities is None or q in qualities]
    if qualities is not None:
        for q in qualities:
            if not any(q == pq for _, pq in pairs):
                raise MixError(f"no source of quality {q!r} for {', '.join(envs)}; known: "
                               + "; ".join(f"{e}: {', '.join(MIXES[e])}" for e in envs))
    return pairs


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    if not 0.0 < args.random_fraction < 1.0:
        raise MixError(f"--random-fraction must be in (0, 1), got {args.random_fraction}")
    pairs = plan(args.envs, args.qualities)
    source_root = (args.source_root or default_source_root()).resolve()
    out_root = args.out.resolve()
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MixError(f"cannot create --out {out_root}: {e}") from e
    if not os.access(out_root, os.W_OK):
        raise MixError(f"--out {out_root} is not writable; pass a folder of your own")

    records: dict[str, dict] = {}
    status: dict[str, str] = {}
    rollouts: dict[str, RandomRollouts] = {}
    try:
        for env, quality in pairs:
            src, out_id = source_id(env, quality), mixed_id(env, quality)
            old = _existing(out_root, out_id)
            if old is not None and not args.force:
                if (old.get("seed"), old.get("random_fraction_target")) != (args.seed, args.random_fraction):
                    raise MixError(f"{out_id} exists at {out_root} with seed {old.get('seed')} and random "
                                   f"fraction {old.get('random_fraction_target')}, not {args.seed} and "
                                   f"{args.random_fraction}; pass --force to rebuild it")
                records[out_id], status[out_id] = old, "exists"
                continue
            if (out_root / out_id).exists():  # --force, or left incomplete by an interrupted run
                shutil.rmtree(out_root / out_id)
            source = open_source(source_root, src)
            if env not in rollouts:
                rollouts[env] = RandomRollouts(source.spec.env_spec, args.seed, source.spec.env_spec.id)
            print(f"building {out_id} from {src} ...", file=sys.stderr, flush=True)
            records[out_id] = build_mix(source, out_id, out_root, rollouts[env],
                                        random_fraction=args.random_fraction, seed=args.seed)
            status[out_id] = "built"
    finally:
        for r in rollouts.values():
            r.close()
    _write_results(args.results, records)
    print(summary_table(records, status))
    print(f"\nwritten to {out_root}; train with MINARI_DATASETS_PATH={out_root} python training/train.py --dataset "
          f"{next(iter(records))}; summary in {args.results}")
    return records


if __name__ == "__main__":
    try:
        main()
    except MixError as e:
        sys.exit(f"make_mixed.py: error: {e}")
