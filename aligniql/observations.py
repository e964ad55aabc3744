"""Turn whatever a Gymnasium env returns into a (B, obs_dim) float32 tensor, or say clearly why not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aligniql.config import AlignIQLConfig


@dataclass(frozen=True)
class ParsedObs:
    obs: torch.Tensor  # (B, obs_dim) float32, on the agent's device
    batched: bool  # whether the caller gave a leading batch dimension
    as_torch: bool  # whether to answer with a torch tensor (else numpy float32)
    out_device: torch.device  # where a torch answer goes


def _shape_help(config: AlignIQLConfig) -> str:
    return f"({config.obs_dim},) for one observation or (batch, {config.obs_dim}) for a batch"


def _to_array(x: Any, what: str) -> np.ndarray | torch.Tensor:
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{what} must hold numbers, got a torch tensor of dtype {x.dtype}")
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a numpy array or torch tensor of numbers, got {type(x).__name__} "
                        f"(numpy dtype {arr.dtype})")
    return arr


def parse_observation(obs: Any, config: AlignIQLConfig, device: torch.device) -> ParsedObs:
    """Validate and flatten one observation or a batch (flat arrays, or dicts for goal-conditioned envs)."""
    if isinstance(obs, tuple) and len(obs) == 2 and isinstance(obs[1], Mapping):
        raise TypeError("act() got a tuple (obs, info), which is what env.reset() returns; "
                        "unpack it first: `obs, info = env.reset()` and pass `obs`")
    if isinstance(obs, Mapping):
        if not config.obs_keys:
            raise TypeError(f"this agent takes flat observations of shape {_shape_help(config)}, but got a dict "
                            f"with keys {sorted(obs)}; it was not trained on dict observations")
        missing = [k for k in config.obs_keys if k not in obs]
        if missing:
            raise ValueError(f"dict observation is missing keys {missing}: got keys {sorted(obs)}, "
                             f"the agent needs {list(config.obs_keys)}")
        parts = [_to_array(obs[k], f"observation[{k!r}]") for k in config.obs_keys]
        for key, dim, part in zip(config.obs_keys, config.obs_key_dims, parts):
            if part.ndim not in (1, 2) or part.shape[-1] != dim:
                raise ValueError(f"observation[{key!r}] has shape {tuple(part.shape)}; expected ({dim},) or "
                                 f"(batch, {dim})")
        leading = {tuple(p.shape[:-1]) for p in parts}
        if len(leading) > 1:
            raise ValueError(f"dict observation entries disagree on the batch size: "
                             f"{ {k: tuple(p.shape) for k, p in zip(config.obs_keys, parts)} }")
        as_torch = any(isinstance(p, torch.Tensor) for p in parts)
        out_device = next((p.device for p in parts if isinstance(p, torch.Tensor)), torch.device("cpu"))
        tensors = [torch.as_tensor(p).to(device=device, dtype=torch.float32) for p in parts]
        flat = torch.cat(tensors, dim=-1)
        what = "dict observation"
    else:
        arr = _to_array(obs, "observation")
        if arr.ndim not in (1, 2) or arr.shape[-1] != config.obs_dim:
            raise ValueError(f"observation has shape {tuple(arr.shape)}; expected {_shape_help(config)}")
        as_torch = isinstance(arr, torch.Tensor)
        out_device = arr.device if as_torch else torch.device("cpu")
        if not as_torch:  # cast and check on the host, before any device copy
            with np.errstate(over="ignore"):  # overflow to inf is reported below, with its index
                arr32 = np.asarray(arr, dtype=np.float32)
            if not np.isfinite(arr32).all():
                _raise_not_finite(arr32, finite_before_cast=bool(np.isfinite(arr).all()))
            arr = arr32
        flat = torch.as_tensor(arr).to(device=device, dtype=torch.float32)
        what = "observation"
        if not as_torch:
            return ParsedObs(flat if flat.ndim == 2 else flat.unsqueeze(0), arr.ndim == 2, False, out_device)
    if not bool(torch.isfinite(flat).all()):
        _raise_not_finite(flat.cpu().numpy(), what)
    return ParsedObs(flat if flat.ndim == 2 else flat.unsqueeze(0), flat.ndim == 2, as_torch, out_device)


def _raise_not_finite(arr: np.ndarray, what: str = "observation", finite_before_cast: bool = False) -> None:
    bad = np.argwhere(~np.isfinite(arr))
    if finite_before_cast:
        raise ValueError(f"{what} has values beyond float32's range (|x| > 3.4e38) at index {bad[0].tolist()} "
                         f"({len(bad)} entries in all); the agent computes in float32")
    raise ValueError(f"{what} contains NaN or inf at index {bad[0].tolist()} ({len(bad)} entries in all); "
                     "the environment or a wrapper produced an invalid observation")
