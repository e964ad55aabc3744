"""`aligniql.evaluate`: real MuJoCo and PointMaze envs, vector envs, seeds, Minari reference scores, CLI, video."""

from __future__ import annotations

import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import pytest
import torch

import aligniql
from aligniql import AlignIQLAgent, AlignIQLConfig, EvalResult, evaluate
from aligniql.evaluation import _Policy
from tests.conftest import with_unit_statistics

gym.register_envs(gymnasium_robotics)
TINY = {"hidden_dim": 32, "denoiser_hidden_dim": 32, "denoiser_blocks": 1, "time_dim": 8, "num_samples": 4}
GOAL = {"obs_dim": 6, "act_dim": 2, "obs_keys": ("observation", "desired_goal"), "obs_key_dims": (4, 2)}
AutoresetMode = gym.vector.AutoresetMode


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy 2-core machine the spinning second
    thread makes each act() call ~20x slower; restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_agent(seed: int = 0, **overrides) -> AlignIQLAgent:
    torch.manual_seed(seed)
    return with_unit_statistics(AlignIQLAgent(AlignIQLConfig(**{"obs_dim": 11, "act_dim": 3, **TINY, **overrides})))


class UnevenGoalEnv(gym.Env):
    """Goal env whose episode length, termination and success depend on the reset seed, rewards on the action."""

    observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, (4,)),
                                         "desired_goal": gym.spaces.Box(-np.inf, np.inf, (2,))})
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    continuing_task = False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.horizon = 0, int(self.np_random.integers(2, 7))
        self.goal_episode = bool(self.np_random.integers(2))
        return self._obs(), {"success": False}

    def _obs(self):
        return {"observation": self.np_random.normal(size=4), "desired_goal": np.full(2, self.t, dtype=np.float64)}

    def step(self, action):
        self.t += 1
        end = self.t >= self.horizon
        reward = float(self.np_random.normal()) + float(action[0])
        return self._obs(), reward, end and self.goal_episode, end and not self.goal_episode, \
            {"success": end and self.goal_episode}


def same_episodes(a: EvalResult, b: EvalResult) -> None:
    assert a.returns == b.returns and a.lengths == b.lengths and a.successes == b.successes


def test_hopper_vector_envs_match_single_env():
    agent = make_agent()
    single = evaluate(agent, "Hopper-v5", episodes=4, max_episode_steps=20, seed=3)
    vector = evaluate(agent, "Hopper-v5", episodes=4, num_envs=3, max_episode_steps=20, seed=3)
    assert single.num_envs == 1 and vector.num_envs == 3 and single.env_id == "Hopper-v5"
    same_episodes(single, vector)
    assert len(set(single.returns)) == 4 and all(1 <= n <= 20 for n in single.lengths)
    assert single.successes is None and single.success_rate is None and single.terminates_at_goal is None
    assert single.normalized_score is None and single.mean_return == pytest.approx(np.mean(single.returns))
    assert evaluate(agent, "Hopper-v5", episodes=4, max_episode_steps=20, seed=4).returns != single.returns
    json.dumps(single.to_dict())
    assert "Hopper-v5" in str(single) and "seeds 3..6" in str(single)


def test_async_vector_env_and_training_mode_restored():
    agent = make_agent()
    agent.train()
    sync = evaluate(agent, "Hopper-v5", episodes=3, num_envs=1, max_episode_steps=15)
    asyn = evaluate(agent, "Hopper-v5", episodes=3, num_envs=2, vectorization="async", max_episode_steps=15)
    same_episodes(sync, asyn)
    assert agent.training


def test_pointmaze_dict_observations_and_goal_termination():
    agent = make_agent(**GOAL)
    result = evaluate(agent, "PointMaze_UMaze-v3", episodes=2, max_episode_steps=20)
    assert result.successes is not None and len(result.successes) == 2 and result.success_rate is not None
    assert result.terminates_at_goal is False  # default continuing_task=True: the return counts steps at the goal
    assert "success rate" in str(result)
    # softmax selection draws extra randomness per episode; still independent of num_envs
    dense = [evaluate(agent, "PointMaze_UMazeDense-v3", episodes=3, num_envs=n, vectorization=v,
                      max_episode_steps=15, selection="softmax", num_samples=8) for n, v in ((1, "sync"), (2, "async"))]
    same_episodes(*dense)
    assert len(set(dense[0].returns)) == 3 and dense[1].terminates_at_goal is False
    env = gym.make("PointMaze_UMaze-v3", continuing_task=False, max_episode_steps=10)
    assert evaluate(agent, env, episodes=1).terminates_at_goal is True
    env.reset(seed=0)  # an env passed in stays usable


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_user_vector_envs_in_every_autoreset_mode(mode):
    agent = make_agent(**GOAL)
    single = evaluate(agent, UnevenGoalEnv(), episodes=7, seed=10)
    assert len(set(single.lengths)) > 1 and 0 < sum(single.successes) < 7  # uneven episodes, some at the goal
    assert single.terminates_at_goal is True and single.success_rate == pytest.approx(np.mean(single.successes))
    envs = gym.vector.SyncVectorEnv([UnevenGoalEnv] * 3, autoreset_mode=mode)
    same_episodes(single, evaluate(agent, envs, episodes=7, seed=10))
    capped = evaluate(agent, envs, episodes=2, seed=10, max_episode_steps=2)
    assert capped.lengths == [2, 2] and capped.num_envs == 3


