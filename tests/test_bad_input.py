"""Bad input gets a clear error that says what was expected."""

import numpy as np
import pytest
import torch


@pytest.mark.parametrize("obs", [np.zeros(10), np.zeros((2, 12)), np.zeros((2, 3, 11)), np.zeros(()),
                                 torch.zeros(5)])
def test_wrong_shape_shows_both_accepted_shapes(agent, obs):
    with pytest.raises(ValueError, match=r"expected \(11,\) for one observation or \(batch, 11\) for a batch"):
        agent.act(obs)


def test_reset_tuple(agent):
    with pytest.raises(TypeError, match=r"\(obs, info\).*env.reset\(\)"):
        agent.act((np.zeros(11), {}))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(agent, bad):
    obs = np.zeros((3, 11))
    obs[1, 4] = bad
    with pytest.raises(ValueError, match=r"NaN or inf at index \[1, 4\]"):
        agent.act(obs)
    with pytest.raises(ValueError, match="NaN or inf"):
        agent.act(torch.as_tensor(obs))


def test_dict_given_to_flat_agent(agent):
    with pytest.raises(TypeError, match="flat observations.*got a dict"):
        agent.act({"observation": np.zeros(11)})


def test_dict_missing_key(dict_agent):
    with pytest.raises(ValueError, match=r"missing keys \['desired_goal'\]"):
        dict_agent.act({"observation": np.zeros(4), "achieved_goal": np.zeros(2)})


def test_dict_entry_wrong_shape_or_batch(dict_agent):
    with pytest.raises(ValueError, match=r"observation\['desired_goal'\] has shape \(3,\)"):
        dict_agent.act({"observation": np.zeros(4), "desired_goal": np.zeros(3)})
    with pytest.raises(ValueError, match="disagree on the batch size"):
        dict_agent.act({"observation": np.zeros((2, 4)), "desired_goal": np.zeros((3, 2))})


def test_dict_agent_accepts_preflattened_array(dict_agent):
    assert dict_agent.act(np.zeros(6)).shape == (2,)


def test_non_numeric(agent):
    with pytest.raises(TypeError, match="numbers"):
        agent.act(np.array(["a"] * 11))


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_num_samples(agent, n):
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        agent.act(np.zeros(11), num_samples=n)


def test_unknown_rules(agent):
    with pytest.raises(ValueError, match="unknown extraction 'awr'"):
        agent.act(np.zeros(11), extraction="awr")
    with pytest.raises(ValueError, match="unknown selection 'topk'"):
        agent.act(np.zeros(11), selection="topk")


def test_hard_without_multipliers(agent):
    with pytest.raises(ValueError, match="needs the multiplier nets"):
        agent.act(np.zeros(11), extraction="aligniql_hard")


def test_gaussian_without_actor(agent):
    with pytest.raises(ValueError, match="needs a Gaussian actor"):
        agent.act(np.zeros(11), extraction="gaussian")


def test_bad_eta(agent):
    with pytest.raises(ValueError, match="eta and temperature must be > 0"):
        agent.act(np.zeros(11), eta=0)


def test_agent_needs_a_config():
    from aligniql import AlignIQLAgent

    with pytest.raises(TypeError, match="expects an AlignIQLConfig"):
        AlignIQLAgent({"obs_dim": 11})
