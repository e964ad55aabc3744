"""Candidate reweighting: from (Q, V) of N candidates to one chosen action (docs/algorithm.md §5, §6, §7).

Every rule is a log-weight over the candidates of one state; selection is its argmax or a softmax sample.
"""

from __future__ import annotations

import torch


def aligniql_log_weights(q: torch.Tensor, v: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """AlignIQL (soft): log w = -eta (Q - V)^2, favouring actions whose value is aligned with V(s).

    q: (B, N); v: (B,) or (B, 1).
    """
    return -eta * (q - v.reshape(-1, 1)) ** 2


def aligniql_hard_log_weights(q: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """AlignIQL-hard: log w = -beta(s) Q - 1 with the learned multiplier beta(s) of shape (B,)."""
    return -beta.reshape(-1, 1) * q - 1.0


def idql_log_weights(q: torch.Tensor) -> torch.Tensor:
    """Official IDQL evaluation: the target twin-min Q itself (its argmax is the greedy candidate)."""
    return q


def idql_expectile_log_weights(q: torch.Tensor, v: torch.Tensor, expectile: float) -> torch.Tensor:
    """IDQL's implicit policy for an expectile critic: w = expectile where Q > V, else 1 - expectile (no
    division, §5.1; Q = V counts as below, as in IDQL). The weights take only two values, so they are meant to
    be sampled from (``selection='softmax'`` at temperature 1: p = w / sum w); their argmax would only pick
    the first candidate with Q > V (§5.3)."""
    above = q > v.reshape(-1, 1)
    return torch.where(above, torch.full_like(q, expectile), torch.full_like(q, 1.0 - expectile)).log()


def select(log_weights: torch.Tensor, *, selection: str = "argmax", temperature: float = 1.0,
           generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Pick one candidate index per row of (B, N) log-weights.

    ``argmax`` takes the largest log-weight. ``softmax`` samples i with p_i = softmax(log_w / temperature)_i,
    through the Gumbel-max trick so that it stays on the device and follows ``generator``. (The official
    code samples with p proportional to the raw log-weight, which inverts AlignIQL's preference, §7.2.)
    ``uniforms``: U(0, 1) draws shaped like ``log_weights`` to use instead of drawing from ``generator``.
    """
    if selection == "argmax":
        return log_weights.argmax(dim=-1)
    if selection == "softmax":
        u = uniforms if uniforms is not None else torch.rand(log_weights.shape, generator=generator,
                                                             device=log_weights.device, dtype=log_weights.dtype)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
        return (log_weights / temperature + gumbel).argmax(dim=-1)
    raise ValueError(f"selection must be 'argmax' or 'softmax', got {selection!r}")


def softmax_probabilities(log_weights: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The categorical distribution that ``select(..., selection='softmax')`` samples from."""
    return torch.softmax(log_weights / temperature, dim=-1)
