"""Several seeds in one process: K independent AlignIQL runs trained together on stacked weights (issue 14).

Each network of the K members is held once, with a leading member dimension: every ``nn.Linear`` becomes a
:class:`StackedLinear` whose weight is (K, out, in) and whose forward is one ``baddbmm`` over the members, and
the modules' own ``forward`` code runs unchanged on (K, B, ...) activations. One optimizer per network steps all
members at once on the *sum* of the members' losses: member k's parameters get the gradient of member k's loss
alone, and Adam/AdamW (fused or not) are elementwise, so this is K independent optimizers in one call.

Why stacked layers rather than ``torch.func.stack_module_state`` + ``vmap(functional_call)``: in a rough
1-thread CPU timing of the denoiser's forward + backward (K=4, batch 256) the two were within noise of each
other (and of K plain modules), but with tiny networks, where per-op overhead dominates as it does for these
MLPs on a GPU, ``baddbmm`` layers were ~15-25 % faster than vmap. The pure losses still run under ``vmap``, so
each member's loss is exactly the single run's formula.

Member k is the single-seed run with seed k (``torch.manual_seed(k)`` before building its agent, batch indices
and step noise from generators seeded as :class:`~training.trainer.Trainer` seeds them, the hold-out split of
``split_holdout(..., k)``); only the float rounding of batched kernels differs (tests/test_multi_seed.py).

    trainer = MultiSeedTrainer.from_seeds(data.transitions, agent_config, TrainerConfig(...), seeds=[0, 1, 2],
                                          obs_mean=data.obs_mean, obs_std=data.obs_std, holdout=0.05)
    for _ in range(steps):
        logs = trainer.train_step()          # {"loss/bc": (K,) tensor, ...}
    trainer.member_agent(1).save_pretrained("runs/x/seed1")

:func:`train_members` is the whole loop with metrics, checkpoints, resume and export to ``<output_dir>/seed<k>/``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from aligniql import AlignIQLAgent, AlignIQLConfig
from aligniql.diffusion import add_noise
from aligniql.networks import FourierFeatures, GaussianActor
from training import checkpoint, losses
from training.datasets import Transitions, split_holdout
from training.trainer import (VALIDATION_ROWS, TrainerConfig, _cosine, draw_step_noise, init_networks,
                              noise_seed)

logger = logging.getLogger(__name__)

# Agent-config fields the training step reads: members must agree on them (they fix the stacked shapes or
# are constants of the losses). The others (extraction, num_samples, env and dataset facts, ...) may differ.
TRAINING_FIELDS = ("obs_dim", "act_dim", "normalize_obs", "hidden_dim", "value_layer_norm", "denoiser_hidden_dim",
                   "denoiser_blocks", "time_dim", "denoiser_dropout", "num_diffusion_steps", "beta_schedule",
                   "use_multipliers", "use_gaussian_actor", "actor_log_std", "expectile", "discount", "eta")
# the stacked networks, and the agent attribute each one is exported to (None: trained, not exported)
ROLES = {"denoiser": None, "ema_denoiser": "denoiser", "critic": None, "target_critic": "critic",
         "value": "value", "alpha_net": "alpha_net", "beta_net": "beta_net", "actor": "actor"}
# modules whose own parameters (not a child's) broadcast against (K, B, ...) activations once stacked (K, 1, ...)
_BROADCAST_PARAMS = (GaussianActor,)


class Interrupted(Exception):
    """Training stopped early on Ctrl-C; the group's state and every member are saved for ``resume=True``."""


# ---------------------------------------------------------------------------------------------- stacked layers
def _stacked(tensors: Sequence[torch.Tensor], batch_dim: bool) -> nn.Parameter:
    """(K, 1, *shape) when the tensor broadcasts against (K, B, ...) activations, else (K, *shape)."""
    data = torch.stack([t.detach() for t in tensors])
    return nn.Parameter(data.unsqueeze(1) if batch_dim else data)


