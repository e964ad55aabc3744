"""Minari datasets for training: D4RL names, local-first loading, episodes -> transition tensors.

docs/training.md (Datasets) holds the facts used here: which D4RL datasets Minari re-released, the episode layout, and
how loading behaves without network.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from training.presets import LOCOMOTION_ENVS, domain_of

logger = logging.getLogger(__name__)
ACTION_EPS = 1e-5  # dataset actions are clipped to +-(1 - eps), as the official clip_to_eps (docs/algorithm.md §1)


def _d4rl_table() -> dict[str, str]:
    table = {f"{env}-{q}-v2": f"mujoco/{env}/{q}-v0" for env in LOCOMOTION_ENVS for q in ("medium", "expert")}
    for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse"):
        for version in ("v0", "v2"):  # the IQL paper used v0, AlignIQL v2; Minari has one regeneration
            table[f"antmaze-{maze}-{version}"] = f"D4RL/antmaze/{maze}-v1"
    for maze in ("open", "umaze", "medium", "large"):
        for dense in ("", "-dense"):
            table[f"maze2d-{maze}{dense}-v1"] = f"D4RL/pointmaze/{maze}{dense}-v2"
    for task in ("pen", "door", "hammer", "relocate"):
        for q in ("human", "cloned", "expert"):
            table[f"{task}-{q}-v1"] = f"D4RL/{task}/{q}-v2"
    for q in ("complete", "partial", "mixed"):
        table[f"kitchen-{q}-v0"] = f"D4RL/kitchen/{q}-v2"
    return table


D4RL_TO_MINARI: dict[str, str] = _d4rl_table()
"""D4RL dataset name -> Minari dataset id (docs/training.md, Datasets). The data are re-releases, not the D4RL files."""

_UNPUBLISHED = re.compile(rf"^({'|'.join(LOCOMOTION_ENVS)})-(random|medium-replay|medium-expert|full-replay)-v\d$")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither local nor downloadable right now."""


def resolve_dataset_id(name: str) -> str:
    """Map a D4RL name (``walker2d-medium-v2``) to its Minari id; a Minari id (with a ``/``) passes through.

    Raises:
        ValueError: for a D4RL name without a Minari equivalent (``hopper-medium-replay-v2``) or an unknown
            name, listing what exists.
    """
    if "/" in name:
        return name
    if name in D4RL_TO_MINARI:
        return D4RL_TO_MINARI[name]
    if m := _UNPUBLISHED.match(name):
        env, kind = m.group(1), m.group(2)
        existing = ", ".join(f"{d4rl} -> {mid}" for d4rl, mid in D4RL_TO_MINARI.items() if d4rl.startswith(env + "-"))
        hint = (f" To train on medium-expert, build it locally: minari.combine_datasets([load_dataset("
                f"'mujoco/{env}/medium-v0'), load_dataset('mujoco/{env}/expert-v0')], 'local/{env}/medium-expert-v0'"
                f") and pass --dataset local/{env}/medium-expert-v0." if kind == "medium-expert" else "")
        raise ValueError(
            f"D4RL dataset {name!r} has no Minari equivalent: Minari regenerated the MuJoCo datasets on the v5 envs "
            f"and publishes only 'medium', 'expert' and 'simple' (mujoco/{env}/simple-v0, no D4RL name). What "
            f"exists for {env}: {existing}.{hint} Any Minari id, local ones included, works with --dataset ID.")
    close = difflib.get_close_matches(name, list(D4RL_TO_MINARI), n=3)
    looks_like_env = re.fullmatch(r"[A-Z]\w*-v\d+", name)  # Hopper-v5, PointMaze_UMaze-v3
    gym_id = " (--env takes a D4RL dataset name, not a Gymnasium env id)" if looks_like_env else ""
    raise ValueError(f"unknown dataset name {name!r}{gym_id}"
                     + (f"; did you mean {' or '.join(close)}?" if close else ".")
                     + f" Known D4RL names: {', '.join(sorted(D4RL_TO_MINARI))}. Or pass a Minari id with --dataset.")