def test_any_agent_with_act():
    class Constant:
        def act(self, obs):
            return np.full((len(obs["observation"]), 2), 0.5, dtype=np.float32)

    result = evaluate(Constant(), gym.vector.SyncVectorEnv([UnevenGoalEnv] * 2), episodes=3, seed=1)
    assert len(result.returns) == 3 and result.successes is not None


def test_async_without_shared_memory_needs_disabled_autoreset():
    envs = gym.vector.AsyncVectorEnv([UnevenGoalEnv] * 2, shared_memory=False)
    try:
        with pytest.raises(ValueError, match="DISABLED"):
            evaluate(make_agent(**GOAL), envs, episodes=2)
    finally:
        envs.close()


@pytest.mark.parametrize("selection", ["argmax", "softmax"])
def test_batched_acting_equals_acting_alone(selection):
    """Evaluation batches sub-envs through the agent's core; each row must act as act() does alone."""
    agent = make_agent(selection=selection)
    obs = np.random.default_rng(0).normal(size=(3, 11))
    gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    batched = _Policy(agent, {})(obs, gens)
    alone = np.stack([agent.act(o, generator=torch.Generator().manual_seed(s)) for o, s in zip(obs, (5, 6, 7))])
    np.testing.assert_array_equal(batched, alone)


def test_mismatched_agents_are_refused():
    with pytest.raises(ValueError, match="flat observations"):
        evaluate(make_agent(obs_dim=6), "Hopper-v5", episodes=1)
    with pytest.raises(ValueError, match="act_dim=2"):
        evaluate(make_agent(act_dim=2), "Hopper-v5", episodes=1)
    with pytest.raises(ValueError, match="dict observations"):
        evaluate(make_agent(**GOAL), "Hopper-v5", episodes=1)
    with pytest.raises(ValueError, match="flat observations"):
        evaluate(make_agent(), "PointMaze_UMaze-v3", episodes=1)
    with pytest.raises(TypeError, match="generator"):
        evaluate(make_agent(), "Hopper-v5", episodes=1, generator=torch.Generator())
    with pytest.warns(UserWarning, match="made for Walker2d-v5"):
        evaluate(make_agent(env_id="Walker2d-v5"), "Hopper-v5", episodes=1, max_episode_steps=3)


def test_normalized_score_from_local_minari_dataset(tmp_path, monkeypatch):
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    rng = np.random.default_rng(0)
    buffers = [EpisodeBuffer(id=i, observations=rng.normal(size=(6, 11)), actions=rng.uniform(-1, 1, (5, 3)).astype(
        np.float32), rewards=rng.normal(size=5), terminations=np.zeros(5, bool), truncations=np.eye(5, dtype=bool)[4],
        infos={}) for i in range(2)]
    minari.create_dataset_from_buffers("test/hopper/tiny-v0", buffers, env="Hopper-v5", eval_env="Hopper-v5",
                                       algorithm_name="random", ref_min_score=-20.0, ref_max_score=3000.0)
    agent = make_agent()
    result = evaluate(agent, "test/hopper/tiny-v0", episodes=2, max_episode_steps=10)
    assert result.dataset_id == "test/hopper/tiny-v0" and result.env_id == "Hopper-v5"
    expected = 100 * (np.array(result.returns) + 20.0) / 3020.0
    assert result.normalized_score == pytest.approx(expected.mean())
    assert result.normalized_score_std == pytest.approx(expected.std())
    assert "normalized score" in str(result)
    same_episodes(result, evaluate(agent, "Hopper-v5", episodes=2, max_episode_steps=10))
    with pytest.raises(FileNotFoundError, match="MINARI_DATASETS_PATH"):
        evaluate(agent, "test/hopper/missing-v0", episodes=1)


