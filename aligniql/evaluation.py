"""`evaluate`: run an agent for a fixed number of seeded episodes in its Gymnasium environment.

Gymnasium, gymnasium-robotics, Minari and imageio are imported inside functions: ``import aligniql`` stays
cheap and never needs them.
"""

from __future__ import annotations

import difflib
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from aligniql.agent import AlignIQLAgent


@dataclass(frozen=True)
class EvalResult:
    """Per-episode outcomes and their summary. Episode i was reset with seed ``seed + i``."""

    returns: list[float]
    lengths: list[int]
    successes: list[bool] | None
    """Whether ``info["success"]`` was true at any step of the episode; ``None`` if the env reports none."""
    mean_return: float
    std_return: float
    normalized_score: float | None
    """D4RL style: 100 * (return - ref_min_score) / (ref_max_score - ref_min_score), mean over episodes."""
    normalized_score_std: float | None
    success_rate: float | None
    terminates_at_goal: bool | None
    """Goal envs: whether reaching the goal ends the episode (``continuing_task=False``) or it goes on, the
    return then counting steps at the goal. ``None`` for other envs or when unknown."""
    env_id: str | None
    episodes: int
    num_envs: int
    seed: int
    steps_per_second: float
    video_path: str | None = None
    dataset_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-able dict."""
        return asdict(self)

    def __str__(self) -> str:
        def pm(mean: float, std: float | None) -> str:
            return f"{mean:.2f} +- {std or 0.0:.2f}"

        spread = f"(min {min(self.returns):.2f}, max {max(self.returns):.2f})"
        rows = []
        if self.successes is not None:  # the headline of goal envs (D4RL's AntMaze score is 100 x success rate)
            count = f"({sum(self.successes)}/{self.episodes})"
            rows.append(("success rate", f"{100 * np.mean(self.successes):.1f}% {count}"))
        rows.append(("return", f"{pm(self.mean_return, self.std_return)}  {spread}"))
        if self.normalized_score is not None:
            refs = f"(refs {self.ref_min_score:g} / {self.ref_max_score:g})"
            rows.append(("normalized score", f"{pm(self.normalized_score, self.normalized_score_std)}  {refs}"))
        if self.terminates_at_goal is not None:
            rows.append(("at the goal", "episode ends" if self.terminates_at_goal else
                         "episode continues (return counts steps at the goal)"))
        rows.append(("episode length", pm(float(np.mean(self.lengths)), float(np.std(self.lengths)))))
        rows.append(("env steps/s", f"{self.steps_per_second:.0f}"))
        if self.video_path:
            rows.append(("video", self.video_path))
        where = f"{self.dataset_id} (env {self.env_id})" if self.dataset_id else self.env_id or "an unnamed env"
        seeds = f"seed {self.seed}" if self.episodes == 1 else f"seeds {self.seed}..{self.seed + self.episodes - 1}"
        header = (f"evaluation on {where}: {self.episodes} episode{'s' * (self.episodes > 1)}, {seeds}"
                  f", {self.num_envs} env{'s' * (self.num_envs > 1)}")
        lines = [header]
        lines += [f"  {name:<17} {value}" for name, value in rows]
        lines.append(f"  {'episode':>7} {'seed':>6} {'return':>10} {'length':>7}"
                     + ("  success" if self.successes is not None else ""))
        for i, (ret, length) in enumerate(zip(self.returns, self.lengths)):
            ok = "" if self.successes is None else f"  {'yes' if self.successes[i] else 'no':>7}"
            lines.append(f"  {i:>7} {self.seed + i:>6} {ret:>10.2f} {length:>7}{ok}")
        return "\n".join(lines)


def evaluate(agent: Any, env: Any = None, *, episodes: int = 10, num_envs: int = 1, seed: int = 0,
             vectorization: str = "sync", record_video: str | os.PathLike | None = None,
             max_episode_steps: int | None = None, ref_scores: tuple[float, float] | None = None,
             batch_invariant: bool = True, **act_overrides: Any) -> EvalResult:
    """Run exactly ``episodes`` episodes: episode i is reset with seed ``seed + i`` and acts with a
    ``torch.Generator`` seeded ``seed + i``, so per-episode results do not depend on ``num_envs`` (nor on
    sync or async stepping): bit for bit, on any CPU, with ``batch_invariant``.

    Args:
        agent: an ``AlignIQLAgent`` (or the folder / Hub repo id to load one from), or any object with
            ``act(batched_obs) -> actions`` (its randomness is then its own).
        env: a Gymnasium env id or ``EnvSpec``, a ``gym.Env``, a ``gym.vector.VectorEnv`` (any autoreset mode;
            its own ``num_envs`` counts), or a local Minari dataset id (its eval env and reference scores).
            Default: the env the agent was trained to be scored in (:func:`agent_env`).
        episodes: number of episodes.
        num_envs: sub-environments stepped together when ``env`` is an id.
        seed: seed of episode 0.
        vectorization: ``sync`` or ``async`` (``gymnasium.vector``) when ``env`` is an id.
        record_video: write a replay of episode 0 (same seed, same actions; with ``batch_invariant=False``
            and several envs the replay, which acts alone, may drift from it) to this ``.mp4`` or ``.gif``
            path; a rendering failure only warns.
        max_episode_steps: the time limit of envs built from an id; a cap on episodes of env objects.
        ref_scores: ``(ref_min_score, ref_max_score)``; by default the dataset's, else the agent config's
            when its ``env_id`` or ``dataset_id`` matches.
        batch_invariant: passed to ``agent.act``: each sub-env's action is computed as if it were alone. Off,
            acting is 20-35 % faster with several envs (2 threads), but the kernels' rounding then depends on how many
            envs are still running, and a 1-ulp difference grows into a different trajectory within an
            episode of a chaotic env (MuJoCo): episode results then depend on ``num_envs``.
        **act_overrides: for ``agent.act``: ``num_samples``, ``extraction``, ``selection``, ``eta``, ...

    Returns:
        An ``EvalResult``.

    Raises:
        ValueError: the agent's observation keys or dimensions, or action dimension, do not match the env, or
            ``env`` names no registered env.
        FileNotFoundError: ``env`` looks like a Minari id but no such dataset is local.
    """
    if episodes < 1 or num_envs < 1 or vectorization not in ("sync", "async"):
        raise ValueError(f"need episodes >= 1, num_envs >= 1, vectorization 'sync' or 'async'; got {episodes}, "
                         f"{num_envs}, {vectorization!r}")
    if isinstance(agent, (str, os.PathLike)):  # a saved folder or Hub id, as the CLI takes
        agent = AlignIQLAgent.from_pretrained(agent)
    if "generator" in act_overrides:
        raise TypeError("evaluate() seeds one generator per episode from `seed`; do not pass `generator`")
    if record_video is not None:
        from aligniql.video import configure_headless_gl

        configure_headless_gl()
    if env is None:
        env = agent_env(getattr(agent, "config", None))
    envs, spec, dataset_id, refs = _open(env, num_envs, episodes, vectorization, max_episode_steps)
    env_id = spec.id if spec is not None else None
    try:
        _check_agent(agent, envs, env_id)
        policy = _Policy(agent, act_overrides, batch_invariant)
        t0 = time.perf_counter()
        returns, lengths, successes = _run(policy, envs, episodes, seed, max_episode_steps)
        elapsed = time.perf_counter() - t0
        video = None
        if record_video is not None:
            from aligniql.video import record_episode

            # acting alone, the replay is the evaluated episode only if the evaluation acted as if alone
            same = batch_invariant or envs.num_envs == 1 or not isinstance(agent, AlignIQLAgent)
            video = record_episode(spec, policy, record_video, seed=seed, max_episode_steps=max_episode_steps,
                                   expected_return=returns[0] if same else None)
        goal = successes is not None or "desired_goal" in getattr(envs.single_observation_space, "spaces", {})
        at_goal = _terminates_at_goal(envs, spec) if goal else None
    finally:
        if _builds_its_env(env):  # built here; envs passed in stay open for the caller
            envs.close()

    refs = ref_scores or refs or _config_refs(agent, env_id, dataset_id)
    refs = refs if refs is not None and refs[1] > refs[0] else None
    rets = np.asarray(returns, dtype=np.float64)
    norm = None if refs is None else 100 * (rets - refs[0]) / (refs[1] - refs[0])
    return EvalResult(
        returns=[float(r) for r in returns], lengths=[int(n) for n in lengths], successes=successes,
        mean_return=float(rets.mean()), std_return=float(rets.std()),
        normalized_score=None if norm is None else float(norm.mean()),
        normalized_score_std=None if norm is None else float(norm.std()),
        success_rate=None if successes is None else float(np.mean(successes)), terminates_at_goal=at_goal,
        env_id=env_id, episodes=episodes, num_envs=envs.num_envs, seed=seed,
        steps_per_second=sum(lengths) / max(elapsed, 1e-9), video_path=video, dataset_id=dataset_id,
        ref_min_score=None if refs is None else float(refs[0]), ref_max_score=None if refs is None else float(refs[1]))


class _Policy:
    """Actions for all sub-envs in one batch, each sub-env's randomness from its own episode's generator."""

    def __init__(self, agent: Any, overrides: dict[str, Any], batch_invariant: bool = True) -> None:
        self.agent, self.overrides, self.batch_invariant = agent, overrides, batch_invariant

    def __call__(self, obs: Any, generators: list[torch.Generator | None]) -> np.ndarray:
        if not isinstance(self.agent, AlignIQLAgent):
            return np.asarray(self.agent.act(obs, **self.overrides), dtype=np.float32)
        # idle sub-envs (no episode left to run) get a throwaway generator: their actions are never recorded
        gens = [g if g is not None else torch.Generator().manual_seed(0) for g in generators]
        return self.agent.act(obs, generator=gens, batch_invariant=self.batch_invariant, **self.overrides)


def agent_env(config: Any) -> Any:
    """The env an agent is scored in: the dataset's eval ``EnvSpec`` its config records (a maze's fixed start and
    goal map, the time limit), else its ``env_id``."""
    if config is None or (config.eval_env is None and config.env_id is None):
        raise ValueError("this agent's config records no eval env (env_id / eval_env): pass env=")
    if config.eval_env is None:
        return config.env_id
    import json

    from gymnasium.envs.registration import EnvSpec

    spec = EnvSpec.from_json(json.dumps(config.eval_env))
    _register_robotics(spec.id)
    module = spec.entry_point.split(":")[0] if isinstance(spec.entry_point, str) else None
    if module and module.startswith("gymnasium_robotics"):
        import importlib.util

        if importlib.util.find_spec("gymnasium_robotics") is None:
            raise ValueError(f"this agent is evaluated in {spec.id}, which needs gymnasium-robotics: "
                             "pip install 'aligniql[maze]'")
    return spec


def _builds_its_env(env: Any) -> bool:
    from gymnasium.envs.registration import EnvSpec

    return isinstance(env, (str, EnvSpec))


def _register_robotics(env_id: str) -> None:
    """Maze, Adroit and Kitchen envs are registered only by gymnasium_robotics."""
    import gymnasium as gym

    if env_id not in gym.registry:
        try:
            import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
        except ImportError:
            pass


def _open(env: Any, num_envs: int, episodes: int, vectorization: str, max_steps: int | None) -> tuple[Any, ...]:
    """-> (vector env, EnvSpec or None, dataset id or None, reference scores or None)."""
    import gymnasium as gym

    disabled = gym.vector.AutoresetMode.DISABLED  # evaluation resets each finished sub-env with its next seed
    if _builds_its_env(env):
        spec, dataset_id, refs = (env, None, None) if isinstance(env, gym.envs.registration.EnvSpec) \
            else _resolve_name(env)
        make = partial(gym.make, spec, max_episode_steps=max_steps)
        vector_cls = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
        return vector_cls([make] * min(num_envs, episodes), autoreset_mode=disabled), spec, dataset_id, refs
    if isinstance(env, gym.vector.VectorEnv):
        return env, env.get_attr("spec")[0], None, None
    if isinstance(env, gym.Env):
        if num_envs != 1:
            raise ValueError("num_envs > 1 needs an env id or a VectorEnv, not a single gym.Env")
        return gym.vector.SyncVectorEnv([lambda: env], autoreset_mode=disabled), env.spec, None, None
    raise TypeError(f"env must be an env id, a Minari dataset id, a gym.Env or a VectorEnv, got {type(env)}")


def _run(policy: _Policy, envs: Any, episodes: int, seed: int, max_steps: int | None
         ) -> tuple[list[float], list[int], list[bool] | None]:
    """Step all sub-envs together; reset each finished one (reset mask) with the next episode's seed."""
    from gymnasium.vector import AutoresetMode

    n = envs.num_envs
    mode = AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
    if mode == AutoresetMode.NEXT_STEP and getattr(envs, "shared_memory", True) is False:
        # gymnasium 1.x AsyncVectorEnv without shared memory keeps its NEXT_STEP autoreset flag across a reset
        raise ValueError("an AsyncVectorEnv with shared_memory=False needs autoreset_mode=AutoresetMode.DISABLED")
    slot_episode, gens = [-1] * n, [None] * n
    ret, length, hit = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    returns, lengths, successes = [0.0] * episodes, [0] * episodes, [False] * episodes
    next_episode, finished, saw_success = 0, 0, False

    def assign(mask: np.ndarray) -> list[int | None]:
        nonlocal next_episode
        seeds: list[int | None] = [None] * n
        for j in np.flatnonzero(mask):
            slot_episode[j], gens[j] = -1, None  # idle: a vector env steps all sub-envs; never recorded
            if next_episode < episodes:
                slot_episode[j], seeds[j] = next_episode, seed + next_episode
                gens[j] = torch.Generator().manual_seed(seed + next_episode)
                next_episode += 1
        ret[mask], length[mask], hit[mask] = 0.0, 0, False
        return seeds

    obs, _ = envs.reset(seed=assign(np.ones(n, dtype=bool)))
    while finished < episodes:
        obs, reward, terminated, truncated, infos = envs.step(policy(obs, gens))
        active = np.array(slot_episode) >= 0
        ret[active] += reward[active]
        length[active] += 1
        ended = np.asarray(terminated) | np.asarray(truncated)
        done = ended | (length >= max_steps) if max_steps is not None else ended
        flags = _info_flags(infos, "success", n)
        if mode == AutoresetMode.SAME_STEP and "final_info" in infos:  # an ended sub-env's last info is there
            final = _info_flags(infos["final_info"], "success", n)
            if final is not None:
                flags = np.where(ended, final, False if flags is None else flags)
        if flags is not None:
            saw_success, hit[active] = True, hit[active] | flags[active]
        for j in np.flatnonzero(done & active):
            e = slot_episode[j]
            returns[e], lengths[e], successes[e] = float(ret[j]), int(length[j]), bool(hit[j])
            finished += 1
        if done.any() and finished < episodes:
            obs, _ = envs.reset(seed=assign(done), options={"reset_mask": done})
    return returns, lengths, successes if saw_success else None