def datasets_root() -> Path:
    """Where Minari looks for local datasets (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def _offline() -> bool:
    try:
        import huggingface_hub.constants as hf_constants

        if hf_constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """TCP-connect to the remote within ``timeout`` s, DNS included (a thread, since getaddrinfo has no timeout)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or url, parsed.port or (80 if parsed.scheme == "http" else 443)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def load_dataset(dataset_id: str, *, download: bool = True) -> Any:
    """Load a Minari dataset, local copy first; download only when allowed and the remote is reachable.

    Raises:
        DatasetNotFoundError: within seconds when the dataset is not local and cannot be downloaded (offline,
            ``HF_HUB_OFFLINE=1``, no network, or the download failed); the message names the dataset, the
            folder searched and the ``minari download`` command.
    """
    import minari

    root = datasets_root()
    path = root / dataset_id
    if (path / "data").is_dir():
        return minari.load_dataset(dataset_id)
    how = (f"Get it with `minari download {dataset_id}` (needs network and `pip install \"minari[hf]\"`), or copy "
           f"it to {path}, or set MINARI_DATASETS_PATH to the folder that holds it (now "
           f"{os.environ.get('MINARI_DATASETS_PATH', 'unset')}).")
    missing = f"Minari dataset {dataset_id!r} was not found locally at {path}"
    if not download:
        raise DatasetNotFoundError(f"{missing}, and downloading is disabled. {how}")
    if _offline():
        raise DatasetNotFoundError(f"{missing}, and HF_HUB_OFFLINE is set, so it cannot be downloaded. {how}")
    import huggingface_hub.constants as hf_constants

    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")
    endpoint = "https://storage.googleapis.com" if remote.startswith("gcp://") else hf_constants.ENDPOINT
    if not _reachable(endpoint):
        raise DatasetNotFoundError(f"{missing}, and the Minari remote ({endpoint}) is unreachable. {how}")
    logger.info("downloading %s from %s", dataset_id, remote)
    try:
        minari.download_dataset(dataset_id)
    except Exception as e:  # the Hub client raises its vendored httpx errors, which are no OSError
        raise DatasetNotFoundError(f"{missing}, and downloading it failed ({type(e).__name__}: {e}). {how}") from e
    return minari.load_dataset(dataset_id)


@dataclass(frozen=True)
class Transitions:
    """The whole dataset as tensors: raw observations, actions in [-1, 1], transformed rewards."""

    obs: torch.Tensor  # (N, S) float32
    actions: torch.Tensor  # (N, A) float32 in [-(1 - 1e-5), 1 - 1e-5]
    rewards: torch.Tensor  # (N,) float32, after the reward transform
    next_obs: torch.Tensor  # (N, S)
    masks: torch.Tensor  # (N,) float32, 1 - terminations (truncations bootstrap)

    def __len__(self) -> int:
        return self.obs.shape[0]

    def to(self, device: torch.device | str) -> Transitions:
        return Transitions(*(getattr(self, f.name).to(device) for f in fields(self)))

    def index(self, idx: torch.Tensor) -> Transitions:
        return Transitions(*(getattr(self, f.name)[idx] for f in fields(self)))


