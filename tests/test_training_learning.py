"""A learning check on a one-step bandit: the critic learns r(a) and the reward's expectile, the diffusion
policy clones a deterministic behaviour. Small nets and a few thousand steps, so it runs in the default suite."""

from __future__ import annotations

import pytest
import torch

from aligniql import AlignIQLAgent, AlignIQLConfig
from tests.training_fixtures import single_thread  # noqa: F401
from training.datasets import Transitions
from training.trainer import Trainer, TrainerConfig

SMALL = dict(hidden_dim=64, denoiser_hidden_dim=64, denoiser_blocks=1, time_dim=16, denoiser_dropout=0.0)
OBS_DIM = 2


def bandit(actions_of, n: int = 4096, seed: int = 0) -> Transitions:
    """One-step episodes (mask 0): s ~ U(-1, 1)^2, a = actions_of(s, g), reward = a."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, OBS_DIM, generator=g) * 2 - 1
    actions = actions_of(obs, g)
    return Transitions(obs, actions, actions[:, 0].clone(), torch.zeros(n, OBS_DIM), torch.zeros(n))


def make(data: Transitions, seed: int, **trainer) -> Trainer:
    torch.manual_seed(seed)
    agent = AlignIQLAgent(AlignIQLConfig(obs_dim=OBS_DIM, act_dim=1, expectile=0.9, **SMALL))
    agent.set_normalization(data.obs.mean(0).numpy(), data.obs.std(0).numpy())  # the data's, as training does
    return Trainer(agent, data, TrainerConfig(batch_size=256, **trainer), seed=seed)


def uniform_expectile(tau: float) -> float:
    """The tau-expectile m of U(-1, 1), by bisection on tau E[(X-m)+] = (1-tau) E[(m-X)+] over a fine grid."""
    x = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    lo, hi = -1.0, 1.0
    for _ in range(60):
        m = (lo + hi) / 2
        if tau * (x - m).clamp(min=0).mean() > (1 - tau) * (m - x).clamp(min=0).mean():
            lo = m
        else:
            hi = m
    return (lo + hi) / 2


@pytest.mark.parametrize("seed", [0])  # seeds 1 and 2 pass with the same margins
def test_critic_learns_the_reward_and_its_expectile(seed):
    data = bandit(lambda s, g: torch.rand(len(s), 1, generator=g) * 2 - 1, seed=seed)
    trainer = make(data, seed, steps=1000, critic_lr=1e-3, polyak=0.05)
    for _ in range(1000):
        trainer.train_step()
    agent = trainer.agent
    s = torch.rand(64, OBS_DIM, generator=torch.Generator().manual_seed(99)) * 2 - 1
    a = torch.linspace(-1, 1, 21)
    with torch.no_grad():
        obs = agent.normalize_obs(s)
        q = agent.critic(obs.repeat_interleave(21, 0), a.repeat(64).unsqueeze(-1)).view(64, 21)
        v = agent.value(obs)
    q_err = (q - a).abs().max().item()
    m = uniform_expectile(0.9)
    assert m == pytest.approx(0.5, abs=1e-4)  # closed form for U(-1, 1): (1 - r) / (1 + r), r = sqrt(0.1 / 0.9)
    print(f"max |Q - r| {q_err:.3f}, V mean {v.mean():.3f} (true {m:.3f}), V range {v.min():.3f}..{v.max():.3f}")
    assert q_err < 0.15
    assert (v - m).abs().max().item() < 0.1


def behaviour(s: torch.Tensor) -> torch.Tensor:
    return 0.8 * torch.sin(2.0 * s[:, :1]) * torch.cos(s[:, 1:])


@pytest.mark.parametrize("seed", [0])  # seeds 1 and 2 pass with the same margins
def test_diffusion_policy_clones_a_deterministic_behaviour(seed):
    data = bandit(lambda s, g: behaviour(s), seed=seed)
    trainer = make(data, seed, steps=1200, denoiser_lr=1e-3, ema_rate=0.05)
    for _ in range(1200):
        trainer.train_step()
    s = torch.rand(200, OBS_DIM, generator=torch.Generator().manual_seed(99)) * 2 - 1
    actions = trainer.agent.act(s, extraction="idql", num_samples=1, generator=0)
    err = (actions - behaviour(s)).abs()
    print(f"BC mean |a - f(s)| {err.mean():.3f}, max {err.max():.3f}")
    assert err.mean().item() < 0.05 and err.max().item() < 0.2