def _info_flags(infos: Mapping[str, Any], key: str, n: int) -> np.ndarray | None:
    if key not in infos:
        return None
    return np.asarray(infos[key]).astype(bool) & np.asarray(infos.get("_" + key, np.ones(n, dtype=bool)))


def _resolve_name(name: str) -> tuple[Any, str | None, tuple[float, float] | None]:
    """Env id or local Minari dataset id -> (EnvSpec, dataset id or None, reference scores or None)."""
    import gymnasium as gym

    if name not in gym.registry and ":" not in name:
        if "/" in name:  # Minari ids are namespace/name-vN; Gymnasium ids rarely have a namespace
            return _dataset_env(name)
        _register_robotics(name)
    try:
        return gym.spec(name), None, None
    except gym.error.Error as e:
        ids = {i.lower(): i for i in gym.registry}
        close = [ids[m] for m in difflib.get_close_matches(name.lower(), ids, n=3, cutoff=0.6)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{name!r} is not a registered Gymnasium env ({e}){hint} Pass a Gymnasium id "
                         "(Hopper-v5) or a local Minari dataset id (mujoco/hopper/medium-v0); D4RL names such as "
                         "hopper-medium-v2 are dataset names, not envs") from None


def _dataset_env(dataset_id: str) -> tuple[Any, str, tuple[float, float] | None]:
    import minari

    try:
        dataset = minari.load_dataset(dataset_id)  # local only: a download is the user's explicit choice
    except FileNotFoundError as e:
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise FileNotFoundError(f"{dataset_id!r} is neither a registered Gymnasium env nor a Minari dataset under "
                                f"MINARI_DATASETS_PATH={root}: point MINARI_DATASETS_PATH at the folder that holds "
                                f"it, or, if it is published, `minari download {dataset_id}`") from e
    probe = dataset.recover_environment(eval_env=True)  # the spec with the dataset's eval kwargs (maze maps)
    spec = probe.spec
    probe.close()
    lo, hi = dataset.storage.metadata.get("ref_min_score"), dataset.storage.metadata.get("ref_max_score")
    return spec, dataset_id, None if lo is None or hi is None else (float(lo), float(hi))