def split_holdout(transitions: Transitions, fraction: float, seed: int) -> tuple[Transitions, Transitions | None]:
    """Hold out a random ``fraction`` of the transitions, as the official code's ``ds.split(0.95)`` (§12.2.1).

    Returns:
        (training transitions, held-out transitions or ``None`` when ``fraction`` is 0); the same ``seed``
        always holds out the same transitions, so a resumed run trains on the same data.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return transitions, None
    n = len(transitions)
    n_train = int(n * (1.0 - fraction))
    if not 0 < n_train < n:
        raise ValueError(f"holding out {fraction:.0%} of {n} transitions leaves {n_train} to train on and "
                         f"{n - n_train} to validate on; both must be >= 1 (use a larger dataset or --holdout 0)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return transitions.index(perm[:n_train].sort().values), transitions.index(perm[n_train:].sort().values)


@dataclass(frozen=True)
class OfflineData:
    """Transitions plus everything about them that the agent config and the model card record."""

    transitions: Transitions
    dataset_id: str
    env_id: str | None  # Gymnasium id of the evaluation env; None when the dataset has no env spec
    obs_keys: tuple[str, ...]
    obs_key_dims: tuple[int, ...]
    obs_mean: np.ndarray  # (S,) float32
    obs_std: np.ndarray  # (S,) float32, > 0
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    reward_transform: str
    reward_scale: float
    reward_shift: float
    num_episodes: int
    ref_min_score: float | None  # the dataset's reference returns, both set or both None
    ref_max_score: float | None
    eval_env: dict[str, Any] | None = None  # the dataset's eval EnvSpec as its JSON object (maze maps, time limit)


GOAL_ENV_KEYS = ("observation", "achieved_goal", "desired_goal")
"""Gymnasium-Robotics GoalEnv keys, in the order they are concatenated (the other Box keys follow, sorted)."""


def observation_keys(space: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Keys (and dims) to concatenate for a Dict observation space; ``((), ())`` for a flat Box.

    Every flat Box entry is kept: ``observation``, ``achieved_goal``, ``desired_goal`` first, then any other Box
    keys sorted. ``achieved_goal`` is not redundant in general: AntMaze's 27-dim ``observation`` starts at the
    torso height (qpos[2:]), so the ant's x, y exist only in ``achieved_goal``; in PointMaze it repeats
    ``observation[:2]``, which costs two standardized input features and keeps one rule, read from the space
    alone, for every goal env. Nested Dict entries are skipped: Kitchen's per-task goals are Dicts, fixed per
    task, and its ``observation`` already holds the object state.

    Raises:
        ValueError: the space is neither a flat Box nor a Dict, or a Dict entry is a Box that is not flat or a
            space other than a Box or a Dict (dropping it could hide what the policy needs).
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        if len(space.shape) != 1:
            raise ValueError(f"only flat Box observations are supported, got shape {space.shape}")
        return (), ()
    if not isinstance(space, spaces.Dict):
        raise ValueError(f"unsupported observation space {space}; expected a Box or a Dict of Boxes")
    subs = space.spaces
    for k, s in subs.items():
        if isinstance(s, spaces.Dict):
            continue
        if not isinstance(s, spaces.Box) or len(s.shape) != 1:
            raise ValueError(f"observation[{k!r}] must be a flat Box (or a nested Dict, which is skipped), got {s}")
    boxes = [k for k, s in subs.items() if isinstance(s, spaces.Box)]
    keys = tuple(k for k in GOAL_ENV_KEYS if k in boxes) + tuple(sorted(k for k in boxes if k not in GOAL_ENV_KEYS))
    if not keys:
        raise ValueError(f"observation space {space} has no flat Box entry to train on")
    return keys, tuple(int(subs[k].shape[0]) for k in keys)


def _flat(observations: Any, keys: tuple[str, ...]) -> np.ndarray:
    if not keys:
        return np.asarray(observations, dtype=np.float32)
    return np.concatenate([np.asarray(observations[k], dtype=np.float32) for k in keys], axis=-1)


def _eval_env(dataset: Any) -> dict[str, Any] | None:
    """The dataset's eval env spec (else its env spec) as a JSON object, or None when it records neither."""
    import json

    meta = dataset.storage.metadata
    for key in ("eval_env_spec", "env_spec"):
        spec = meta.get(key)
        if spec:
            return json.loads(spec if isinstance(spec, str) else spec.to_json())
    return None


def _eval_env_id(dataset: Any) -> str | None:
    spec = _eval_env(dataset)
    return None if spec is None else spec["id"]


