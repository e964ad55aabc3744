"""AntMaze end to end on a tiny synthetic AntMaze-shaped Minari dataset: which observation keys the agent sees,
the AntMaze preset, training, strict reload, evaluation in the eval env's D4RL map, the top-down replay, the card."""

from __future__ import annotations

import json

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import pytest
from gymnasium import spaces

from aligniql import AlignIQLAgent, evaluate
from tests.conftest import tiny_agent
from tests.training_fixtures import (  # noqa: F401
    ANTMAZE_EVAL_STEPS,
    ANTMAZE_ID,
    TINY_ARGS,
    antmaze_dataset,
    minari_root,
    single_thread,
)
from training import train
from training.datasets import observation_keys
from training.presets import domain_of, preset_for

gym.register_envs(gymnasium_robotics)


def box(n: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (n,), np.float64)


def test_observation_keys_keep_the_position_that_antmaze_has_only_in_achieved_goal():
    # the AntMaze v4 layout (keys sorted, as Gymnasium's Dict stores them): torso x, y only in achieved_goal
    ant = spaces.Dict({"achieved_goal": box(2), "desired_goal": box(2), "observation": box(27)})
    assert observation_keys(ant) == (("observation", "achieved_goal", "desired_goal"), (27, 2, 2))
    assert observation_keys(gym.make("AntMaze_UMaze-v4").observation_space) == observation_keys(ant)
    # PointMaze: achieved_goal repeats observation[:2]; kept anyway, one rule for every goal env
    point = spaces.Dict({"achieved_goal": box(2), "desired_goal": box(2), "observation": box(4)})
    assert observation_keys(point) == (("observation", "achieved_goal", "desired_goal"), (4, 2, 2))
    # Kitchen: per-task goals are nested Dicts (fixed per task), skipped
    kitchen = spaces.Dict({"observation": box(59), "desired_goal": spaces.Dict({"kettle": box(7)}),
                           "achieved_goal": spaces.Dict({"kettle": box(7)})})
    assert observation_keys(kitchen) == (("observation",), (59,))
    # other Box keys follow the goal-env ones, sorted
    extra = spaces.Dict({"z": box(1), "desired_goal": box(2), "a": box(3), "observation": box(5)})
    assert observation_keys(extra) == (("observation", "desired_goal", "a", "z"), (5, 2, 3, 1))
    assert observation_keys(box(11)) == ((), ())


@pytest.mark.parametrize("space, match", [
    (spaces.Dict({"observation": box(4), "image": spaces.Box(0, 255, (8, 8, 3), np.uint8)}),
     r"observation\['image'\] must be a flat Box"),
    (spaces.Dict({"observation": box(4), "phase": spaces.Discrete(3)}), r"observation\['phase'\] must be a flat Box"),
    (spaces.Dict({"goals": spaces.Dict({"a": box(2)})}), "has no flat Box entry"),
    (spaces.Box(-1, 1, (3, 3)), "only flat Box observations"),
    (spaces.Discrete(4), "expected a Box or a Dict of Boxes"),
])
def test_observation_keys_refuse_what_they_would_have_to_drop(space, match):
    with pytest.raises(ValueError, match=match):
        observation_keys(space)


@pytest.mark.parametrize("dataset_id, env_id", [
    ("bench/antmaze/umaze-v0", "AntMaze_UMaze-v4"),
    ("bench/antmaze/medium-diverse-v0", "AntMaze_Medium_Diverse_GR-v4"),
    ("D4RL/antmaze/umaze-v1", None),  # what --env antmaze-umaze-v2 resolves to, before any env spec is known
    (ANTMAZE_ID, "AntMaze_UMaze-v4"),
])
def test_antmaze_datasets_get_the_official_antmaze_preset(dataset_id, env_id):
    preset = preset_for(dataset_id, env_id)
    assert domain_of(dataset_id, env_id) == "antmaze"
    assert (preset.expectile, preset.awr_beta, preset.reward_transform) == (0.9, 10.0, "antmaze")


