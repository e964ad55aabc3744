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


def test_agent_needs_a_config():
    from aligniql import AlignIQLAgent

    with pytest.raises(TypeError, match="expects an AlignIQLConfig"):
        AlignIQLAgent({"obs_dim": 11})


def test_float64_beyond_float32_range_is_named(agent):
    obs = np.zeros(11)
    obs[2] = 1e39  # finite in float64, inf once cast to the agent's float32
    with pytest.raises(ValueError, match=r"beyond float32's range .* at index \[2\]"):
        agent.act(obs)


def test_non_finite_actions_are_never_returned(agent):
    with pytest.raises(ValueError, match=r"non-finite actions for observation row\(s\) \[1\]"):
        agent.act(np.stack([np.zeros(11), np.full(11, 1e30)]))


@pytest.mark.parametrize("kwargs", [dict(eta=float("nan")), dict(temperature=float("inf")), dict(eta=0.0),
                                    dict(temperature=-1.0)])
def test_eta_and_temperature_must_be_finite_and_positive(agent, kwargs):
    with pytest.raises(ValueError, match="must be finite and > 0"):
        agent.act(np.zeros(11), selection="softmax", **kwargs)


def test_int_seeds_stand_for_generators(agent):
    obs = np.random.default_rng(0).normal(size=(2, 11))
    np.testing.assert_array_equal(agent.act(obs, generator=5),
                                  agent.act(obs, generator=torch.Generator().manual_seed(5)))
    np.testing.assert_array_equal(agent.act(obs, generator=[5, 6]),
                                  agent.act(obs, generator=[torch.Generator().manual_seed(s) for s in (5, 6)]))
    with pytest.raises(ValueError, match="int seed"):
        agent.act(obs, generator=True)
    with pytest.raises(ValueError, match="one per observation"):
        agent.act(obs, generator=[1, 2, 3])


def test_untrained_agent_without_statistics_refuses_to_act_train_or_save(tmp_path):
    from aligniql import AlignIQLAgent
    from tests.conftest import tiny_config
    from training.datasets import Transitions
    from training.trainer import Trainer, TrainerConfig

    agent = AlignIQLAgent(tiny_config())  # normalize_obs=True and no set_normalization: no silent made-up stats
    for call in (lambda: agent.act(np.zeros(11)), lambda: agent.candidates(np.zeros(11)),
                 lambda: agent.save_pretrained(tmp_path / "a"),
                 lambda: Trainer(agent, Transitions(torch.zeros(4, 11), torch.zeros(4, 3), torch.zeros(4),
                                                    torch.zeros(4, 11), torch.ones(4)), TrainerConfig())):
        with pytest.raises(ValueError, match="statistics are not set.*set_normalization"):
            call()
    assert not (tmp_path / "a").exists()
    raw = AlignIQLAgent(tiny_config(normalize_obs=False))  # nothing to set
    assert raw.act(np.zeros(11)).shape == (3,)
