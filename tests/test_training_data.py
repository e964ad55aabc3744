"""Dataset side of training: D4RL names, local-first loading with fast offline errors, episodes -> tensors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tests.training_fixtures import (  # noqa: F401
    BOX_ID,
    GOAL_ID,
    box_dataset,
    episode_lengths,
    goal_dataset,
    make_no_env_dataset,
    minari_root,
    single_thread,
)
from training import datasets
from training.datasets import DatasetNotFoundError, load_dataset, prepare, resolve_dataset_id, split_holdout
from training.presets import PRESETS, domain_of, preset_for


@pytest.mark.parametrize("name, minari_id", [
    ("walker2d-medium-v2", "mujoco/walker2d/medium-v0"),
    ("hopper-expert-v2", "mujoco/hopper/expert-v0"),
    ("antmaze-large-play-v2", "D4RL/antmaze/large-play-v1"),
    ("antmaze-umaze-diverse-v0", "D4RL/antmaze/umaze-diverse-v1"),
    ("maze2d-medium-dense-v1", "D4RL/pointmaze/medium-dense-v2"),
    ("pen-human-v1", "D4RL/pen/human-v2"),
    ("kitchen-mixed-v0", "D4RL/kitchen/mixed-v2"),
    ("bench/hopper/medium-v0", "bench/hopper/medium-v0"),  # Minari ids pass through
])
def test_d4rl_names_map_to_minari_ids(name, minari_id):
    assert resolve_dataset_id(name) == minari_id


def test_d4rl_name_without_equivalent_lists_what_exists():
    with pytest.raises(ValueError) as e:
        resolve_dataset_id("hopper-medium-replay-v2")
    msg = str(e.value)
    assert "hopper-medium-replay-v2" in msg and "no Minari equivalent" in msg
    assert "mujoco/hopper/medium-v0" in msg and "mujoco/hopper/expert-v0" in msg and "--dataset" in msg
    with pytest.raises(ValueError, match="combine_datasets"):
        resolve_dataset_id("walker2d-medium-expert-v2")
    with pytest.raises(ValueError, match="did you mean walker2d-medium-v2"):
        resolve_dataset_id("walker2d-medum-v2")
    with pytest.raises(ValueError, match=r"'Hopper-v5' \(--env takes a D4RL dataset name, not a Gymnasium env id\)\. "
                                         "Known D4RL names"):
        resolve_dataset_id("Hopper-v5")


def test_missing_dataset_offline_fails_fast_with_instructions(minari_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mujoco/walker2d/medium-v0")
    assert time.perf_counter() - start < 3
    msg = str(e.value)
    assert "mujoco/walker2d/medium-v0" in msg and str(minari_root / "mujoco/walker2d/medium-v0") in msg
    assert "minari download mujoco/walker2d/medium-v0" in msg and "HF_HUB_OFFLINE" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_dataset_without_network_or_download(minari_root, monkeypatch):
    monkeypatch.setattr(datasets, "_offline", lambda: False)
    monkeypatch.setattr(datasets, "_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(DatasetNotFoundError, match="unreachable.*minari download mujoco/hopper/medium-v0"):
        load_dataset("mujoco/hopper/medium-v0")
    with pytest.raises(DatasetNotFoundError, match="downloading is disabled"):
        load_dataset("mujoco/hopper/medium-v0", download=False)


def test_box_episodes_to_transitions(box_dataset):
    data = prepare(load_dataset(BOX_ID))
    tr = data.transitions
    lengths = episode_lengths(4, 25)
    assert len(tr) == sum(lengths) and tr.obs.shape == (sum(lengths), 11) and tr.actions.shape == (sum(lengths), 3)
    assert data.obs_keys == () and data.env_id == "Hopper-v5"
    assert (data.ref_min_score, data.ref_max_score) == (-20, 3000)
    episodes = list(box_dataset.iterate_episodes())
    # obs[:-1] -> obs[1:] inside each episode, float32 once
    start = 0
    for ep, T in zip(episodes, lengths):
        np.testing.assert_array_equal(tr.obs[start:start + T].numpy(), ep.observations[:-1].astype(np.float32))
        np.testing.assert_array_equal(tr.next_obs[start:start + T].numpy(), ep.observations[1:].astype(np.float32))
        start += T
    # bootstrap mask from terminations only: episode 0 terminates, the truncated ones keep mask 1
    assert tr.masks[lengths[0] - 1] == 0 and tr.masks.sum() == len(tr) - 1
    # locomotion transform: x 1000 / (max - min episode return)
    returns = [float(ep.rewards.sum()) for ep in episodes]
    assert data.reward_transform == "locomotion"
    assert data.reward_scale == pytest.approx(1000 / (max(returns) - min(returns)))
    torch.testing.assert_close(tr.rewards[:lengths[0]],
                               torch.as_tensor(episodes[0].rewards * data.reward_scale, dtype=torch.float32))
    assert tr.actions.abs().max() <= 1 - 1e-5
    obs = tr.obs.double().numpy()
    np.testing.assert_allclose(data.obs_mean, obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(data.obs_std, obs.std(0) + 1e-3, rtol=1e-5)


def test_dict_observations_flatten_in_config_order(goal_dataset):
    data = prepare(load_dataset(GOAL_ID))
    assert data.obs_keys == ("observation", "achieved_goal", "desired_goal") and data.obs_key_dims == (4, 2, 2)
    ep = next(goal_dataset.iterate_episodes())
    expected = np.concatenate([ep.observations[k] for k in data.obs_keys], -1)[:-1]
    np.testing.assert_array_equal(data.transitions.obs[:len(expected)].numpy(), expected.astype(np.float32))
    assert data.reward_transform == "none" and data.reward_scale == 1.0 and data.env_id == "PointMaze_UMaze-v3"


def test_reward_transforms_and_identity_stats(box_dataset):
    raw = prepare(load_dataset(BOX_ID), reward_transform="none", normalize_obs=False)
    ant = prepare(load_dataset(BOX_ID), reward_transform="antmaze")
    torch.testing.assert_close(ant.transitions.rewards, raw.transitions.rewards - 1)
    assert (raw.obs_mean == 0).all() and (raw.obs_std == 1).all()
    with pytest.raises(ValueError, match="unknown reward transform"):
        prepare(load_dataset(BOX_ID), reward_transform="bogus")


def test_actions_rescaled_from_box_bounds(minari_root):
    ds = make_no_env_dataset()
    data = prepare(ds)
    assert data.env_id is None and data.action_low == (-2.0, 0.0) and data.action_high == (2.0, 1.0)
    raw = np.concatenate([ep.actions for ep in ds.iterate_episodes()])
    expected = np.clip(2 * (raw - [-2.0, 0.0]) / [4.0, 1.0] - 1, -1 + 1e-5, 1 - 1e-5)
    np.testing.assert_allclose(data.transitions.actions.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("dataset_id, env_id, domain, expectile", [
    ("mujoco/walker2d/medium-v0", "Walker2d-v5", "locomotion", 0.7),
    ("bench/hopper/medium-v0", "Hopper-v5", "locomotion", 0.7),
    ("D4RL/antmaze/large-play-v1", "AntMaze_Large-v4", "antmaze", 0.9),
    ("D4RL/pointmaze/umaze-v2", "PointMaze_UMaze-v3", "pointmaze", 0.7),
    ("D4RL/pen/human-v2", None, "adroit", 0.7),
    ("D4RL/kitchen/mixed-v2", "FrankaKitchen-v1", "kitchen", 0.7),
    ("local/thing/x-v0", None, "other", 0.7),
])
def test_domain_presets(dataset_id, env_id, domain, expectile):
    assert domain_of(dataset_id, env_id) == domain
    assert preset_for(dataset_id, env_id).expectile == expectile
    assert PRESETS["antmaze"].awr_beta == 10.0 and PRESETS["locomotion"].awr_beta == 3.0


def test_holdout_split_is_seeded_disjoint_and_complete(box_dataset):
    tr = prepare(load_dataset(BOX_ID)).transitions
    train, held = split_holdout(tr, 0.05, seed=3)
    assert len(train) == int(len(tr) * 0.95) and len(train) + len(held) == len(tr)
    rows = lambda t: {tuple(r) for r in torch.cat([t.obs, t.actions], 1).tolist()}  # noqa: E731
    assert rows(train) | rows(held) == rows(tr) and not rows(train) & rows(held)
    again, held_again = split_holdout(tr, 0.05, seed=3)
    assert torch.equal(again.obs, train.obs) and torch.equal(held_again.rewards, held.rewards)
    assert not torch.equal(split_holdout(tr, 0.05, seed=4)[1].obs, held.obs)
    assert split_holdout(tr, 0.0, seed=3) == (tr, None)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        split_holdout(tr, 1.0, seed=0)
    with pytest.raises(ValueError, match="both must be >= 1"):
        split_holdout(tr.index(torch.arange(1)), 0.05, seed=0)