class StackedLinear(nn.Module):
    """K ``nn.Linear`` layers: (K, B, in) -> (K, B, out), one batched matmul."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = _stacked([m.weight for m in layers], batch_dim=False)  # (K, out, in)
        self.bias = _stacked([m.bias for m in layers], batch_dim=True) if layers[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.transpose(1, 2)
        return torch.bmm(x, w) if self.bias is None else torch.baddbmm(self.bias, x, w)


class StackedLayerNorm(nn.Module):
    """K affine ``nn.LayerNorm`` layers over the last dimension."""

    def __init__(self, layers: Sequence[nn.LayerNorm]) -> None:
        super().__init__()
        self.normalized_shape, self.eps = layers[0].normalized_shape, layers[0].eps
        self.weight = _stacked([m.weight for m in layers], batch_dim=True)  # (K, 1, H)
        self.bias = _stacked([m.bias for m in layers], batch_dim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, None, None, self.eps) * self.weight + self.bias


class StackedFourierFeatures(nn.Module):
    """K learnable Fourier feature maps: t (K, B, 1) -> (K, B, dim)."""

    def __init__(self, layers: Sequence[FourierFeatures]) -> None:
        super().__init__()
        self.weight = _stacked([m.weight for m in layers], batch_dim=False)  # (K, dim/2, 1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t @ self.weight.transpose(1, 2)
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


_STACKED_LEAVES: dict[type, type] = {nn.Linear: StackedLinear, nn.LayerNorm: StackedLayerNorm,
                                     FourierFeatures: StackedFourierFeatures}


def _stack_into(target: nn.Module, members: Sequence[nn.Module]) -> None:
    for name, child in list(target.named_children()):
        kids = [getattr(m, name) for m in members]
        if not any(True for _ in child.parameters()):
            continue  # ReLU, SiLU, Dropout: stateless and elementwise, they work on (K, B, ...) as they are
        if type(child) in _STACKED_LEAVES:
            if type(child) is nn.LayerNorm and not child.elementwise_affine:
                continue
            setattr(target, name, _STACKED_LEAVES[type(child)](kids))
        else:
            _stack_into(child, kids)
    own = list(target.named_parameters(recurse=False))
    if own and not isinstance(target, _BROADCAST_PARAMS):
        raise TypeError(f"cannot stack {type(target).__name__}: its parameters {[n for n, _ in own]} are used in "
                        "its forward in a way training.multi_seed does not know; give it a stacked layer there")
    for name, _ in own:
        setattr(target, name, _stacked([getattr(m, name) for m in members], batch_dim=True))


def stack_modules(modules: Sequence[nn.Module]) -> nn.Module:
    """One module holding K same-architecture modules, parameters stacked along a new leading member dimension.

    The result is a copy of ``modules[0]`` whose ``nn.Linear``/``nn.LayerNorm``/``FourierFeatures`` layers are
    replaced by stacked ones, so its ``forward`` maps (K, B, ...) inputs to (K, B, ...) outputs, member k seeing
    only its own weights. Parameter names stay those of the originals (see :func:`load_member`).
    """
    if not modules:
        raise ValueError("stack_modules needs at least one module")
    shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in modules]
    for k, s in enumerate(shapes[1:], 1):
        if s != shapes[0] or type(modules[k]) is not type(modules[0]):
            raise ValueError(f"member {k}'s {type(modules[k]).__name__} has other parameters than member 0's "
                             f"{type(modules[0]).__name__}; stacked members need the same architecture")
    stacked = copy.deepcopy(modules[0])
    _stack_into(stacked, modules)
    if [n for n, _ in stacked.named_parameters()] != [n for n, _ in shapes[0]]:
        raise AssertionError("stacking changed the parameter names")  # would break export by name
    return stacked


@torch.no_grad()
def load_member(module: nn.Module, stacked: nn.Module, k: int) -> None:
    """Copy member ``k``'s slice of ``stacked`` (from :func:`stack_modules`) into the ordinary ``module``."""
    params = dict(stacked.named_parameters())
    for name, p in module.named_parameters():
        p.copy_(params[name][k].reshape(p.shape))