def _config_refs(agent: Any, env_id: str | None, dataset_id: str | None) -> tuple[float, float] | None:
    c = getattr(agent, "config", None)
    lo, hi = getattr(c, "ref_min_score", None), getattr(c, "ref_max_score", None)
    if lo is None or hi is None or not ((env_id and c.env_id == env_id) or (dataset_id and c.dataset_id == dataset_id)):
        return None
    return float(lo), float(hi)


def _check_agent(agent: Any, envs: Any, env_id: str | None) -> None:
    """Refuse an agent whose spaces do not match the env; warn when it was made for another env."""
    from gymnasium import spaces

    c = getattr(agent, "config", None)
    if c is None:
        return
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if c.obs_keys:
        got = {k: s.shape for k, s in getattr(obs_space, "spaces", {}).items()}
        want = {k: (d,) for k, d in zip(c.obs_keys, c.obs_key_dims)}
        if not isinstance(obs_space, spaces.Dict) or any(got.get(k) != s for k, s in want.items()):
            raise ValueError(f"agent takes dict observations {want} but {env_id} gives {obs_space}")
    elif not isinstance(obs_space, spaces.Box) or obs_space.shape != (c.obs_dim,):
        raise ValueError(f"agent takes flat observations of shape ({c.obs_dim},) but {env_id} gives {obs_space}")
    if not isinstance(act_space, spaces.Box) or act_space.shape != (c.act_dim,):
        raise ValueError(f"agent acts with act_dim={c.act_dim} but {env_id} has action space {act_space}")
    low, high = c.bounds()
    if not (np.allclose(low, act_space.low) and np.allclose(high, act_space.high)):
        warnings.warn(f"agent action bounds {low}..{high} differ from {env_id}'s {act_space}", stacklevel=3)
    if c.env_id and env_id and c.env_id != env_id:
        warnings.warn(f"agent was made for {c.env_id} but is evaluated on {env_id}; scores are not comparable",
                      stacklevel=3)


def _terminates_at_goal(envs: Any, spec: Any) -> bool | None:
    """Maze envs: ``not continuing_task``, read in this process (a missing attribute kills an async worker)."""
    import gymnasium as gym

    if hasattr(envs, "envs"):
        continuing = getattr(envs.envs[0].unwrapped, "continuing_task", None)
    elif spec is not None:
        probe = gym.make(spec)
        continuing = getattr(probe.unwrapped, "continuing_task", None)
        probe.close()
    else:
        return None
    return None if continuing is None else not bool(continuing)
