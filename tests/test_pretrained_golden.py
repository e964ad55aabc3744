"""Golden actions of the shipped agent (aligniql/pretrained/hopper-medium-v0, the one `make demo` loads).

The numbers below were generated once by running the current code (commit cb52e75's sampling and extraction,
model.safetensors sha256 dc9ff953...) on a CPU, with the observations and calls exactly as in these tests:

    obs = np.random.default_rng(5).normal(size=(3, 11)) * 0.5 + agent.obs_mean.numpy()
    agent.act(obs, extraction=rule, generator=0)
    agent.candidates(obs[0], num_samples=4, generator=0)

They change only if sampling, extraction or the shipped file changes on purpose; then regenerate them the same
way and say why in the commit. (Seed 5 was chosen because every rule's best candidate leads the runner-up by
more than 0.04 in log-weight, so float rounding on another CPU cannot flip an argmax.)
"""

import numpy as np
import pytest
import torch

from aligniql import AlignIQLAgent, demo

GOLDEN = {
    "aligniql": [[0.134012, 0.938512, 0.100443],
                 [-0.592759, 0.487547, 0.031180],
                 [-0.363438, 0.785036, 0.449436]],
    "idql": [[0.510109, 0.281466, 0.970925],
             [0.262268, 0.366661, 0.928596],
             [0.224334, 0.375801, 0.971081]],
    "aligniql_hard": [[0.510109, 0.281466, 0.970925],
                      [0.262268, 0.366661, 0.928596],
                      [0.224334, 0.375801, 0.971081]],
    "gaussian": [[0.922340, 0.999903, -0.197931],
                 [0.572350, 0.996758, 0.593791],
                 [0.068896, 0.898802, 0.935990]],
}
GOLDEN_Q = [118.49066162109375, 117.97016143798828, 118.72069549560547, 118.62498474121094]
GOLDEN_V = 79.97624969482422


@pytest.fixture(scope="module")
def shipped():
    agent = AlignIQLAgent.from_pretrained(demo.EMBEDDED)
    obs = np.random.default_rng(5).normal(size=(3, 11)) * 0.5 + agent.obs_mean.numpy()
    return agent, obs


@pytest.mark.parametrize("rule", sorted(GOLDEN))
def test_shipped_agent_golden_actions(shipped, rule):
    agent, obs = shipped
    c = agent.config
    if (rule == "aligniql_hard" and not c.use_multipliers) or (rule == "gaussian" and not c.use_gaussian_actor):
        pytest.skip(f"the shipped agent has no {rule} networks")
    np.testing.assert_allclose(agent.act(obs, extraction=rule, generator=0), GOLDEN[rule], atol=1e-4, rtol=0)


def test_shipped_agent_golden_candidates(shipped):
    agent, obs = shipped
    cand = agent.candidates(obs[0], num_samples=4, generator=0)
    torch.testing.assert_close(cand.q, torch.tensor([GOLDEN_Q]), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(cand.v, torch.tensor([GOLDEN_V]), rtol=1e-5, atol=1e-4)


def test_shipped_antmaze_agent_carries_its_maze():
    """The AntMaze agent shipped next to the hopper one: strict load (hash checked), the three goal-env keys,
    and the D4RL U-maze evaluation map in its config, so `aligniql-demo --agent` scores it offline."""
    from pathlib import Path

    agent = AlignIQLAgent.from_pretrained(Path(demo.EMBEDDED).parent / "antmaze-umaze-v0")
    c = agent.config
    assert c.obs_keys == ("observation", "achieved_goal", "desired_goal") and c.act_dim == 8
    assert c.expectile == 0.9 and c.reward_shift == -1.0
    assert c.eval_env["id"] == "AntMaze_UMaze-v4" and c.eval_env["max_episode_steps"] == 700
    assert c.eval_env["kwargs"]["maze_map"][1][1] == "r" and c.eval_env["kwargs"]["maze_map"][3][1] == "g"
    obs = {k: np.zeros(d, np.float32) for k, d in zip(c.obs_keys, c.obs_key_dims)}
    action = agent.act(obs, generator=0)
    assert action.shape == (8,) and np.abs(action).max() <= 1
