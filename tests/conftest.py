"""Shared fixtures. The whole suite is offline: huggingface_hub reads these variables at import time."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from aligniql import AlignIQLAgent, AlignIQLConfig  # noqa: E402

TINY = dict(hidden_dim=32, denoiser_hidden_dim=32, denoiser_blocks=1, time_dim=8, num_samples=4)


def tiny_config(**overrides) -> AlignIQLConfig:
    """A config small enough that a whole test runs in milliseconds."""
    return AlignIQLConfig(**{"obs_dim": 11, "act_dim": 3, **TINY, **overrides})


def with_unit_statistics(agent: AlignIQLAgent) -> AlignIQLAgent:
    """Identity observation statistics, as an untrained agent has none (acting without them is refused)."""
    agent.set_normalization(np.zeros(agent.config.obs_dim), np.ones(agent.config.obs_dim))
    return agent


def tiny_agent(seed: int = 0, **overrides) -> AlignIQLAgent:
    torch.manual_seed(seed)
    return with_unit_statistics(AlignIQLAgent(tiny_config(**overrides)))


@pytest.fixture
def agent() -> AlignIQLAgent:
    return tiny_agent()


@pytest.fixture
def dict_agent() -> AlignIQLAgent:
    return tiny_agent(obs_dim=6, act_dim=2, obs_keys=("observation", "desired_goal"), obs_key_dims=(4, 2))


CUDA = [pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
