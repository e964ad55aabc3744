"""Tensor-in, tensor-out networks, all in normalized observation/action space (docs/algorithm.md §2.3, §4.1)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aligniql.config import ACTOR_LOG_STDS


def _xavier(layer: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _lecun(layer: nn.Linear) -> nn.Linear:
    # flax's Dense default (lecun_normal, zero bias), used inside the ResNet blocks like jaxrl5: a normal cut at
    # two standard deviations, widened by 1/0.8796 so that the cut distribution's std is exactly 1/sqrt(fan_in).
    # torch's trunc_normal_ bounds are absolute values, not multiples of std, so they are passed scaled.
    std = 1.0 / math.sqrt(layer.in_features) / 0.87962566103423978
    nn.init.trunc_normal_(layer.weight, std=std, a=-2.0 * std, b=2.0 * std)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, hidden_dim: int, out_dim: int, *, input_layer_norm: bool = False) -> nn.Sequential:
    """Two ReLU hidden layers then a linear head; jaxrl5's ``use_layer_norm`` normalizes the input only."""
    layers: list[nn.Module] = [nn.LayerNorm(in_dim, eps=1e-6)] if input_layer_norm else []
    layers += [_xavier(nn.Linear(in_dim, hidden_dim)), nn.ReLU(),
               _xavier(nn.Linear(hidden_dim, hidden_dim)), nn.ReLU(),
               _xavier(nn.Linear(hidden_dim, out_dim))]
    return nn.Sequential(*layers)


class TwinQ(nn.Module):
    """Two independent Q(s, a) heads; ``forward`` returns their minimum, ``both`` the pair."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, hidden_dim, 1)
        self.q2 = mlp(obs_dim + act_dim, hidden_dim, 1)

    def both(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, actions], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.minimum(*self.both(obs, actions))


class StateNet(nn.Module):
    """A scalar function of the state: the value V(s), or a multiplier alpha(s) / beta(s)."""

    def __init__(self, obs_dim: int, hidden_dim: int, layer_norm: bool = True) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, 1, input_layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class FourierFeatures(nn.Module):
    """Learnable Fourier features of the raw integer step index (not normalized, docs/algorithm.md §12.2.4)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim // 2, 1) * 0.2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t @ self.weight.T
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = _lecun(nn.Linear(dim, 4 * dim))
        self.fc2 = _lecun(nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``dropout_mask``: kept units already scaled by 1 / (1 - p), drawn by the caller from its own generator
        (training), so that a run's masks do not depend on torch's global RNG; ``None`` uses ``self.dropout``."""
        kept = self.dropout(x) if dropout_mask is None else x * dropout_mask
        return x + self.fc2(F.silu(self.fc1(self.norm(kept))))


class Denoiser(nn.Module):
    """IDQL's LN-ResNet noise predictor eps(s, a_t, t) with learnable Fourier time features."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256, num_blocks: int = 3,
                 time_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.time_features = FourierFeatures(time_dim)
        # jaxrl5's MLP (xavier_uniform), unlike the blocks' flax-default Dense layers
        self.time_mlp = nn.Sequential(_xavier(nn.Linear(time_dim, 2 * time_dim)), nn.SiLU(),
                                      _xavier(nn.Linear(2 * time_dim, 2 * time_dim)))
        self.input = _xavier(nn.Linear(act_dim + obs_dim + 2 * time_dim, hidden_dim))
        self.blocks = nn.ModuleList(ResidualBlock(hidden_dim, dropout) for _ in range(num_blocks))
        self.output = _xavier(nn.Linear(hidden_dim, act_dim))

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """(M, 1) float step index -> (M, 2*time_dim) conditioning."""
        return self.time_mlp(self.time_features(t))

    def trunk(self, h: torch.Tensor, dropout_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            h = block(h, None if dropout_masks is None else dropout_masks[i])
        return self.output(F.silu(h))  # activation before the head, as IDQL (docs/algorithm.md §12.2.5)

    def forward(self, obs: torch.Tensor, noisy_actions: torch.Tensor, t: torch.Tensor,
                dropout_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Predict the noise. obs (M, S), noisy_actions (M, A), t (M, 1) float -> (M, A).

        ``dropout_masks``: one (M, hidden) mask per block (see :meth:`ResidualBlock.forward`), or ``None``.
        """
        cond = self.time_embedding(t)
        return self.trunk(self.input(torch.cat([noisy_actions, obs, cond], dim=-1)), dropout_masks)

    def split_input(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split the first layer so sampling can project the state once instead of at every step.

        Returns (obs_part (M, H) including the bias, W_action (H, A), W_time (H, 2*time_dim)).
        """
        a, s = self.act_dim, obs.shape[-1]
        w = self.input.weight
        return F.linear(obs, w[:, a:a + s], self.input.bias), w[:, :a], w[:, a + s:]


class GaussianActor(nn.Module):
    """IQL's policy: tanh mean from an MLP, state-independent log-std in [-5, 2] (docs/algorithm.md §3).

    ``log_std="clamp"`` clips a parameter (the IQL authors' code); ``"sigmoid"`` maps it through -5 + 7 sigmoid(p),
    as d3rlpy's IQL does, which starts at -1.5 rather than 0 and never loses its gradient at a bound.
    """

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, log_std: str = "clamp") -> None:
        super().__init__()
        if log_std not in ACTOR_LOG_STDS:
            raise ValueError(f"log_std must be one of {ACTOR_LOG_STDS}, got {log_std!r}")
        self.net = mlp(obs_dim, hidden_dim, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_mode = log_std

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tanh(self.net(obs))
        lo, hi = self.LOG_STD_MIN, self.LOG_STD_MAX
        if self.log_std_mode == "sigmoid":
            log_std = lo + (hi - lo) * torch.sigmoid(self.log_std)
        else:
            log_std = self.log_std.clamp(lo, hi)
        return mean, log_std.expand_as(mean)