# ---------------------------------------------------------------------------------------------- the trainer
def _clip_grad_norm_per_member(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_`` for each member separately: the 2-norm over all of member k's gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    K = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in grads])  # (params, K)
    coef = (max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)  # as clip_grad_norm_
    for g in grads:
        g.mul_(coef.view(K, *([1] * (g.dim() - 1))))


def _check_seeds(seeds: Sequence[Any]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("a multi-seed run needs at least one member (got 0 seeds)")
    if any(isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) for s in seeds):
        raise ValueError(f"seeds must be integers, got {seeds}")
    if len(set(int(s) for s in seeds)) != len(seeds):
        dup = sorted({int(s) for s in seeds if seeds.count(s) > 1})
        raise ValueError(f"seeds must be distinct (duplicated: {dup}): two members with one seed are the same run")
    return [int(s) for s in seeds]


def _check_members(agents: Sequence[AlignIQLAgent], seeds: Sequence[int]) -> None:
    if len(agents) == 0:
        raise ValueError("a multi-seed run needs at least one member (got 0 agents)")
    if len(seeds) != len(agents):
        raise ValueError(f"got {len(agents)} agents but {len(seeds)} seeds; give one seed per member")
    if len({id(a) for a in agents}) != len(agents):
        raise ValueError("the same agent object is given for two members; build one agent per member")
    first = agents[0].config
    for k, agent in enumerate(agents):
        if not isinstance(agent, AlignIQLAgent):
            raise TypeError(f"member {k} is a {type(agent).__name__}, not an AlignIQLAgent")
        diff = {f: (getattr(first, f), getattr(agent.config, f)) for f in TRAINING_FIELDS
                if getattr(first, f) != getattr(agent.config, f)}
        if diff:
            raise ValueError(f"member {k} (seed {seeds[k]}) differs from member 0 in what training uses "
                             f"(member 0, member {k}): {diff}; members of one run share architecture and losses")


class MultiSeedTrainer:
    """Train K :class:`AlignIQLAgent` members together, each exactly as a :class:`~training.trainer.Trainer`
    with its seed would, on stacked weights.

    Args:
        agents: one freshly built agent per member (seed the global RNG with the member's seed before building
            it, as the single path does; :meth:`from_seeds` does this). They are copied, not trained in place:
            :meth:`member_agent` gives member k's trained agent.
        data: the transitions the members sample from, moved to ``device`` once and shared.
        config: optimisation settings, shared by all members (one optimizer per network steps them all).
        seeds: one distinct seed per member, for its batch and step-noise generators.
        rows: per member, the indices of ``data`` it trains on (e.g. its side of a hold-out split); ``None``
            (or a ``None`` entry) trains on all of ``data``.
        device: training device.
        validation: per member, held-out transitions for :meth:`validation_losses` (all or none of the members;
            the same number of rows each, up to ``VALIDATION_ROWS``).
    """

    def __init__(self, agents: Sequence[AlignIQLAgent], data: Transitions, config: TrainerConfig, *,
                 seeds: Sequence[int], rows: Sequence[torch.Tensor | None] | None = None,
                 device: str | torch.device = "cpu",
                 validation: Sequence[Transitions | None] | None = None) -> None:
        if config.critic_updates != 1 or not config.train_denoiser:
            raise ValueError("MultiSeedTrainer trains every network once per step: critic_updates must be 1 and "
                             "train_denoiser True")
        agents = list(agents)
        _check_members(agents, list(seeds))
        seeds = _check_seeds(seeds)
        for agent in agents:
            agent.check_statistics()
        self.K, self.seeds, self.config = len(agents), seeds, config
        self.device = torch.device(device)
        self.agent_config: AlignIQLConfig = agents[0].config
        self.schedule = agents[0].schedule
        # CPU snapshots that member_agent fills with trained weights (configs, buffers and schedules as built)
        self._templates = [copy.deepcopy(a).cpu().eval() for a in agents]
        self.data = data.to(self.device)
        self._set_rows(rows)
        self.obs_mean = torch.stack([a.obs_mean for a in agents]).unsqueeze(1).to(self.device)  # (K, 1, S)
        self.obs_std = torch.stack([a.obs_std for a in agents]).unsqueeze(1).to(self.device)
        self._set_validation(validation)

        nets: dict[str, nn.Module] = {}
        for role, attr in ROLES.items():
            modules = [getattr(a, attr or role) for a in agents]
            if modules[0] is not None:
                nets[role] = stack_modules(modules)
        self.nets = nn.ModuleDict(nets).to(self.device)
        self.nets.eval()  # the acting copies never need dropout; the online ones train
        self.nets["denoiser"].train()
        self.nets["critic"].train()
        self.step = 0
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.noise_generators = [torch.Generator(device=self.device).manual_seed(noise_seed(s)) for s in seeds]
        c = config
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        n = self.nets
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "denoiser": torch.optim.AdamW(n["denoiser"].parameters(), lr=c.denoiser_lr,
                                          weight_decay=c.denoiser_weight_decay, **fused),
            "critic": torch.optim.Adam(n["critic"].parameters(), lr=c.critic_lr, **fused),
            "value": torch.optim.Adam(n["value"].parameters(), lr=c.critic_lr, **fused),
        }
        if "alpha_net" in n:
            self.optimizers["alpha"] = torch.optim.Adam(n["alpha_net"].parameters(), lr=c.multiplier_lr, **fused)
            self.optimizers["beta"] = torch.optim.Adam(n["beta_net"].parameters(), lr=c.multiplier_lr, **fused)
        if "actor" in n:
            self.optimizers["actor"] = torch.optim.Adam(n["actor"].parameters(), lr=c.actor_lr, **fused)
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(self.optimizers[name], _cosine(c.steps))
                           for name in ("denoiser", "actor") if name in self.optimizers}

    @classmethod
    def from_seeds(cls, transitions: Transitions, agent_configs: AlignIQLConfig | Sequence[AlignIQLConfig],
                   config: TrainerConfig, seeds: Sequence[int], *, obs_mean: Any = None, obs_std: Any = None,
                   holdout: float = 0.0, device: str | torch.device = "cpu") -> MultiSeedTrainer:
        """Build the members as K single-seed runs would be built: for seed k, ``torch.manual_seed(k)``, the
        hold-out split ``split_holdout(transitions, holdout, k)``, then ``AlignIQLAgent(config_k)`` with the
        observation statistics ``obs_mean``/``obs_std`` (required when the config normalizes observations)."""
        seeds = _check_seeds(seeds)
        configs = [agent_configs] * len(seeds) if isinstance(agent_configs, AlignIQLConfig) else list(agent_configs)
        if len(configs) != len(seeds):
            raise ValueError(f"got {len(configs)} agent configs for {len(seeds)} seeds")
        agents, rows, held = [], [], []
        for seed, agent_config in zip(seeds, configs):
            torch.manual_seed(seed)
            train_rows, held_rows = holdout_rows(len(transitions), holdout, seed)
            agent = AlignIQLAgent(agent_config)
            init_networks(agent, config.init)
            if obs_mean is not None or obs_std is not None:
                agent.set_normalization(obs_mean, obs_std)
            agents.append(agent)
            rows.append(train_rows)
            held.append(None if held_rows is None else transitions.index(held_rows))
        return cls(agents, transitions, config, seeds=seeds, rows=rows, device=device,
                   validation=held if holdout > 0 else None)

    def _set_rows(self, rows: Sequence[torch.Tensor | None] | None) -> None:
        n = len(self.data)
        rows = [None] * self.K if rows is None else list(rows)
        if len(rows) != self.K:
            raise ValueError(f"got rows for {len(rows)} members, expected {self.K}")
        full = torch.arange(n, device=self.device)
        member_rows = []
        for k, r in enumerate(rows):
            if r is None:
                member_rows.append(full)
                continue
            r = torch.as_tensor(r, device=self.device)
            if r.dim() != 1 or r.numel() == 0 or r.dtype.is_floating_point or r.dtype == torch.bool:
                raise ValueError(f"member {k}'s rows must be a non-empty 1-D tensor of row indices")
            if int(r.min()) < 0 or int(r.max()) >= n:
                raise ValueError(f"member {k}'s rows index outside the {n} transitions")
            member_rows.append(r.long())
        self.lengths = [len(r) for r in member_rows]
        # (K, max rows), padded; a member's sampled positions stay below its own length
        self._rows = torch.stack([F.pad(r, (0, max(self.lengths) - len(r))) for r in member_rows])

    def _set_validation(self, validation: Sequence[Transitions | None] | None) -> None:
        self.validation: tuple[Transitions, torch.Tensor, torch.Tensor] | None = None
        if validation is None or all(v is None or len(v) == 0 for v in validation):
            return
        validation = list(validation)
        if len(validation) != self.K or any(v is None or len(v) == 0 for v in validation):
            raise ValueError("give held-out transitions for every member or for none")
        sizes = {min(len(v), VALIDATION_ROWS) for v in validation}
        if len(sizes) > 1:
            raise ValueError(f"members' held-out sets have different sizes {sorted(sizes)}; they are scored "
                             "together, so give each the same number of rows")
        parts = []
        for v in validation:  # exactly what Trainer draws for its validation rows, per member
            part = v.index(torch.arange(min(len(v), VALIDATION_ROWS)))
            g = torch.Generator().manual_seed(0)
            t = torch.randint(self.agent_config.num_diffusion_steps, (len(part),), generator=g)
            parts.append((part, t, torch.randn(part.actions.shape, generator=g)))
        stacked = Transitions(*(torch.stack([getattr(p[0], f.name) for p in parts]) for f in fields(Transitions)))
        self.validation = (stacked.to(self.device), torch.stack([p[1] for p in parts]).to(self.device),
                           torch.stack([p[2] for p in parts]).to(self.device))

    # ------------------------------------------------------------------ one step
    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std if self.agent_config.normalize_obs else obs

    def sample_batch(self) -> Transitions:
        """(K, B, ...) transitions: member k's uniform draw over its own rows, from its own CPU generator."""
        B = self.config.batch_size
        idx = torch.stack([torch.randint(n, (B,), generator=g) for n, g in zip(self.lengths, self.generators)])
        return self.data.index(self._rows.gather(1, idx.to(self.device, non_blocking=True)))

    def train_step(self) -> dict[str, torch.Tensor]:
        """Sample a batch per member and update on it; returns detached (K,) tensors (no host sync)."""
        return self.update(self.sample_batch())

    def _step(self, name: str, losses_k: torch.Tensor, clip_params: Any = None) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        losses_k.sum().backward()  # d(sum)/d(member k's params) is member k's own gradient, exactly
        if clip_params is not None:
            _clip_grad_norm_per_member(list(clip_params), self.config.multiplier_grad_clip)
        opt.step()
        if name in self.schedulers:
            self.schedulers[name].step()

    def update(self, batch: Transitions) -> dict[str, torch.Tensor]:
        """Trainer.update for every member: BC -> V -> Q -> Polyak -> multipliers -> Gaussian actor."""
        obs, next_obs = self.normalize_obs(batch.obs), self.normalize_obs(batch.next_obs)
        logs = self.update_denoiser(obs, batch.actions)
        logs |= self.update_critic(batch, obs, next_obs)
        logs |= self.update_extras(obs, batch.actions)
        self.step += 1
        return logs

    def update_denoiser(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        B = actions.shape[1]
        draws = [draw_step_noise(g, B, self.agent_config, self.device) for g in self.noise_generators]
        t = torch.stack([d[0] for d in draws])
        noise = torch.stack([d[1] for d in draws])
        masks = None if draws[0][2] is None else [torch.stack([d[2][i] for d in draws])
                                                  for i in range(len(draws[0][2]))]
        noisy = add_noise(actions, noise, t, self.schedule)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            predicted = self.nets["denoiser"](obs, noisy, t.unsqueeze(-1).to(actions.dtype), masks)
        logs: dict[str, torch.Tensor] = {}
        if self.config.behavior_weights == "awr":  # as Trainer.update_denoiser: the critic before its update
            with torch.no_grad():
                weights = losses.awr_weights(self.nets["target_critic"](obs, actions), self.nets["value"](obs),
                                             self.config.awr_beta)
            bc = vmap(losses.weighted_denoising_loss)(predicted.float(), noise, weights)
            logs["bc/weight_mean"] = weights.mean(-1)
        else:
            bc = vmap(losses.denoising_loss)(predicted.float(), noise)
        self._step("denoiser", bc)
        _lerp(self.nets["ema_denoiser"], self.nets["denoiser"], self.config.ema_rate)
        return logs | {"loss/bc": bc.detach()}

    def update_critic(self, batch: Transitions, obs: torch.Tensor, next_obs: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
        cfg, n = self.agent_config, self.nets
        with torch.no_grad():
            q_target = n["target_critic"](obs, batch.actions)
        v = n["value"](obs)
        v_loss = vmap(losses.value_loss, in_dims=(0, 0, None))(q_target, v, cfg.expectile)
        self._step("value", v_loss)
        with torch.no_grad():
            y = losses.td_target(batch.rewards, batch.masks, n["value"](next_obs), cfg.discount)
        q1, q2 = n["critic"].both(obs, batch.actions)
        q_loss = vmap(losses.q_loss)(q1, q2, y)
        self._step("critic", q_loss)
        _lerp(n["target_critic"], n["critic"], self.config.polyak)
        return {"loss/value": v_loss.detach(), "loss/q": q_loss.detach(), "q/target_mean": q_target.mean(-1),
                "v/mean": v.detach().mean(-1), "q/td_target_mean": y.mean(-1)}

    def update_extras(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        n, c = self.nets, self.config
        logs: dict[str, torch.Tensor] = {}
        if "alpha_net" in n or "actor" in n:
            with torch.no_grad():
                q_new, v_new = n["target_critic"](obs, actions), n["value"](obs)
        if "alpha_net" in n:
            alpha, beta = n["alpha_net"](obs), n["beta_net"](obs)
            l_alpha, l_beta = vmap(losses.multiplier_losses)(alpha, beta, alpha, beta, q_new, v_new)
            self._step("alpha", l_alpha, n["alpha_net"].parameters())
            self._step("beta", l_beta, n["beta_net"].parameters())
            logs.update({"loss/alpha": l_alpha.detach(), "loss/beta": l_beta.detach(),
                         "beta/mean": beta.detach().mean(-1)})
        if "actor" in n:
            if c.gaussian_weights == "awr":
                weights = losses.awr_weights(q_new, v_new, c.awr_beta)
            else:
                weights = losses.aligniql_weights(q_new, v_new, self.agent_config.eta)
            mean, log_std = n["actor"](obs)
            log_prob = losses.gaussian_log_prob(mean, log_std, actions)
            actor_loss = vmap(losses.weighted_regression_loss)(log_prob, weights)
            self._step("actor", actor_loss)
            logs.update({"loss/actor": actor_loss.detach(), "actor/weight_mean": weights.mean(-1)})
        return logs

    @torch.no_grad()
    def validation_losses(self) -> dict[str, torch.Tensor]:
        """Trainer.validation_losses per member, as (K,) tensors; empty without hold-outs."""
        if self.validation is None:
            return {}
        batch, t, noise = self.validation
        cfg, n = self.agent_config, self.nets
        obs = self.normalize_obs(batch.obs)
        noisy = add_noise(batch.actions, noise, t, self.schedule)
        bc = vmap(losses.denoising_loss)(n["ema_denoiser"](obs, noisy, t.unsqueeze(-1).to(noise.dtype)), noise)
        q1, q2 = n["target_critic"].both(obs, batch.actions)
        v = n["value"](obs)
        y = losses.td_target(batch.rewards, batch.masks, n["value"](self.normalize_obs(batch.next_obs)), cfg.discount)
        return {"val/bc": bc,
                "val/value": vmap(losses.value_loss, in_dims=(0, 0, None))(torch.minimum(q1, q2), v, cfg.expectile),
                "val/q": vmap(losses.q_loss)(q1, q2, y)}

    def learning_rates(self) -> dict[str, float]:
        """Shared by all members (one schedule, the same step count)."""
        return {f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    # ------------------------------------------------------------------ export and resume
    def member_agent(self, k: int) -> AlignIQLAgent:
        """Member ``k``'s acting agent now (EMA denoiser, target twin Q, V, extras), an ordinary
        :class:`AlignIQLAgent` on the training device, independent of further training."""
        if not 0 <= k < self.K:
            raise IndexError(f"member {k} out of range: this run has {self.K} members (0..{self.K - 1})")
        agent = copy.deepcopy(self._templates[k])
        for role, attr in ROLES.items():
            if attr is not None and role in self.nets:
                load_member(getattr(agent, attr), self.nets[role], k)
        with torch.no_grad():
            agent.obs_mean.copy_(self.obs_mean[k, 0])
            agent.obs_std.copy_(self.obs_std[k, 0])
        return agent.to(self.device).eval()

    def state_dict(self) -> dict[str, Any]:
        """The whole group, for ``checkpoint.save_state``: nets, optimizers, step and every member's RNG."""
        return {"step": self.step, "config": asdict(self.config), "seeds": list(self.seeds),
                "nets": self.nets.state_dict(), "obs_mean": self.obs_mean, "obs_std": self.obs_std,
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "rng": {"batch": [g.get_state() for g in self.generators],
                        "noise": [g.get_state() for g in self.noise_generators]}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the trainer must have been built with the same members and settings."""
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"training state is of seeds {list(state['seeds'])}, this run has {self.seeds}")
        if state["config"] != asdict(self.config):
            now = asdict(self.config)
            diff = {k: (v, now.get(k)) for k, v in state["config"].items() if now.get(k) != v}
            raise ValueError(f"training state was written with other trainer settings (saved, now): {diff}")
        if set(state["optimizers"]) != set(self.optimizers):
            raise ValueError(f"training state has optimizers {sorted(state['optimizers'])}, this run "
                             f"{sorted(self.optimizers)} (multipliers / Gaussian actor differ?)")
        self.nets.load_state_dict(state["nets"], strict=True)
        with torch.no_grad():
            self.obs_mean.copy_(state["obs_mean"])
            self.obs_std.copy_(state["obs_std"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.step = int(state["step"])
        for g, s in zip(self.generators, state["rng"]["batch"]):
            g.set_state(s)
        for g, s in zip(self.noise_generators, state["rng"]["noise"]):
            g.set_state(s)


@torch.no_grad()
def _lerp(target: nn.Module, online: nn.Module, rate: float) -> None:
    """target <- rate * online + (1 - rate) * target, elementwise, so per member."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), rate)


def holdout_rows(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The row indices ``split_holdout`` keeps and holds out for ``seed``: it is applied to the row numbers
    themselves, so a member trains on exactly the rows the single run with its seed trains on."""
    idx = torch.arange(n)
    train, held = split_holdout(Transitions(idx, idx, idx, idx, idx), fraction, seed)
    return train.obs, None if held is None else held.obs


# ---------------------------------------------------------------------------------------------- the loop
def member_dir(output_dir: str | Path, seed: int) -> Path:
    return Path(output_dir) / f"seed{seed}"


def train_members(transitions: Transitions, agent_configs: AlignIQLConfig | Sequence[AlignIQLConfig],
                  config: TrainerConfig, seeds: Sequence[int], output_dir: str | Path, *, obs_mean: Any = None,
                  obs_std: Any = None, holdout: float = 0.0, device: str | torch.device = "cpu",
                  log_every: int = 1000, save_every: int = 25_000, resume: bool = False, eval_every: int = 0,
                  evaluate: Callable[[int, AlignIQLAgent], dict[str, Any] | None] | None = None
                  ) -> list[AlignIQLAgent]:
    """Train one member per seed to ``config.steps`` and export member k to ``<output_dir>/seed<k>/``.

    Each member directory gets what a single-seed run's agent export is (``config.json``, ``model.safetensors``,
    loadable by ``AlignIQLAgent.from_pretrained``) and its own ``metrics.jsonl``; the group's training state is
    ``<output_dir>/training_state/`` (one state for all members). Evaluation, model cards and ``results.json``
    stay with the caller (``training.trainer.evaluate_agent`` on each returned agent).

    Args:
        transitions, agent_configs, config, obs_mean, obs_std, holdout, device: as :meth:`MultiSeedTrainer.from_seeds`.
        seeds: one distinct seed per member.
        output_dir: the group's directory.
        log_every: steps between metrics lines (losses, validation losses, learning rates).
        save_every: steps between exports of the state and the members (0: only at the end).
        resume: continue the group's saved state in ``output_dir`` instead of starting.
        eval_every, evaluate: every ``eval_every`` steps before the last, ``evaluate(seed, agent)`` for each
            member (e.g. ``training.trainer.evaluate_agent`` with that member's evaluation seed); a returned
            dict goes to the member's ``metrics.jsonl`` as ``eval/<key>``. The final evaluation is the caller's.

    Returns:
        The trained member agents, in seed order.

    Raises:
        Interrupted: after Ctrl-C, once the state and the members are saved.
    """
    if log_every < 1 or save_every < 0 or eval_every < 0:
        raise ValueError(f"log_every must be >= 1, save_every and eval_every >= 0, got {log_every}, {save_every}, "
                         f"{eval_every}")
    if eval_every and evaluate is None:
        raise ValueError("eval_every needs an evaluate(seed, agent) function")
    out = Path(output_dir)
    if resume and not checkpoint.has_state(out):
        raise FileNotFoundError(f"resume: {out} has no saved training state; start without resume")
    if not resume and checkpoint.has_state(out):
        raise FileExistsError(f"{out} already holds a training run; resume it, or pick another output_dir")
    trainer = MultiSeedTrainer.from_seeds(transitions, agent_configs, config, seeds, obs_mean=obs_mean,
                                          obs_std=obs_std, holdout=holdout, device=device)
    dirs = [member_dir(out, s) for s in trainer.seeds]
    # what defines the members' data, beyond what load_state_dict checks
    run_facts = {"seeds": trainer.seeds, "holdout": holdout, "transitions": len(transitions)}
    if resume:
        state, extra = checkpoint.load_state(out)
        if diff := {k: (extra.get(k), v) for k, v in run_facts.items() if extra.get(k) != v}:
            raise ValueError(f"resume: the run in {out} was started with other members or data (saved, now): {diff}")
        trainer.load_state_dict(state)
        for d in dirs:
            checkpoint.truncate_metrics(d / "metrics.jsonl", trainer.step)
        logger.info("resumed %s (seeds %s) at step %d", out, trainer.seeds, trainer.step)
    else:
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.jsonl").unlink(missing_ok=True)

    def save() -> None:
        for k, d in enumerate(dirs):
            trainer.member_agent(k).save_pretrained(d)
        checkpoint.save_state(trainer.state_dict(), out, extra=run_facts)

    steps, log_every = config.steps, max(1, min(log_every, config.steps))
    with checkpoint.StopOnInterrupt() as stop:
        window_t, window_step = time.perf_counter(), trainer.step
        while trainer.step < steps and not stop.requested:
            logs = trainer.train_step()
            step = trainer.step
            if step % log_every == 0 or step == steps:  # the only host sync
                now = time.perf_counter()
                logs |= trainer.validation_losses()
                values = {k: v.tolist() for k, v in logs.items()}
                rate = (step - window_step) / max(now - window_t, 1e-9)
                window_t, window_step = now, step
                for k, d in enumerate(dirs):
                    record = {"step": step, **{name: v[k] for name, v in values.items()},
                              **trainer.learning_rates(), "steps_per_second": rate}
                    if bad := [name for name, v in record.items() if not math.isfinite(v)]:
                        raise FloatingPointError(f"member seed {trainer.seeds[k]}: non-finite {bad} at step "
                                                 f"{step}; the last saved state is in {out}")
                    checkpoint.append_jsonl(d / "metrics.jsonl", record)
            if eval_every and step % eval_every == 0 and step < steps:
                for k, d in enumerate(dirs):
                    result = evaluate(trainer.seeds[k], trainer.member_agent(k))
                    if result is not None:
                        checkpoint.append_jsonl(d / "metrics.jsonl",
                                                {"step": step, **{f"eval/{n}": v for n, v in result.items()}})
            if save_every and step % save_every == 0 and step < steps:
                save()
        save()  # still inside: a Ctrl-C now waits until the files are written
    if stop.requested:
        logger.warning("stopped at step %d of %d; the state is saved in %s, continue with resume=True",
                       trainer.step, steps, out)
        raise Interrupted
    return [trainer.member_agent(k) for k in range(trainer.K)]