def prepare(dataset: Any, *, normalize_obs: bool = True, reward_transform: str | None = None) -> OfflineData:
    """Turn a MinariDataset into transition tensors, observation statistics and the reward transform.

    Args:
        dataset: a ``minari.MinariDataset``.
        normalize_obs: compute mean/std (std + 1e-3); otherwise identity statistics (the official code).
        reward_transform: ``locomotion``, ``antmaze`` or ``none``; ``None`` picks the dataset's domain default.
    """
    from gymnasium import spaces

    from training.presets import PRESETS

    dataset_id = dataset.spec.dataset_id
    env_id = _eval_env_id(dataset)
    keys, dims = observation_keys(dataset.observation_space)
    act_space = dataset.action_space
    if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(f"{dataset_id}: only flat Box action spaces are supported, got {act_space}")
    low, high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"{dataset_id}: action bounds must be finite to rescale to [-1, 1], got {act_space}")

    obs, next_obs, actions, rewards, masks, returns = [], [], [], [], [], []
    for ep in dataset.iterate_episodes():
        o = _flat(ep.observations, keys)  # (T+1, S): Minari stores the final observation
        obs.append(o[:-1])
        next_obs.append(o[1:])
        actions.append(np.asarray(ep.actions, dtype=np.float64))
        rewards.append(np.asarray(ep.rewards, dtype=np.float64))
        masks.append(1.0 - np.asarray(ep.terminations, dtype=np.float64))  # never truncations
        returns.append(float(rewards[-1].sum()))
    if not obs:
        raise ValueError(f"{dataset_id} has no episodes")
    obs_a, act_a, rew_a = np.concatenate(obs), np.concatenate(actions), np.concatenate(rewards)
    act_a = to_unit_actions(act_a, low, high)

    transform = reward_transform or PRESETS[domain_of(dataset_id, env_id)].reward_transform
    scale, shift = 1.0, 0.0
    if transform == "locomotion":
        spread = max(returns) - min(returns)
        if spread > 0:
            scale = 1000.0 / spread
        else:
            logger.warning("%s: all episode returns are equal; locomotion reward scaling skipped", dataset_id)
    elif transform == "antmaze":
        shift = -1.0
    elif transform != "none":
        raise ValueError(f"unknown reward transform {transform!r}; expected 'locomotion', 'antmaze' or 'none'")

    if normalize_obs:
        mean, std = obs_a.mean(0, dtype=np.float64), obs_a.std(0, dtype=np.float64) + 1e-3
    else:
        mean, std = np.zeros(obs_a.shape[1]), np.ones(obs_a.shape[1])
    meta = dataset.storage.metadata
    refs = (meta.get("ref_min_score"), meta.get("ref_max_score"))
    refs = (float(refs[0]), float(refs[1])) if None not in refs and refs[0] < refs[1] else (None, None)
    as_t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
    transitions = Transitions(as_t(obs_a), as_t(act_a), as_t(rew_a * scale + shift), as_t(np.concatenate(next_obs)),
                              as_t(np.concatenate(masks)))
    return OfflineData(transitions, dataset_id, env_id, keys, dims, mean.astype(np.float32),
                       std.astype(np.float32), tuple(map(float, low)), tuple(map(float, high)), transform,
                       float(scale), float(shift), len(returns), *refs, eval_env=_eval_env(dataset))


def to_unit_actions(actions: Any, low: Any, high: Any) -> np.ndarray:
    """Env actions -> [-1, 1], clipped to +-(1 - ACTION_EPS) as the official ``clip_to_eps`` (float64)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    unit = 2.0 * (np.asarray(actions, np.float64) - low) / (high - low) - 1.0
    return np.clip(unit, -1.0 + ACTION_EPS, 1.0 - ACTION_EPS)


def from_unit_actions(actions: Any, low: Any, high: Any) -> np.ndarray:
    """[-1, 1] -> env actions inside [low, high] (the inverse of :func:`to_unit_actions`, up to its clip)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return np.clip(low + (np.asarray(actions, np.float64) + 1.0) * 0.5 * (high - low), low, high)


@dataclass(frozen=True)
class Episode:
    """One episode as :func:`prepare` sees it: flat observations (``T + 1`` rows: the final one included),
    actions in [-1, 1], transformed rewards, and whether it ended by termination (else by truncation)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool


def episodes(dataset: Any, data: OfflineData) -> Iterator[Episode]:
    """The episodes of ``dataset`` with the observation keys, action scaling and reward transform of ``data``
    (``prepare(dataset)``): the same transitions, with their episode boundaries (for baselines that need them)."""
    for ep in dataset.iterate_episodes():
        yield Episode(_flat(ep.observations, data.obs_keys), to_unit_actions(ep.actions, data.action_low,
                                                                              data.action_high),
                      np.asarray(ep.rewards, np.float64) * data.reward_scale + data.reward_shift,
                      bool(np.asarray(ep.terminations)[-1]))
