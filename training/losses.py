"""The losses of one AlignIQL training step, as small pure functions (docs/algorithm.md §2, §3, §4.3, §6, §7.3)."""

from __future__ import annotations

import math

import torch

WEIGHT_CLIP = 100.0  # IQL clips exp-advantage weights at 100 (docs/algorithm.md §3)
_EXP_MAX = 80.0  # exp(80) ~ 5e34 still fits float32; beyond it the multiplier loss would be inf and its grads NaN


def expectile_loss(u: torch.Tensor, expectile: float) -> torch.Tensor:
    """Elementwise |expectile - 1(u < 0)| * u^2, written as the official ``where(u > 0, tau, 1 - tau) * u**2``."""
    return torch.where(u > 0, expectile, 1.0 - expectile) * u.square()


def value_loss(q: torch.Tensor, v: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's V step: expectile regression of V(s) (B,) onto the target twin-min Q(s, a) (B,), no grad into q."""
    return expectile_loss(q.detach() - v, expectile).mean()


def q_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared TD error over the twin and the batch (the AlignIQL/IDQL form, half IQL's sum)."""
    target = target.detach()
    return 0.5 * ((q1 - target).square() + (q2 - target).square()).mean()


def td_target(rewards: torch.Tensor, masks: torch.Tensor, next_v: torch.Tensor, discount: float) -> torch.Tensor:
    """y = r + discount * mask * V(s'), with mask = 1 - terminal."""
    return rewards + discount * masks * next_v.detach()


def denoising_loss(predicted_noise: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Unweighted DDPM behaviour cloning: squared error summed over action dims, averaged over the batch."""
    return (predicted_noise - noise).square().sum(-1).mean()


def weighted_denoising_loss(predicted_noise: torch.Tensor, noise: torch.Tensor,
                            weights: torch.Tensor) -> torch.Tensor:
    """mean(w * |eps_hat - eps|^2): the DDPM loss of a policy proportional to mu(a|s) w(s, a) instead of the
    behaviour mu (advantage-weighted diffusion; docs/algorithm.md §4.4). ``weights`` (B,), no grad."""
    return (weights.detach() * (predicted_noise - noise).square().sum(-1)).mean()


def multiplier_losses(alpha: torch.Tensor, beta: torch.Tensor, alpha_old: torch.Tensor, beta_old: torch.Tensor,
                      q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual losses of AlignIQL-hard's multiplier nets alpha(s), beta(s) (docs/algorithm.md §6.2).

    Args:
        alpha, beta: (B,) outputs of the nets being trained (with grad).
        alpha_old, beta_old: (B,) outputs computed before either update (detached inside).
        q: (B,) target twin-min Q at the dataset actions; v: (B,) V(s).

    Returns:
        ``(L_alpha, L_beta)``: L_alpha = mean(exp(-alpha - beta_old q - 1)) + mean(alpha) and
        L_beta = mean(exp(-alpha_old - beta q - 1)) + mean(v beta). The exponent is capped at 80 so an
        overflow cannot turn the gradients into NaN (the official code has no cap).
    """
    q, v = q.detach(), v.detach()
    l_alpha = torch.exp((-alpha - beta_old.detach() * q - 1.0).clamp(max=_EXP_MAX)).mean() + alpha.mean()
    l_beta = torch.exp((-alpha_old.detach() - beta * q - 1.0).clamp(max=_EXP_MAX)).mean() + (v * beta).mean()
    return l_alpha, l_beta


def awr_weights(q: torch.Tensor, v: torch.Tensor, awr_beta: float) -> torch.Tensor:
    """IQL's advantage weights min(exp(awr_beta (Q - V)), 100), no grad."""
    return torch.exp(awr_beta * (q - v).detach()).clamp(max=WEIGHT_CLIP)


def aligniql_weights(q: torch.Tensor, v: torch.Tensor, eta: float) -> torch.Tensor:
    """AlignIQL's weights exp(-eta (Q - V)^2) (docs/algorithm.md §7.3), no grad; clipped at 100 like IQL's."""
    return torch.exp(-eta * (q - v).detach().square()).clamp(max=WEIGHT_CLIP)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-density (B,) of actions (B, A) under a diagonal Gaussian (IQL's untransformed distribution)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def weighted_regression_loss(log_prob: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-mean(w * log pi(a|s)): AWR with IQL's weights or AlignIQL's."""
    return -(weights.detach() * log_prob).mean()