def test_config_reference_scores_apply_to_their_env():
    agent = make_agent(env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=10.0)
    result = evaluate(agent, "Hopper-v5", episodes=1, max_episode_steps=5)
    assert result.normalized_score == pytest.approx(10 * result.returns[0])


@pytest.mark.parametrize("dict_obs", [False, True], ids=["flat", "dict"])
def test_hand_written_loops(dict_obs):
    env_id, agent = ("PointMaze_UMaze-v3", make_agent(**GOAL)) if dict_obs else ("Hopper-v5", make_agent())
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    for _ in range(3):
        action = agent.act(obs)
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    envs = gym.make_vec(env_id, num_envs=2)
    obs, info = envs.reset(seed=0)
    for _ in range(3):
        actions = agent.act(obs)
        assert envs.action_space.contains(actions)
        obs, *_ = envs.step(actions)
    envs.close()


def test_cli_on_a_saved_agent(tmp_path, capsys):
    folder = make_agent(env_id="Hopper-v5").save_pretrained(tmp_path / "agent")
    from aligniql.eval_cli import main

    assert main([str(folder), "--episodes", "2", "--max-episode-steps", "5", "--num-envs", "2",
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "evaluation on Hopper-v5: 2 episodes" in out and "episode" in out
    assert json.loads((tmp_path / "r.json").read_text())["episodes"] == 2
    assert main([str(folder), "--episodes", "1", "--max-episode-steps", "3", "--extraction", "idql",
                 "--selection", "softmax", "--temperature", "0.01", "--eta", "2", "--precision", "bf16"]) == 0
    assert "Hopper-v5: 1 episode, seed 0, 1 env\n" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(folder), "--extraction", "awr"])
    assert "invalid choice: 'awr'" in capsys.readouterr().err
    # importing the CLI module rebinds the package attribute; it must still evaluate
    assert isinstance(aligniql.evaluate(make_agent(), "Hopper-v5", episodes=1, max_episode_steps=2), EvalResult)


def test_cli_errors_are_one_line_with_what_to_do(tmp_path, capsys):
    folder = make_agent(env_id="Hopper-v5").save_pretrained(tmp_path / "agent")
    from aligniql.eval_cli import main

    cases = [(["--env", "Walker2d-v5"], "flat observations of shape (11,)"),
             (["--env", "hopper-medium-v2"], "did you mean Hopper-v"),
             (["--env", "HalfCheetah"], "did you mean HalfCheetah-v"),
             (["--env", "nowhere/hopper/medium-v0"], "point MINARI_DATASETS_PATH at the folder")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as e:
            main([str(folder), "--episodes", "1", *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err, extra
    (folder / "model.safetensors").write_bytes(b"\x00" * 4)  # truncated
    with pytest.raises(SystemExit):
        main([str(folder)])
    assert "model.safetensors is damaged: its sha256" in capsys.readouterr().err


def test_evaluate_takes_a_saved_folder(tmp_path):
    folder = make_agent(env_id="Hopper-v5").save_pretrained(tmp_path / "agent")
    from_folder = evaluate(str(folder), "Hopper-v5", episodes=2, max_episode_steps=4)
    same_episodes(from_folder, evaluate(AlignIQLAgent.from_pretrained(folder), "Hopper-v5", episodes=2,
                                        max_episode_steps=4))


def _rendering_error() -> str | None:
    try:
        env = gym.make("PointMaze_UMaze-v3", render_mode="rgb_array")
        env.reset(seed=0)
        env.render()
        env.close()
    except Exception as e:  # noqa: BLE001 - whatever breaks, the test is skipped with the reason
        return f"{type(e).__name__}: {e}"
    return None


def test_replay_video(tmp_path):
    if (error := _rendering_error()) is not None:
        pytest.skip(f"headless rendering unavailable here: {error}")
    import imageio.v2 as imageio

    result = evaluate(make_agent(**GOAL), "PointMaze_UMaze-v3", episodes=2, max_episode_steps=12,
                      record_video=tmp_path / "replay.mp4")
    assert result.video_path is not None and os.path.getsize(result.video_path) > 0
    frames = imageio.mimread(result.video_path)
    assert len(frames) >= 2 and frames[0].ndim == 3 and frames[0].std() > 0


def test_video_failure_only_warns(tmp_path, monkeypatch):
    import aligniql.video

    def broken(*args, **kwargs):
        raise RuntimeError("no GL")

    monkeypatch.setattr(aligniql.video, "_record", broken)
    with pytest.warns(UserWarning, match="replay video not written"):
        result = evaluate(make_agent(), "Hopper-v5", episodes=1, max_episode_steps=3, record_video=tmp_path / "x.mp4")
    assert result.video_path is None and len(result.returns) == 1
