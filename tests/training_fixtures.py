"""Helpers for the training tests: tiny Minari datasets built in-process, and a stand-in evaluator.

Datasets are built from whole arrays with ``EpisodeBuffer`` + ``create_dataset_from_buffers``, which needs
neither jax nor an env rollout (docs/training.md, Datasets).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

TINY_ARGS = ["--hidden-dim", "32", "--denoiser-hidden-dim", "32", "--denoiser-blocks", "1", "--time-dim", "8",
             "--num-samples", "4"]
BOX_ID = "test/hopper/tiny-v0"
GOAL_ID = "test/pointmaze/tiny-v0"
ANTMAZE_ID = "test/antmaze/tiny-v0"
ANTMAZE_EVAL_STEPS = 5
NO_ENV_ID = "test/custom/no-env-v0"


def _create(dataset_id: str, buffers: list, **kwargs):
    import minari

    with warnings.catch_warnings():  # missing description / eval_env / permalink only warn
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(dataset_id, buffers, algorithm_name="random", author="tests",
                                                  author_email="tests@example.com", code_permalink="tests",
                                                  description="tiny test dataset", **kwargs)


def episode_lengths(episodes: int, length: int) -> list[int]:
    return [length + 3 * i for i in range(episodes)]


def make_box_dataset(dataset_id: str = BOX_ID, *, episodes: int = 4, length: int = 25, seed: int = 0):
    """Hopper-v5 spaces; episode 0 ends by termination, the others by truncation."""
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(seed)
    buffers = []
    for i, T in enumerate(episode_lengths(episodes, length)):
        done = np.zeros(T, dtype=bool)
        term, trunc = done.copy(), done.copy()
        (term if i == 0 else trunc)[-1] = True
        buffers.append(EpisodeBuffer(id=i, observations=rng.normal(size=(T + 1, 11)),
                                     actions=rng.uniform(-1, 1, (T, 3)).astype(np.float32),
                                     rewards=rng.uniform(0, 1 + i, T), terminations=term, truncations=trunc, infos={}))
    return _create(dataset_id, buffers, env="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0)


def make_goal_dataset(dataset_id: str = GOAL_ID, *, episodes: int = 3, length: int = 30, seed: int = 1):
    """PointMaze_UMaze-v3 spaces: dict observations (observation 4, achieved_goal 2, desired_goal 2)."""
    import gymnasium as gym
    import gymnasium_robotics
    from minari.data_collector import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    rng = np.random.default_rng(seed)
    buffers = []
    for i, T in enumerate(episode_lengths(episodes, length)):
        obs = {"observation": rng.normal(size=(T + 1, 4)), "achieved_goal": rng.normal(size=(T + 1, 2)),
               "desired_goal": rng.normal(size=(T + 1, 2))}
        trunc = np.zeros(T, dtype=bool)
        trunc[-1] = True
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                                     rewards=(rng.uniform(size=T) > 0.8).astype(np.float64),
                                     terminations=np.zeros(T, dtype=bool), truncations=trunc, infos={}))
    return _create(dataset_id, buffers, env="PointMaze_UMaze-v3", ref_min_score=0.0, ref_max_score=100.0)


def make_antmaze_dataset(dataset_id: str = ANTMAZE_ID, *, episodes: int = 3, length: int = 30, seed: int = 3):
    """AntMaze_UMaze-v4 spaces (observation 27, achieved_goal 2, desired_goal 2; 8 actions) and an eval env spec
    laid out like the shared datasets': the U-maze with D4RL's fixed start and goal cells, continuing at the
    goal, and a time limit of ``ANTMAZE_EVAL_STEPS`` (the real one is 700) so that evaluating is cheap. Rewards
    are sparse 0/1 as in AntMaze; episodes end by truncation only."""
    import gymnasium as gym
    import gymnasium_robotics
    from minari.data_collector import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    rng = np.random.default_rng(seed)
    d4rl_umaze = [[1, 1, 1, 1, 1], [1, "r", 0, 0, 1], [1, 1, 1, 0, 1], [1, "g", 0, 0, 1], [1, 1, 1, 1, 1]]
    eval_spec = dataclasses.replace(  # EnvSpec.kwargs is what recover_environment passes on to gym.make
        gym.spec("AntMaze_UMaze-v4"), max_episode_steps=ANTMAZE_EVAL_STEPS,
        kwargs={"maze_map": d4rl_umaze, "reward_type": "sparse", "continuing_task": True, "reset_target": False})
    buffers = []
    for i, T in enumerate(episode_lengths(episodes, length)):
        xy = np.cumsum(rng.normal(scale=0.1, size=(T + 1, 2)), axis=0) + rng.uniform(-4, 4, 2)
        obs = {"observation": rng.normal(size=(T + 1, 27)), "achieved_goal": xy,
               "desired_goal": np.repeat(rng.uniform(-4, 4, (1, 2)), T + 1, axis=0)}
        trunc = np.zeros(T, dtype=bool)
        trunc[-1] = True
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=rng.uniform(-1, 1, (T, 8)).astype(np.float32),
                                     rewards=(rng.uniform(size=T) > 0.7).astype(np.float64),
                                     terminations=np.zeros(T, dtype=bool), truncations=trunc, infos={}))
    return _create(dataset_id, buffers, env="AntMaze_UMaze-v4", eval_env=eval_spec, ref_min_score=0.0,
                   ref_max_score=50.0)


def make_no_env_dataset(dataset_id: str = NO_ENV_ID, *, episodes: int = 2, length: int = 20, seed: int = 2):
    """Spaces only (no env spec, so no evaluation), with action bounds [-2, 2] x [0, 1]."""
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(seed)
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    buffers = [EpisodeBuffer(id=i, observations=rng.normal(size=(length + 1, 5)).astype(np.float32),
                             actions=rng.uniform(low, high, (length, 2)).astype(np.float32),
                             rewards=rng.normal(size=length), terminations=np.eye(length, dtype=bool)[-1],
                             truncations=np.zeros(length, dtype=bool), infos={}) for i in range(episodes)]
    return _create(dataset_id, buffers, observation_space=spaces.Box(-np.inf, np.inf, (5,), np.float32),
                   action_space=spaces.Box(low, high, dtype=np.float32))


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def box_dataset(minari_root: Path):
    return make_box_dataset()


@pytest.fixture
def goal_dataset(minari_root: Path):
    return make_goal_dataset()


@pytest.fixture
def antmaze_dataset(minari_root: Path):
    return make_antmaze_dataset()


def install_fake_evaluation(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace ``aligniql.evaluation`` with an evaluator that only checks the agent acts; returns its calls."""
    calls: list[dict] = []

    def evaluate(agent, env, *, episodes=10, num_envs=1, seed=0, record_video=None, **act_overrides):
        c = agent.config
        if c.obs_keys:
            obs = {k: np.zeros(d, np.float32) for k, d in zip(c.obs_keys, c.obs_key_dims)}
        else:
            obs = np.zeros(c.obs_dim, np.float32)
        action = agent.act(obs, **act_overrides)
        assert action.shape == (c.act_dim,) and np.isfinite(action).all()
        calls.append({"env": env, "episodes": episodes, "seed": seed, "num_envs": num_envs,
                      "record_video": record_video})
        returns = [float(i) for i in range(episodes)]
        successes = [True] * episodes if c.obs_keys else None
        return EvalResult(returns=returns, lengths=[10] * episodes, successes=successes,
                          mean_return=float(np.mean(returns)), std_return=float(np.std(returns)),
                          normalized_score=42.0, normalized_score_std=0.0,
                          success_rate=1.0 if successes else None, terminates_at_goal=None, env_id=None,
                          episodes=episodes, num_envs=num_envs, seed=seed, steps_per_second=100.0)

    from aligniql.evaluation import EvalResult  # the real result type, so the fake cannot drift from it

    module = types.ModuleType("aligniql.evaluation")
    module.evaluate = evaluate
    monkeypatch.setitem(sys.modules, "aligniql.evaluation", module)
    return calls


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny networks run faster on one thread, and stay fast when other jobs share the CPU cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
