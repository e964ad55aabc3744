"""Stateless DDPM pieces: the noise schedule, forward noising and ancestral sampling (docs/algorithm.md §4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aligniql.networks import Denoiser


@dataclass(frozen=True)
class Schedule:
    """Per-step coefficients as Python floats, so the sampling loop never reads a tensor back to the host."""

    betas: tuple[float, ...]
    alphas: tuple[float, ...]
    alpha_bars: tuple[float, ...]

    @property
    def num_steps(self) -> int:
        return len(self.betas)


def make_schedule(name: str, num_steps: int) -> Schedule:
    """Betas of the ``vp`` (IDQL default), ``cosine`` or ``linear`` schedule, computed in float64."""
    T = num_steps
    if name == "vp":
        b_min, b_max = 0.1, 10.0
        alphas = [math.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2) for t in range(1, T + 1)]
        betas = [1.0 - a for a in alphas]
    elif name == "cosine":
        s = 0.008
        f = [math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
        betas = [min(1.0 - f[t + 1] / f[t], 0.999) for t in range(T)]
    elif name == "linear":
        betas = [1e-4 + (2e-2 - 1e-4) * t / max(T - 1, 1) for t in range(T)]
    else:
        raise ValueError(f"unknown beta schedule {name!r}; expected 'vp', 'cosine' or 'linear'")
    alphas = [1.0 - b for b in betas]
    alpha_bars = list(alphas)
    for t in range(1, T):
        alpha_bars[t] = alpha_bars[t - 1] * alphas[t]
    return Schedule(tuple(betas), tuple(alphas), tuple(alpha_bars))


def add_noise(actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """q(a_t | a_0): sqrt(alpha_bar_t) a_0 + sqrt(1 - alpha_bar_t) eps, for integer steps ``t`` of shape (M,)."""
    alpha_bars = torch.tensor(schedule.alpha_bars, dtype=actions.dtype, device=actions.device)[t].unsqueeze(-1)
    return alpha_bars.sqrt() * actions + (1 - alpha_bars).sqrt() * noise


def sample(denoiser: Denoiser, obs: torch.Tensor, schedule: Schedule, *, generator: torch.Generator | None = None,
           noise: torch.Tensor | None = None, clip: bool = True, temperature: float = 1.0) -> torch.Tensor:
    """DDPM ancestral sampling of one action per row of ``obs``, with sigma_t^2 = beta_t.

    Args:
        denoiser: the (EMA) noise predictor; run as is, so put it in eval mode first.
        obs: (M, S) normalized observations, already repeated once per candidate.
        schedule: from :func:`make_schedule`.
        generator: source of all randomness, for reproducible samples.
        noise: optional (T, M, A) standard normal draws: the initial sample then one per step > 0.
        clip: clip to [-1, 1] after every step (the official ``clip_sampler``).
        temperature: scale of the per-step noise (``ddpm_temperature``).

    Returns:
        (M, A) actions in [-1, 1] (when ``clip``).
    """
    T, M, A = schedule.num_steps, obs.shape[0], denoiser.act_dim
    if noise is None:
        noise = torch.randn((T, M, A), generator=generator, device=obs.device, dtype=obs.dtype)
    # The state enters the first layer linearly: project it once, not T times.
    obs_part, w_action, w_time = denoiser.split_input(obs)
    steps = torch.arange(T, device=obs.device, dtype=obs.dtype).unsqueeze(-1)
    time_part = denoiser.time_embedding(steps) @ w_time.T  # (T, H)
    x = noise[0]
    for t in reversed(range(T)):
        eps = denoiser.trunk(torch.addmm(obs_part + time_part[t], x, w_action.T))
        beta, alpha_bar = schedule.betas[t], schedule.alpha_bars[t]
        x = (x - (beta / math.sqrt(1.0 - alpha_bar)) * eps) / math.sqrt(1.0 - beta)
        if t > 0:
            x = x + (math.sqrt(beta) * temperature) * noise[t]
        if clip:
            x = x.clamp(-1.0, 1.0)
    return x
