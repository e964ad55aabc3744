"""The act() contract: what the env gives in, what the env takes out."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from aligniql import Candidates
from tests.conftest import CUDA, tiny_agent

DEVICES = ["cpu", *CUDA]


def _obs(batch, kind, device, dict_obs):
    rng = np.random.default_rng(0)
    lead = (batch,) if batch else ()
    if dict_obs:
        arrays = {"observation": rng.normal(size=(*lead, 4)), "achieved_goal": rng.normal(size=(*lead, 2)),
                  "desired_goal": rng.normal(size=(*lead, 2))}
        return {k: torch.as_tensor(v, device=device) if kind == "torch" else v for k, v in arrays.items()}
    arr = rng.normal(size=(*lead, 11))
    return torch.as_tensor(arr, dtype=torch.float32, device=device) if kind == "torch" else arr


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dict_obs", [False, True], ids=["flat", "dict"])
@pytest.mark.parametrize("batch", [0, 5], ids=["single", "batched"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_act_contract(kind, batch, dict_obs, device):
    kw = dict(obs_dim=6, act_dim=2, obs_keys=("observation", "desired_goal"), obs_key_dims=(4, 2)) if dict_obs else {}
    agent = tiny_agent(**kw, action_low=(-0.4,) * (2 if dict_obs else 3),
                       action_high=(0.4,) * (2 if dict_obs else 3)).to(device)
    act_dim = agent.config.act_dim
    out = agent.act(_obs(batch, kind, device, dict_obs))
    assert out.shape == ((batch, act_dim) if batch else (act_dim,))
    if kind == "numpy":
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        space = gym.spaces.Box(-0.4, 0.4, (act_dim,), np.float32)
        rows = out if batch else out[None]
        assert all(space.contains(a) for a in rows)
    else:
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == device
        assert out.abs().max() <= 0.4


def test_hopper_action_space_contains():
    env = gym.make("Hopper-v5")
    agent = tiny_agent()
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action = agent.act(obs)
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)


def test_generator_makes_actions_reproducible(agent):
    obs = np.random.default_rng(1).normal(size=(3, 11))
    a = agent.act(obs, generator=torch.Generator().manual_seed(7))
    b = agent.act(obs, generator=torch.Generator().manual_seed(7))
    c = agent.act(obs, generator=torch.Generator().manual_seed(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_batched_equals_rowwise_candidates(agent):
    # candidates of a state do not depend on what else is in the batch
    obs = torch.randn(4, 11)
    cand = agent.propose(agent.normalize_obs(obs), num_samples=8, extraction="idql", eta=1.0,
                         noise=torch.randn(5, 32, 3))
    assert isinstance(cand, Candidates)
    assert cand.actions.shape == (4, 8, 3) and cand.q.shape == (4, 8) and cand.v.shape == (4,)
    torch.testing.assert_close(cand.q, agent.critic(obs.repeat_interleave(8, 0), cand.actions.reshape(32, 3))
                               .view(4, 8))


@pytest.mark.parametrize("extraction", ["aligniql", "idql", "idql_expectile", "aligniql_hard", "gaussian"])
@pytest.mark.parametrize("selection", ["argmax", "softmax"])
def test_every_rule_runs(extraction, selection):
    agent = tiny_agent(use_multipliers=True, use_gaussian_actor=True)
    if (extraction, selection) == ("idql_expectile", "argmax"):  # two-valued weights: only sampling means anything
        with pytest.raises(ValueError, match="selection='softmax'"):
            agent.act(np.zeros((2, 11)), extraction=extraction, selection=selection, num_samples=3)
        return
    out = agent.act(np.zeros((2, 11)), extraction=extraction, selection=selection, num_samples=3)
    assert out.shape == (2, 3) and np.isfinite(out).all()


def test_act_picks_the_argmax_candidate(agent):
    # end to end: the returned action is the candidate with the largest log-weight under the same noise
    obs = torch.randn(2, 11)
    noise = torch.randn(5, 2 * 6, 3, generator=torch.Generator().manual_seed(3))
    cand = agent.propose(agent.normalize_obs(obs), num_samples=6, extraction="aligniql", eta=1.0, noise=noise)
    best = cand.actions[torch.arange(2), cand.log_weights.argmax(-1)]
    out = agent.act(obs, num_samples=6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, agent.scale_action(best))


@pytest.mark.parametrize("extraction", ["aligniql", "aligniql_hard", "idql"])
def test_candidates_are_what_act_chooses_from(extraction):
    agent = tiny_agent(use_multipliers=True, action_low=[-2.0, 0.0, -1.0], action_high=[2.0, 1.0, 3.0])
    obs = np.random.default_rng(1).normal(size=(3, 11))
    cand = agent.candidates(obs, num_samples=7, extraction=extraction, generator=torch.Generator().manual_seed(4))
    assert cand.actions.shape == (3, 7, 3) and cand.q.shape == (3, 7) and cand.log_weights.shape == (3, 7)
    low, high = torch.tensor([-2.0, 0.0, -1.0]), torch.tensor([2.0, 1.0, 3.0])
    assert bool(((cand.actions >= low) & (cand.actions <= high)).all())  # env units, not [-1, 1]
    best = cand.actions[torch.arange(3), cand.log_weights.argmax(-1)].numpy()
    act = agent.act(obs, num_samples=7, extraction=extraction, selection="argmax",
                    generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(act, best, rtol=1e-6, atol=1e-6)
    one = agent.candidates(obs[0], num_samples=7, extraction=extraction, generator=torch.Generator().manual_seed(4))
    assert one.actions.shape == (1, 7, 3)  # one observation is a batch of one


def test_expectile_candidates_carry_the_two_iql_weights():
    agent = tiny_agent()
    cand = agent.candidates(np.zeros((2, 11)), num_samples=9, extraction="idql_expectile",
                            generator=torch.Generator().manual_seed(0))
    above = cand.q > cand.v.unsqueeze(-1)
    torch.testing.assert_close(cand.log_weights.exp(), torch.where(above, 0.7, 0.3))


def test_candidates_refuse_what_has_no_candidates():
    agent = tiny_agent(use_gaussian_actor=True)
    with pytest.raises(ValueError, match="no candidates"):
        agent.candidates(np.zeros(11), extraction="gaussian")
    with pytest.raises(ValueError, match="no candidates"):  # said first, whether or not the actor exists
        tiny_agent().candidates(np.zeros(11), extraction="gaussian")
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        agent.candidates(np.zeros(11), num_samples=0)


def test_override_num_samples_and_rule(agent):
    obs = np.zeros(11)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert not np.array_equal(agent.act(obs, num_samples=1, generator=g()),
                              agent.act(obs, num_samples=32, generator=g()))


def test_another_extraction_gets_its_own_selection_and_temperature_not_the_saved_rules():
    """An agent saved with the locomotion default (idql, softmax at T = 1/3): a call naming another extraction
    acts by that rule's own selection (argmax; softmax at T = 1 for idql_expectile), never by a softmax over
    -(Q-V)^2 at the saved temperature."""
    agent = tiny_agent(extraction="idql", selection="softmax", temperature=1 / 3)
    assert agent._settings(None, None, None, None, None)[1:] == ("idql", "softmax", agent.config.eta, 1 / 3)
    assert agent._settings(None, "idql", None, None, None)[2:4] == ("softmax", agent.config.eta)  # the saved rule
    assert agent._settings(None, "aligniql", None, None, None)[2] == "argmax"
    assert agent._settings(None, "idql_expectile", None, None, None)[2:] == ("softmax", agent.config.eta, 1.0)
    assert agent._settings(None, "aligniql", "softmax", None, 0.1)[2:] == ("softmax", agent.config.eta, 0.1)
    obs = np.zeros(11)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    np.testing.assert_array_equal(agent.act(obs, extraction="aligniql", generator=g()),
                                  agent.act(obs, extraction="aligniql", selection="argmax", generator=g()))


def test_observation_normalization_applies(agent):
    agent.set_normalization(np.full(11, 5.0), np.full(11, 2.0))
    obs = torch.full((1, 11), 9.0)
    torch.testing.assert_close(agent.normalize_obs(obs), torch.full((1, 11), 2.0))
    with pytest.raises(ValueError, match="finite with std > 0"):
        agent.set_normalization(np.zeros(11), np.zeros(11))


def test_action_scaling_round_trip():
    agent = tiny_agent(action_low=(-2.0, 0.0, -1.0), action_high=(2.0, 1.0, 3.0))
    a = torch.tensor([[-1.0, 0.0, 1.0]])
    torch.testing.assert_close(agent.scale_action(a), torch.tensor([[-2.0, 0.5, 3.0]]))
    torch.testing.assert_close(agent.unscale_action(agent.scale_action(a)), a)


def test_act_samples_without_dropout_in_train_mode_and_restores_modes():
    agent = tiny_agent(denoiser_dropout=0.5)
    obs = np.random.default_rng(0).normal(size=(4, 11))
    expected = agent.act(obs, generator=0)
    cand = agent.candidates(obs, generator=0)
    agent.train()  # e.g. left so by a training loop: dropout must not change what the agent does
    assert np.array_equal(agent.act(obs, generator=0), expected)
    torch.testing.assert_close(agent.candidates(obs, generator=0).actions, cand.actions, rtol=0, atol=0)
    assert all(m.training for m in agent.modules())  # the caller's modes are given back
    agent.eval()
    agent.denoiser.train()
    agent.act(obs)
    assert agent.denoiser.training and not agent.training


def test_bf16_precision_gives_valid_close_actions(agent):
    obs = np.random.default_rng(2).normal(size=(8, 11))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cand32 = agent.propose(torch.as_tensor(obs, dtype=torch.float32), num_samples=4, extraction="idql", eta=1.0,
                           noise=torch.randn(5, 32, 3, generator=g()))
    agent.set_precision("bf16")
    cand16 = agent.propose(torch.as_tensor(obs, dtype=torch.float32), num_samples=4, extraction="idql", eta=1.0,
                           noise=torch.randn(5, 32, 3, generator=g()))
    assert cand16.q.dtype == torch.float32 and cand16.actions.dtype == torch.float32
    torch.testing.assert_close(cand16.actions, cand32.actions, atol=0.1, rtol=0)
    out = agent.act(obs, generator=g())
    assert out.dtype == np.float32 and np.abs(out).max() <= 1
    with pytest.raises(ValueError, match="precision must be"):
        agent.set_precision("fp16")


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_fast_path_matches_eager(backend):
    agent = tiny_agent()
    obs = np.random.default_rng(3).normal(size=(4, 11))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ref = agent.act(obs, generator=g())
    agent.compile(backend=backend, fullgraph=True)
    np.testing.assert_allclose(agent.act(obs, generator=g()), ref, atol=1e-5)
    np.testing.assert_allclose(agent.act(obs, generator=g()), ref, atol=1e-5)  # second call reuses the graph


@pytest.mark.parametrize("selection", ["argmax", "softmax"])
def test_batch_invariant_rows_act_bit_identically_to_each_row_alone(agent, selection, monkeypatch):
    """The guarantee behind evaluate()'s num_envs-independent episodes: bitwise, on any CPU, because each row
    runs through exactly the kernels and shapes of a call on that row alone."""
    obs = np.random.default_rng(4).normal(size=(3, 11))
    seeds = (5, 6, 7)
    alone = [agent.act(o, selection=selection, generator=s) for o, s in zip(obs, seeds)]
    shapes = []
    core = agent._core
    monkeypatch.setattr(agent, "_core", lambda o, z, *a: shapes.append((o.shape, z.shape)) or core(o, z, *a))
    batched = agent.act(obs, selection=selection, generator=list(seeds), batch_invariant=True)
    np.testing.assert_array_equal(batched, np.stack(alone))
    n = agent.config.num_samples
    assert shapes == [((1, 11), (5, n, 3))] * 3  # one observation's block per pass, as alone
    with pytest.raises(ValueError, match="one per observation"):
        agent.act(obs, generator=[torch.Generator()] * 2)


def test_default_batching_agrees_with_rows_alone_to_float_rounding(agent):
    """Without batch_invariant the batch runs as one matmul, whose kernel MKL picks by row count: the same
    candidates, scored to float32 rounding (a few ulp through ~10 layers; 1e-5 relative leaves a margin), and
    bitwise reproducible for the same batch."""
    obs = np.random.default_rng(4).normal(size=(3, 11))
    batched = agent.candidates(obs, generator=[5, 6, 7])
    for i, s in enumerate((5, 6, 7)):
        alone = agent.candidates(obs[i], generator=s)
        torch.testing.assert_close(batched.actions[i:i + 1], alone.actions, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batched.q[i:i + 1], alone.q, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched.v[i:i + 1], alone.v, rtol=1e-5, atol=1e-5)
    again = agent.candidates(obs, generator=[5, 6, 7])
    assert torch.equal(again.actions, batched.actions) and torch.equal(again.q, batched.q)
    exact = agent.candidates(obs, generator=[5, 6, 7], batch_invariant=True)
    assert torch.equal(exact.q[1:2], agent.candidates(obs[1], generator=6).q)


@pytest.mark.parametrize("selection", ["argmax", "softmax"])
def test_cpu_passes_over_a_large_batch_choose_the_same_actions_as_one_pass(agent, selection, monkeypatch):
    import aligniql.agent as agent_module

    obs = np.random.default_rng(5).normal(size=(7, 11))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    monkeypatch.setattr(agent_module, "CPU_ROWS_PER_PASS", 10**9)
    one_pass = agent.act(obs, num_samples=8, selection=selection, generator=g())
    calls = []
    core = agent._core
    monkeypatch.setattr(agent, "_core", lambda o, *a: calls.append(o.shape[0]) or core(o, *a))
    monkeypatch.setattr(agent_module, "CPU_ROWS_PER_PASS", 3 * 8)  # 3 observations' candidates per pass
    chunked = agent.act(obs, num_samples=8, selection=selection, generator=g())
    assert calls == [3, 3, 1]
    np.testing.assert_allclose(chunked, one_pass, atol=1e-6)


def test_candidates_log_weights_follow_eta(agent):
    obs = np.random.default_rng(3).normal(size=(2, 11))
    cand = agent.candidates(obs, eta=2.5, extraction="aligniql", generator=0)
    expected = -2.5 * (cand.q - cand.v.unsqueeze(-1)).square()
    torch.testing.assert_close(cand.log_weights, expected, rtol=1e-6, atol=0)
    default = agent.candidates(obs, extraction="aligniql", generator=0)  # config eta 1, same candidates
    torch.testing.assert_close(default.log_weights, -(default.q - default.v.unsqueeze(-1)).square(), rtol=1e-6, atol=0)
    assert torch.equal(default.q, cand.q)
