"""`AlignIQLAgent`: load a checkpoint, then act in a Gymnasium loop."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aligniql import hub
from aligniql._version import __version__
from aligniql.config import (EXPECTILE_ARGMAX, EXTRACTIONS, SELECTIONS, AlignIQLConfig, read_config_file,
                             rule_defaults)
from aligniql.diffusion import make_schedule, sample
from aligniql.networks import Denoiser, GaussianActor, StateNet, TwinQ
from aligniql.observations import parse_observation
from aligniql.precision import emulation_warning, resolve_precision
from aligniql.selection import (aligniql_hard_log_weights, aligniql_log_weights, idql_expectile_log_weights,
                                idql_log_weights, select)


# On a CPU, one pass over (obs x N) candidate rows is fastest while its (rows, 4*hidden) activations stay in
# cache: with 2048-row passes, benchmarks/latency.py went from 0.52 to 0.40 s (64 obs, N=64) and from 9.9 to
# 6.4 s (1024 obs, N=64) in fp32 on a 2-core EPYC. GPUs want the whole batch in one pass. Rows never interact,
# so the passes change no action.
CPU_ROWS_PER_PASS = 2048
# a generator, an int seed, or one of them per observation row
Generators = torch.Generator | int | Sequence[torch.Generator | int] | None


@dataclass(frozen=True)
class Candidates:
    """What ``act`` looks at for a batch of B observations with N candidates each."""

    actions: torch.Tensor  # (B, N, A): in [-1, 1] from ``propose``, in the env's units from ``candidates``
    q: torch.Tensor  # (B, N) target twin-min Q
    v: torch.Tensor  # (B,)
    log_weights: torch.Tensor  # (B, N)


def _as_generator(g: Any) -> Any:
    """An int seeds a fresh CPU generator (drawing on the CPU gives the same actions on every device)."""
    if isinstance(g, (bool, np.bool_)):
        raise ValueError(f"generator must be a torch.Generator or an int seed, got {g!r}")
    return torch.Generator().manual_seed(int(g)) if isinstance(g, (int, np.integer)) else g


def resolve_device(device: str | torch.device) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', 'auto' (CUDA when available) or a torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


class AlignIQLAgent(nn.Module):
    """An IQL critic plus a diffusion behaviour policy, acting by reweighting diffusion candidates.

    The module holds exactly what inference uses: the EMA denoiser, the *target* twin Q, V, the optional
    AlignIQL-hard multiplier nets and Gaussian actor, and the observation/action normalization buffers.

    Example:
        >>> agent = AlignIQLAgent.from_pretrained("org/aligniql-hopper-medium")
        >>> obs, info = env.reset(seed=0)
        >>> action = agent.act(obs)   # np.float32 array inside env.action_space
    """

    def __init__(self, config: AlignIQLConfig) -> None:
        super().__init__()
        if not isinstance(config, AlignIQLConfig):
            raise TypeError(f"AlignIQLAgent expects an AlignIQLConfig, got {type(config).__name__}")
        self.config = c = config
        self.denoiser = Denoiser(c.obs_dim, c.act_dim, c.denoiser_hidden_dim, c.denoiser_blocks, c.time_dim,
                                 c.denoiser_dropout)
        self.critic = TwinQ(c.obs_dim, c.act_dim, c.hidden_dim)
        self.value = StateNet(c.obs_dim, c.hidden_dim, c.value_layer_norm)
        self.alpha_net = StateNet(c.obs_dim, c.hidden_dim, c.value_layer_norm) if c.use_multipliers else None
        self.beta_net = StateNet(c.obs_dim, c.hidden_dim, c.value_layer_norm) if c.use_multipliers else None
        self.actor = (GaussianActor(c.obs_dim, c.act_dim, c.hidden_dim, c.actor_log_std) if c.use_gaussian_actor
                      else None)
        low, high = c.bounds()
        # NaN until set_normalization or a checkpoint fills them: acting on made-up statistics would be wrong
        # in silence, so it fails instead (check_statistics)
        mean, std = (math.nan, math.nan) if c.normalize_obs else (0.0, 1.0)
        self.register_buffer("obs_mean", torch.full((c.obs_dim,), mean))
        self.register_buffer("obs_std", torch.full((c.obs_dim,), std))
        self.register_buffer("action_low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(high, dtype=torch.float32))
        self.schedule = make_schedule(c.beta_schedule, c.num_diffusion_steps)
        self._core = self._act_normalized
        self.precision = "fp32"
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    def set_precision(self, precision: str) -> AlignIQLAgent:
        """``"bf16"`` runs the denoiser under bfloat16 autocast (see benchmarks/README.md for what it gains on
        each CPU: from 64 observations up 1.3-2.0x on an AVX512-BF16 EPYC; for one observation the gain varies).
        Candidates are still scored by Q and V in float32, whose ranking bf16 would blur. ``"fp32"`` (default)
        runs everything in float32. ``"auto"``: bf16 where the agent's current device multiplies bf16 natively
        (AMX or AVX512-BF16 CPUs, bf16-capable GPUs), else fp32; ``agent.precision`` says which. Weights stay
        float32 either way."""
        self.precision = resolve_precision(precision, self.device)
        if (why := emulation_warning(self.precision, self.device)) is not None:
            warnings.warn(why, RuntimeWarning, stacklevel=2)
        return self

    def set_normalization(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        """Set the observation standardization (used when ``config.normalize_obs``)."""
        mean_t, std_t = (torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in (mean, std))
        if mean_t.shape != (self.config.obs_dim,) or std_t.shape != (self.config.obs_dim,):
            raise ValueError(f"mean and std must have shape ({self.config.obs_dim},), got "
                             f"{tuple(mean_t.shape)} and {tuple(std_t.shape)}")
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise ValueError("normalization statistics must be finite with std > 0")
        self.obs_mean.copy_(mean_t)
        self.obs_std.copy_(std_t)

    def check_statistics(self) -> None:
        """Raise unless the observation statistics are usable (set, finite, std > 0); one host sync."""
        if self.config.normalize_obs and not bool(torch.isfinite(self.obs_mean).all()
                                                  & torch.isfinite(self.obs_std).all() & (self.obs_std > 0).all()):
            raise ValueError("this agent's observation statistics are not set (config.normalize_obs=True): load a "
                             "trained agent with AlignIQLAgent.from_pretrained, or call "
                             "agent.set_normalization(mean, std) with the training data's statistics first")

    # ------------------------------------------------------------------ acting
    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std if self.config.normalize_obs else obs

    def scale_action(self, action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> the environment's bounds, clamped so that ``action_space.contains`` holds."""
        span = self.action_high - self.action_low
        return torch.minimum(torch.maximum(self.action_low + (action + 1) * 0.5 * span, self.action_low),
                             self.action_high)

    def unscale_action(self, action: torch.Tensor) -> torch.Tensor:
        """The environment's bounds -> [-1, 1]."""
        return 2 * (action - self.action_low) / (self.action_high - self.action_low) - 1

    def propose(self, obs: torch.Tensor, *, num_samples: int, extraction: str, eta: float,
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Candidates:
        """Sample N candidates per normalized observation (B, S) and score them."""
        B, N, A = obs.shape[0], num_samples, self.config.act_dim
        rep = obs.repeat_interleave(N, dim=0)  # (B*N, S), candidates of a state are contiguous
        with torch.autocast(obs.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            actions = sample(self.denoiser, rep, self.schedule, noise=noise, generator=generator,
                             clip=self.config.clip_sampler, temperature=self.config.ddpm_temperature).float()
        q = self.critic(rep, actions).view(B, N)
        v = self.value(obs)
        if extraction == "aligniql":
            log_w = aligniql_log_weights(q, v, eta)
        elif extraction == "aligniql_hard":
            log_w = aligniql_hard_log_weights(q, self.beta_net(obs))
        elif extraction == "idql":
            log_w = idql_log_weights(q)
        else:
            log_w = idql_expectile_log_weights(q, v, self.config.expectile)
        return Candidates(actions.view(B, N, A), q, v, log_w)

    def _act_normalized(self, obs: torch.Tensor, noise: torch.Tensor | None, gumbel_u: torch.Tensor | None,
                        num_samples: int, extraction: str, selection: str, eta: float,
                        temperature: float) -> torch.Tensor:
        """Raw observations (B, S) -> env-scaled actions (B, A); all randomness passed in, so it compiles."""
        obs = self.normalize_obs(obs)
        if extraction == "gaussian":
            return self.scale_action(self.actor(obs)[0])
        cand = self.propose(obs, num_samples=num_samples, extraction=extraction, eta=eta, noise=noise)
        idx = select(cand.log_weights, selection=selection, temperature=temperature, uniforms=gumbel_u)
        chosen = cand.actions[torch.arange(obs.shape[0], device=obs.device), idx]
        return self.scale_action(chosen)

    @torch.inference_mode()
    def act(self, obs: Any, *, num_samples: int | None = None, extraction: str | None = None,
            selection: str | None = None, eta: float | None = None, temperature: float | None = None,
            generator: Generators = None, batch_invariant: bool = False) -> np.ndarray | torch.Tensor:
        """Choose actions for one observation or a batch, as a Gymnasium env gives them.

        Args:
            obs: numpy array or torch tensor of shape (obs_dim,) or (B, obs_dim); for goal-conditioned envs a
                dict with the keys in ``config.obs_keys`` (each (dim,) or (B, dim)).
            num_samples: N diffusion candidates per observation (default ``config.num_samples``).
            extraction: ``aligniql``, ``aligniql_hard``, ``idql``, ``idql_expectile`` or ``gaussian``.
            selection: ``argmax`` or ``softmax``. Default: the config's, with the config's extraction; with
                another extraction, that rule's own (``softmax`` for ``idql_expectile``, else ``argmax``).
            eta, temperature: override the config's AlignIQL strength and softmax temperature (the temperature
                defaults to 1 with an extraction other than the config's, as the selection does).
            generator: a ``torch.Generator`` or an int seed for reproducible actions, or one per observation of
                a batch (row i then draws exactly the noise it would draw alone with generator i, e.g. one per
                vector-env episode). Without one, actions come from torch's global RNG.
            batch_invariant: compute each observation's N candidates in a pass of its own, so that row i's
                action is bit-identical to acting on row i alone (with its own generator) whatever else is in
                the batch, on any CPU or GPU. By default rows are batched into large matmuls, whose kernels
                (and so their float rounding) MKL, oneDNN and cuBLAS choose by row count: results are then
                bitwise reproducible for the same batch, and agree with other batchings only to float
                rounding (~1e-6 relative in Q and V), which can flip a near-tied argmax. Costs 28-51 % at
                3-64 observations on a 2-core CPU with 2 threads (7-16 % with 1;
                benchmarks/batch_invariance_cost.py), nothing for one observation.

        Returns:
            Actions of shape (act_dim,) or (B, act_dim) inside the action bounds: numpy float32 for numpy
            input, a float32 torch tensor on the input's device for torch input.
        """
        n, extraction, selection, eta, temperature = self._settings(num_samples, extraction, selection, eta,
                                                                    temperature)
        parsed = parse_observation(obs, self.config, self.device)
        noise = gumbel_u = None
        if extraction != "gaussian":
            noise, gumbel_u = self._draw(parsed.obs.shape[0], n, selection, generator)
        with self._sampling_mode():
            parts = [self._core(o, z, u, n, extraction, selection, eta, temperature)
                     for o, z, u in self._passes(parsed.obs, noise, gumbel_u, n, batch_invariant)]
            actions = parts[0] if len(parts) == 1 else torch.cat(parts)  # one pass: no copy
        if not bool(torch.isfinite(actions).all()):  # NaN would pass the bound clamp; never hand it to the env
            self.check_statistics()  # the likely cause when every row fails; checked here, off the fast path
            rows = (~torch.isfinite(actions)).any(-1).nonzero().flatten().tolist()
            raise ValueError(f"the networks produced non-finite actions for observation row(s) {rows[:10]}: the "
                             "observation is far outside the training data's range (normalized |obs| up to "
                             f"{self.normalize_obs(parsed.obs[rows]).abs().max().item():.3g}) or the weights "
                             "are corrupt")
        if not parsed.batched:
            actions = actions[0]
        if parsed.as_torch:
            return actions.to(parsed.out_device)
        return actions.cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def candidates(self, obs: Any, *, num_samples: int | None = None, extraction: str | None = None,
                   eta: float | None = None, generator: Generators = None, batch_invariant: bool = False
                   ) -> Candidates:
        """What ``act`` chooses from, for the same observations and arguments: N candidates per observation
        with their target twin-min Q, V(s) and log-weights under ``extraction``, batched as (B, N, ...) even
        for one observation, ``actions`` in the env's units. With the same generator state, ``act(obs,
        selection="argmax", ...)`` returns ``actions[b, log_weights[b].argmax()]``; see
        ``aligniql.selection.softmax_probabilities`` for what softmax selection would sample from.
        ``batch_invariant`` as for ``act``.
        """
        if (self.config.extraction if extraction is None else extraction) == "gaussian":
            raise ValueError("extraction='gaussian' acts with one Gaussian-actor mean and has no candidates; "
                             "use 'aligniql', 'aligniql_hard', 'idql' or 'idql_expectile'")
        # candidates never select: check the rule and N as for a sampler, which every rule allows
        n, extraction, _, eta, _ = self._settings(num_samples, extraction, "softmax", eta, None)
        self.check_statistics()
        parsed = parse_observation(obs, self.config, self.device)
        noise, _ = self._draw(parsed.obs.shape[0], n, "argmax", generator)
        with self._sampling_mode():
            parts = [self.propose(self.normalize_obs(o), num_samples=n, extraction=extraction, eta=eta, noise=z)
                     for o, z, _ in self._passes(parsed.obs, noise, None, n, batch_invariant)]
        cand = parts[0] if len(parts) == 1 else Candidates(
            *(torch.cat([getattr(c, f) for c in parts]) for f in ("actions", "q", "v", "log_weights")))
        return replace(cand, actions=self.scale_action(cand.actions))

    @contextmanager
    def _sampling_mode(self) -> Iterator[None]:
        """Sample with dropout off even when a caller left the agent in train mode (``agent.train()``, a training
        loop): otherwise the same generator would give different actions. The caller's modes are restored."""
        # the denoiser holds the only dropout; the common eval-mode call skips walking all modules (~40 us)
        training = [m for m in self.modules() if m.training] if self.training or self.denoiser.training else []
        for m in training:
            m.training = False
        try:
            yield
        finally:
            for m in training:
                m.training = True

    def _settings(self, num_samples: int | None, extraction: str | None, selection: str | None, eta: float | None,
                  temperature: float | None) -> tuple[int, str, str, float, float]:
        """Per-call overrides checked and merged with the config's defaults."""
        c = self.config
        n = c.num_samples if num_samples is None else num_samples
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        # the saved selection and temperature belong to the saved rule: another extraction gets its own defaults
        # (a softmax at a saved T = 1/3 over -(Q-V)^2 would be nobody's rule)
        if extraction is None or extraction == c.extraction:
            extraction, defaults = c.extraction, {"selection": c.selection, "temperature": c.temperature}
        else:
            defaults = rule_defaults(extraction)
        selection = defaults["selection"] if selection is None else selection
        if extraction not in EXTRACTIONS:
            raise ValueError(f"unknown extraction {extraction!r}; expected one of {EXTRACTIONS}")
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")
        if extraction == "idql_expectile" and selection == "argmax":
            raise ValueError(EXPECTILE_ARGMAX)
        if extraction == "aligniql_hard" and self.beta_net is None:
            raise ValueError("extraction='aligniql_hard' needs the multiplier nets alpha(s), beta(s), but this "
                             "checkpoint has none (trained without use_multipliers); use 'aligniql' or 'idql'")
        if extraction == "gaussian" and self.actor is None:
            raise ValueError("extraction='gaussian' needs a Gaussian actor, but this checkpoint has none "
                             "(trained without use_gaussian_actor)")
        eta = c.eta if eta is None else float(eta)
        temperature = float(defaults["temperature"] if temperature is None else temperature)
        if not (math.isfinite(eta) and eta > 0 and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"eta and temperature must be finite and > 0, got eta={eta}, temperature={temperature}")
        return int(n), extraction, selection, eta, temperature

    def _passes(self, obs: torch.Tensor, noise: torch.Tensor | None, gumbel_u: torch.Tensor | None, n: int,
                batch_invariant: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """Slices of the batch, each with its own part of the pre-drawn randomness: one per observation when
        ``batch_invariant``; else the whole batch at once (GPU) or about CPU_ROWS_PER_PASS candidates each
        (CPU). Rows never interact, so slicing changes what is computed only through the kernels' rounding."""
        B = obs.shape[0]
        if batch_invariant:
            per = 1
        elif self.device.type != "cpu" or noise is None:
            per = B
        else:
            per = max(1, CPU_ROWS_PER_PASS // n)
        if B <= per:
            yield obs, noise, gumbel_u
            return
        for i in range(0, B, per):
            z = None if noise is None else noise[:, i * n:(i + per) * n]
            u = None if gumbel_u is None else gumbel_u[i:i + per]
            if batch_invariant:  # fresh buffers, laid out and aligned as those of a call on this row alone
                yield tuple(None if x is None else x.clone(memory_format=torch.contiguous_format)
                            for x in (obs[i:i + per], z, u))
            else:
                yield obs[i:i + per], z, u

    def _draw(self, batch: int, n: int, selection: str,
              generator: Generators) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All of act()'s randomness, drawn up front: diffusion noise (T, batch*n, A), then softmax uniforms (batch, n).

        With one generator per row, row i's draws are exactly those of acting on row i alone with generator i,
        so a batch of vector-env observations acts as each env would on its own.
        """
        T, A = self.config.num_diffusion_steps, self.config.act_dim
        generator = _as_generator(generator)
        if generator is None or isinstance(generator, torch.Generator):
            gens: list[torch.Generator | None] = [generator]
            rows = batch
        else:
            gens, rows = [_as_generator(g) for g in generator], 1
            if len(gens) != batch or not all(isinstance(g, torch.Generator) for g in gens):
                raise ValueError(f"generator must be a torch.Generator or int seed, or a sequence of {batch} of "
                                 f"them (one per observation), got {len(gens)} items")
        noise, uniforms = [], []
        for g in gens:
            device = g.device if g is not None else self.device
            noise.append(torch.randn((T, rows * n, A), generator=g, device=device).to(self.device))
            if selection == "softmax":
                uniforms.append(torch.rand((rows, n), generator=g, device=device).to(self.device))
        return torch.cat(noise, dim=1), torch.cat(uniforms) if uniforms else None

    def compile(self, **kwargs: Any) -> AlignIQLAgent:  # type: ignore[override]
        """Fast path for repeated ``act`` calls: ``torch.compile`` the whole sample-score-select step.

        On CUDA the default mode is ``reduce-overhead`` (CUDA graphs: one launch per call for a fixed batch
        size and N). Keyword arguments go to ``torch.compile``. Returns the agent.
        """
        kwargs.setdefault("mode", "reduce-overhead" if self.device.type == "cuda" else None)
        kwargs.setdefault("dynamic", False)
        self._core = torch.compile(self._act_normalized, **kwargs)
        return self

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (each atomically) and return the directory."""
        self.check_statistics()  # a checkpoint without them could not be loaded back
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        hub.save_tensors(self.state_dict(), path / hub.WEIGHTS_NAME,
                         metadata={"format": "pt", "aligniql_format_version": str(self.config.format_version)})
        # config.json last: a folder whose config names the weights' hash holds exactly those weights
        self.config.to_json(path / hub.CONFIG_NAME, aligniql_version=__version__,
                            weights_sha256=hub.sha256_of(path / hub.WEIGHTS_NAME))
        return path

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                        local_files_only: bool = False, device: str | torch.device = "cpu") -> AlignIQLAgent:
        """Load an agent from a local directory or a Hugging Face Hub repo id, strictly.

        Args:
            name_or_path: a directory written by ``save_pretrained``, or a repo id such as ``org/name``.
            revision, cache_dir, token, local_files_only: passed to ``huggingface_hub.hf_hub_download``.
            device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

        Returns:
            The agent in eval mode on ``device``.

        Example:
            >>> agent = AlignIQLAgent.from_pretrained("org/aligniql-antmaze-large", device="auto")
        """
        dev = resolve_device(device)
        folder = hub.resolve_pretrained(name_or_path, revision=revision, cache_dir=cache_dir, token=token,
                                        local_files_only=local_files_only)
        config, info = read_config_file(folder / hub.CONFIG_NAME)
        agent = cls(config)
        tensors = hub.load_tensors(folder / hub.WEIGHTS_NAME, info.get("weights_sha256"),
                                   str(folder / hub.CONFIG_NAME))
        hub.check_state_dict(agent.state_dict(), tensors, str(folder / hub.WEIGHTS_NAME))
        agent.load_state_dict(tensors, strict=True)
        agent._check_loaded(folder)
        return agent.to(dev).eval()

    def _check_loaded(self, folder: Path) -> None:
        if not (torch.isfinite(self.obs_mean).all() and torch.isfinite(self.obs_std).all()
                and (self.obs_std > 0).all()):
            raise ValueError(f"{folder}: observation normalization statistics are not finite and positive")
        low, high = (torch.tensor(b, dtype=torch.float32) for b in self.config.bounds())
        if not (torch.equal(low, self.action_low) and torch.equal(high, self.action_high)):
            raise ValueError(f"{folder}: action bounds in model.safetensors ({self.action_low.tolist()}, "
                             f"{self.action_high.tolist()}) disagree with config.json ({low.tolist()}, "
                             f"{high.tolist()})")