def test_d4rl_antmaze_names_map_to_minari_remote_ids_with_the_offline_error(minari_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, minari_id in (("antmaze-umaze-v2", "D4RL/antmaze/umaze-v1"),
                            ("antmaze-medium-diverse-v2", "D4RL/antmaze/medium-diverse-v1")):
        with pytest.raises(SystemExit, match=rf"error: Minari dataset '{minari_id}' was not found locally.*"
                                             rf"HF_HUB_OFFLINE.*minari download {minari_id}"):
            train.main(["--env", name])


def test_antmaze_trains_reloads_strictly_and_evaluates_in_its_eval_map(antmaze_dataset, tmp_path):
    out = tmp_path / "ant"
    assert train.main([*TINY_ARGS, "--dataset", ANTMAZE_ID, "--steps", "3", "--batch-size", "16", "--log-every",
                       "3", "--eval-episodes", "1", "--output-dir", str(out)]) == 0

    saved = json.loads((out / "train_config.json").read_text())
    args = {k: v for group in saved["config"].values() for k, v in group.items()}
    assert (saved["dataset"]["domain"], args["expectile"], args["awr_beta"], args["reward_transform"]) == \
        ("antmaze", 0.9, 10.0, "antmaze")
    agent = AlignIQLAgent.from_pretrained(out)  # strict: every tensor present, the weights' hash checked
    c = agent.config
    assert c.obs_keys == ("observation", "achieved_goal", "desired_goal") and c.obs_key_dims == (27, 2, 2)
    assert c.obs_dim == 31 and c.act_dim == 8 and c.expectile == 0.9 and c.reward_shift == -1.0
    assert c.env_id == "AntMaze_UMaze-v4" and c.dataset_id == ANTMAZE_ID

    # the eval env is the dataset's: the D4RL U-maze map (start cell (1, 1), goal cell (3, 1)), its time limit
    results = json.loads((out / "results.json").read_text())
    assert results["evaluated"] and results["lengths"] == [ANTMAZE_EVAL_STEPS]
    assert results["success_rate"] == 0.0 and results["terminates_at_goal"] is False
    env = antmaze_dataset.recover_environment(eval_env=True)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs["achieved_goal"], [-4.0, 4.0], atol=1.01)  # cell centre +- position noise
    np.testing.assert_allclose(obs["desired_goal"], [-4.0, -4.0], atol=1.01)
    assert agent.act(obs).shape == (8,)
    again = evaluate(agent, env, episodes=1, seed=0)
    assert again.returns == results["returns"] and again.lengths == results["lengths"]
    env.close()
    # the config carries that eval env, so the agent is scored in its map with no dataset at hand
    assert c.eval_env["id"] == "AntMaze_UMaze-v4" and c.eval_env["max_episode_steps"] == ANTMAZE_EVAL_STEPS
    assert c.eval_env["kwargs"]["maze_map"][1][1] == "r" and c.eval_env["kwargs"]["maze_map"][3][1] == "g"
    alone = evaluate(agent, episodes=1, seed=0)
    assert alone.returns == results["returns"] and alone.lengths == results["lengths"]

    # the replay looks down on the whole maze: the red goal sphere is in the first frame
    import imageio.v2 as imageio

    frame = imageio.get_reader(out / "replay.mp4").get_data(0).astype(int)
    red = (frame[..., 0] > 150) & (frame[..., 1] < 60) & (frame[..., 2] < 60)
    assert red.sum() > 100

    card = (out / "README.md").read_text()
    assert card.index("success_rate") < card.index("mean_reward")  # model-index headline
    assert "| **success rate** | **0.0 %**" in card and "100 x the success rate" in card


def test_resuming_a_run_trained_on_other_observation_keys_says_so(antmaze_dataset, tmp_path):
    out = tmp_path / "old-keys"
    common = [*TINY_ARGS, "--dataset", ANTMAZE_ID, "--steps", "2", "--eval-episodes", "0", "--output-dir", str(out)]
    assert train.main(common) == 0
    tc = json.loads((out / "train_config.json").read_text())
    tc["dataset"]["obs_keys"] = ["observation", "desired_goal"]  # as written before achieved_goal was kept
    (out / "train_config.json").write_text(json.dumps(tc))
    with pytest.raises(SystemExit, match=r"trained on the observation keys \['observation', 'desired_goal'\]"):
        train.main([*common, "--resume"])


def test_a_pointmaze_agent_trained_before_achieved_goal_was_kept_still_evaluates():
    # its config.json records observation + desired_goal: it takes those keys from the env's full dict
    legacy = tiny_agent(obs_dim=6, act_dim=2, obs_keys=("observation", "desired_goal"), obs_key_dims=(4, 2))
    result = evaluate(legacy, "PointMaze_UMaze-v3", episodes=1, max_episode_steps=3)
    assert result.lengths == [3] and result.success_rate is not None


def test_quality_benchmark_covers_both_antmaze_datasets_and_keeps_a_longer_budget_apart(tmp_path, monkeypatch):
    from benchmarks import common, quality

    assert {"bench/antmaze/umaze-v0", "bench/antmaze/medium-diverse-v0"} <= set(quality.DATASETS)
    assert quality.metric_name("bench/antmaze/umaze-v0") == "success rate (%)"
    assert quality.score_of({"success_rate": 0.3, "normalized_score": 250.0}) == 30.0
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(quality, "RESULTS", tmp_path)
    monkeypatch.setattr(quality, "plot", lambda summary, path: None)
    runs = []

    def fake_ours(dataset, seed, args):
        runs.append(args.steps)
        return {"curve": [], "final": {m: {"score": float(args.steps)} for m in quality.VARIANTS}}

    monkeypatch.setattr(quality, "run_ours", fake_ours)
    base = ["--datasets", "bench/antmaze/umaze-v0", "--seeds", "0", "--skip-d3rlpy"]
    quality.main([*base, "--steps", "30000"])
    quality.main([*base, "--steps", "200000", "--tag", "200k"])  # not merged into the 30k seeds: trains
    assert runs == [30000, 200000]
    long = json.loads((tmp_path / "quality_bench_antmaze_umaze-v0_200k.json").read_text())
    assert long["tag"] == "200k" and long["table"]["AlignIQL"]["mean"] == 200000.0
    assert "tag" not in json.loads((tmp_path / "quality_bench_antmaze_umaze-v0.json").read_text())
    with pytest.raises(SystemExit):
        quality.main([*base, "--tag", "../x"])
