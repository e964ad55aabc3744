"""One AlignIQL gradient step (docs/algorithm.md §13), and the optimizers, target nets and RNG around it.

The trainer owns an :class:`~aligniql.AlignIQLAgent` whose modules are the inference weights: the EMA
denoiser, the *target* twin Q, V, the multiplier nets and the Gaussian actor. Online copies of the denoiser
and the twin Q are trained here and averaged into the agent, so ``trainer.agent.save_pretrained(dir)`` is
always the shippable checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aligniql import AlignIQLAgent, AlignIQLConfig
from aligniql.diffusion import add_noise
from training import losses
from training.datasets import Transitions

logger = logging.getLogger(__name__)
GAUSSIAN_WEIGHTS = ("awr", "aligniql")
INITS = ("xavier", "torch")
BEHAVIOR_WEIGHTS = ("none", "awr")
VALIDATION_ROWS = 4096  # held-out transitions scored per log line: ~0.1 s on a 2-core CPU, under 1 % of training


@dataclass(frozen=True)
class TrainerConfig:
    """Optimisation settings (docs/algorithm.md §2.4, §3, §6.2, §8.1); expectile, discount, eta are in the agent config.

    ``training.config.TrainConfig.trainer_config()`` builds one from a run's config; its defaults are the
    ``OptimConfig`` defaults.
    """

    steps: int = 3_000_000
    """Step budget; the denoiser's (and Gaussian actor's) cosine learning rate reaches 0 there."""
    batch_size: int = 512
    critic_lr: float = 3e-4
    """Adam, constant, for the twin Q and for V."""
    denoiser_lr: float = 3e-4
    denoiser_weight_decay: float = 1e-4
    """AdamW's decoupled decay, on all denoiser parameters (optax default; PyTorch's 1e-2 would be wrong)."""
    multiplier_lr: float = 3e-5
    multiplier_grad_clip: float = 1.0
    actor_lr: float = 3e-4
    polyak: float = 0.005
    """Rate of the target twin Q's Polyak average."""
    ema_rate: float = 0.001
    """Rate of the EMA denoiser that acts (actor_tau)."""
    gaussian_weights: str = "awr"
    """Weights of the optional Gaussian actor: IQL's ``awr`` or AlignIQL's ``aligniql`` (exp(-eta (Q-V)^2))."""
    awr_beta: float = 3.0
    behavior_weights: str = "none"
    """``none``: the denoiser clones the behaviour (the paper). ``awr``: each sample's denoising loss is weighted
    by IQL's min(exp(awr_beta (Q - V)), 100), from the target critic and V before this step's critic update, so
    the candidates come from a policy tilted towards the data's better actions."""
    critic_updates: int = 1
    """IQL critic updates (V, twin Q, Polyak) per step, each extra one on a fresh batch: the critic never reads
    the behaviour model, and its update costs ~1/5 of the diffusion one, so it can train on more batches in
    about the same time. The multipliers and the Gaussian actor update once per step, on the final critic."""
    train_denoiser: bool = True
    """``False`` keeps the agent's denoiser as given (a behaviour model reused from another run): no diffusion
    BC update, no denoiser optimizer."""
    precision: str = "fp32"
    """``bf16`` runs the denoiser's forward/backward under bfloat16 autocast (fp32 master weights and
    optimizer); the critic, whose TD targets need the precision, stays fp32. ``fp32`` is the faithful default."""

    init: str = "xavier"
    """How the Q, V, multiplier and Gaussian-actor MLPs start (:func:`init_networks`): ``xavier`` (uniform
    weights, zero biases) or ``torch`` (``nn.Linear``'s own default, as d3rlpy and CORL leave it). The
    :class:`Trainer` takes the agent as given and does not apply it: whoever builds the agent calls
    :func:`init_networks` right after (``train.py`` and :class:`~training.multi_seed.MultiSeedTrainer` do), so
    the draws follow the agent's own. The denoiser keeps its jaxrl5 init either way."""

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.critic_updates < 1:
            raise ValueError(f"critic_updates must be >= 1, got {self.critic_updates}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.gaussian_weights not in GAUSSIAN_WEIGHTS:
            raise ValueError(f"gaussian_weights must be one of {GAUSSIAN_WEIGHTS}, got {self.gaussian_weights!r}")
        if self.behavior_weights not in BEHAVIOR_WEIGHTS:
            raise ValueError(f"behavior_weights must be one of {BEHAVIOR_WEIGHTS}, got {self.behavior_weights!r}")


def init_networks(agent: AlignIQLAgent, init: str) -> None:
    """Re-initialize the agent's Q, V, multiplier and Gaussian-actor MLPs with ``init`` (see
    :attr:`TrainerConfig.init`); ``xavier`` is how :class:`AlignIQLAgent` builds them, so it changes nothing.
    Draws from the global RNG, like the agent's own construction: call it right after building the agent."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "xavier":
        return
    for net in (agent.critic, agent.value, agent.alpha_net, agent.beta_net, agent.actor):
        for layer in () if net is None else net.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()


def _cosine(total: int):
    # optax.cosine_decay_schedule(lr, total): factor 0.5 (1 + cos(pi min(t, total) / total)), exactly 0 at the end
    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    return factor


def noise_seed(seed: int) -> int:
    """Seed of a run's step-noise generator (diffusion steps, noise, dropout masks), derived from the run's seed.

    Not ``seed`` itself: the batch generator has that one, and two generators seeded alike would draw the same
    bits, tying each step's diffusion steps to its batch indices.
    """
    return int(np.random.SeedSequence([seed % 2**64, 1]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def draw_step_noise(generator: torch.Generator, batch_size: int, config: AlignIQLConfig,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
    """The randomness of one diffusion BC step, in a fixed order from ``generator``: diffusion steps t (B,),
    noise (B, A), then one dropout mask (B, hidden) per LN-ResNet block, scaled by 1 / (1 - p) (``None`` when
    p = 0). One function for :class:`Trainer` and ``training.multi_seed``, so that a member of a multi-seed run
    draws exactly what the single run with its seed draws."""
    c = config
    t = torch.randint(c.num_diffusion_steps, (batch_size,), generator=generator, device=device)
    noise = torch.randn((batch_size, c.act_dim), generator=generator, device=device)
    p = c.denoiser_dropout
    if p == 0:
        return t, noise, None
    masks = [(torch.rand((batch_size, c.denoiser_hidden_dim), generator=generator, device=device) >= p)
             .float().mul_(1.0 / (1.0 - p)) for _ in range(c.denoiser_blocks)]
    return t, noise, masks


@torch.no_grad()
def _lerp_into(target: nn.Module, online: nn.Module, rate: float) -> None:
    """target <- rate * online + (1 - rate) * target, for Polyak and EMA alike."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), rate)


class Trainer:
    """Train an :class:`AlignIQLAgent` on a :class:`Transitions` set.

    Args:
        agent: the agent to train in place; its denoiser becomes the EMA copy, its critic the target twin Q.
        data: the whole dataset; moved to ``device`` once, batches are sampled on the device.
        config: optimisation settings.
        seed: seeds the batch sampler's ``torch.Generator`` and, through :func:`noise_seed`, the step-noise
            generator (diffusion steps, noise, dropout masks) on ``device``; both states are checkpointed. The
            global RNG is used only for network init: seed it with ``torch.manual_seed`` before building the agent.
        device: training device.
        validation: held-out transitions for :meth:`validation_losses` (up to ``VALIDATION_ROWS`` are used).
    """

    def __init__(self, agent: AlignIQLAgent, data: Transitions, config: TrainerConfig, *, seed: int = 0,
                 device: str | torch.device = "cpu", validation: Transitions | None = None) -> None:
        agent.check_statistics()  # normalized batches need them: set_normalization(mean, std) first
        self.device = torch.device(device)
        self.config = config
        self.agent = agent.to(self.device).eval()  # the acting copies never need dropout
        self.data = data.to(self.device)
        self.validation: tuple[Transitions, torch.Tensor, torch.Tensor] | None = None
        if validation is not None and len(validation) > 0:
            # fixed rows, noise and diffusion steps, drawn from their own generator: the losses are comparable
            # across steps, and computing them leaves the training RNG (hence --resume) untouched
            rows = validation.index(torch.arange(min(len(validation), VALIDATION_ROWS)))
            g = torch.Generator().manual_seed(0)
            t = torch.randint(agent.config.num_diffusion_steps, (len(rows),), generator=g)
            noise = torch.randn(rows.actions.shape, generator=g)
            self.validation = (rows.to(self.device), t.to(self.device), noise.to(self.device))
        self.denoiser = copy.deepcopy(agent.denoiser).train()  # online, dropout on; EMA starts equal to it
        self.critic = copy.deepcopy(agent.critic).train()  # online; the target starts equal to it
        self.step = 0
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        # on the training device, so that a GPU step draws its noise without a host round trip
        self.noise_generator = torch.Generator(device=self.device).manual_seed(noise_seed(seed))
        c = config
        # fused: one kernel per optimizer instead of a Python loop over parameters (same update rule)
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        if c.train_denoiser:
            self.optimizers["denoiser"] = torch.optim.AdamW(self.denoiser.parameters(), lr=c.denoiser_lr,
                                                            weight_decay=c.denoiser_weight_decay, **fused)
        self.optimizers["critic"] = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr, **fused)
        self.optimizers["value"] = torch.optim.Adam(agent.value.parameters(), lr=c.critic_lr, **fused)
        if agent.alpha_net is not None and agent.beta_net is not None:
            self.optimizers["alpha"] = torch.optim.Adam(agent.alpha_net.parameters(), lr=c.multiplier_lr, **fused)
            self.optimizers["beta"] = torch.optim.Adam(agent.beta_net.parameters(), lr=c.multiplier_lr, **fused)
        if agent.actor is not None:  # IQL: Adam with a cosine-decayed learning rate
            self.optimizers["actor"] = torch.optim.Adam(agent.actor.parameters(), lr=c.actor_lr, **fused)
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(self.optimizers[name], _cosine(c.steps))
                           for name in ("denoiser", "actor") if name in self.optimizers}

    # ------------------------------------------------------------------ one step
    def sample_batch(self) -> Transitions:
        """Uniform indices from the checkpointed generator (on the CPU, so every device draws the same batch)."""
        idx = torch.randint(len(self.data), (self.config.batch_size,), generator=self.generator)
        return self.data.index(idx.to(self.device, non_blocking=True))

    def train_step(self) -> dict[str, torch.Tensor]:
        """Sample a batch and update on it; returns detached scalar tensors (no host sync)."""
        return self.update(self.sample_batch())

    def _step(self, name: str, loss: torch.Tensor, clip_params: Any = None) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_params is not None:
            nn.utils.clip_grad_norm_(clip_params, self.config.multiplier_grad_clip)
        opt.step()
        if name in self.schedulers:
            self.schedulers[name].step()

    def update(self, batch: Transitions) -> dict[str, torch.Tensor]:
        """BC -> V -> Q -> Polyak -> multipliers -> Gaussian actor, all on the same batch (docs/algorithm.md §2.2).

        With ``critic_updates = k > 1``, k - 1 critic updates on fresh batches come before this batch's; without
        ``train_denoiser`` there is no BC update.

        Returns:
            Detached 0-dim tensors keyed by name; convert with ``float()`` only when logging.
        """
        obs = self.agent.normalize_obs(batch.obs)
        logs = self.update_denoiser(obs, batch.actions) if self.config.train_denoiser else {}
        for _ in range(self.config.critic_updates - 1):
            self.update_critic(self.sample_batch())
        logs |= self.update_critic_and_extras(batch, obs=obs)
        self.step += 1
        return logs

    def update_critic_and_extras(self, batch: Transitions, *, obs: torch.Tensor | None = None
                                 ) -> dict[str, torch.Tensor]:
        """A step without the diffusion BC: V, twin Q and Polyak, then the multipliers and the Gaussian actor
        (the work of plain IQL's step when the actor is trained). Does not advance :attr:`step`."""
        obs = self.agent.normalize_obs(batch.obs) if obs is None else obs
        logs = self.update_critic(batch, obs=obs, next_obs=self.agent.normalize_obs(batch.next_obs))
        return logs | self.update_extras(obs, batch.actions)

    def update_denoiser(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Diffusion behaviour cloning (dropout on; advantage-weighted with ``behavior_weights="awr"``), then the
        EMA copy that acts."""
        agent = self.agent
        t, noise, masks = draw_step_noise(self.noise_generator, actions.shape[0], agent.config, self.device)
        noisy = add_noise(actions, noise, t, agent.schedule)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            predicted = self.denoiser(obs, noisy, t.unsqueeze(-1).to(actions.dtype), masks)
        if self.config.behavior_weights == "awr":
            with torch.no_grad():
                weights = losses.awr_weights(agent.critic(obs, actions), agent.value(obs), self.config.awr_beta)
            bc = losses.weighted_denoising_loss(predicted.float(), noise, weights)
            logs = {"bc/weight_mean": weights.mean()}
        else:
            bc, logs = losses.denoising_loss(predicted.float(), noise), {}
        self._step("denoiser", bc)
        _lerp_into(agent.denoiser, self.denoiser, self.config.ema_rate)
        return logs | {"loss/bc": bc.detach()}

    def update_critic(self, batch: Transitions, *, obs: torch.Tensor | None = None,
                      next_obs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The IQL critic alone: expectile V on the target twin-min Q, then Q towards r + discount * mask * V(s')
        with the V just updated, then Polyak into the target. ``obs``/``next_obs``: already normalized."""
        agent, cfg = self.agent, self.agent.config
        obs = agent.normalize_obs(batch.obs) if obs is None else obs
        next_obs = agent.normalize_obs(batch.next_obs) if next_obs is None else next_obs
        with torch.no_grad():
            q_target = agent.critic(obs, batch.actions)
        v = agent.value(obs)
        v_loss = losses.value_loss(q_target, v, cfg.expectile)
        self._step("value", v_loss)
        with torch.no_grad():
            y = losses.td_target(batch.rewards, batch.masks, agent.value(next_obs), cfg.discount)
        q1, q2 = self.critic.both(obs, batch.actions)
        q_loss = losses.q_loss(q1, q2, y)
        self._step("critic", q_loss)
        _lerp_into(agent.critic, self.critic, self.config.polyak)
        return {"loss/value": v_loss.detach(), "loss/q": q_loss.detach(), "q/target_mean": q_target.mean(),
                "v/mean": v.detach().mean(), "q/td_target_mean": y.mean()}

    def update_extras(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """AlignIQL-hard multipliers and the Gaussian actor, when trained, on the freshly updated critic."""
        agent, c = self.agent, self.config
        logs: dict[str, torch.Tensor] = {}
        if "alpha" in self.optimizers or "actor" in self.optimizers:
            with torch.no_grad():  # after this step's V, Q and Polyak updates
                q_new, v_new = agent.critic(obs, actions), agent.value(obs)
        if "alpha" in self.optimizers:
            # Both outputs come from the pre-update nets, so L_beta sees the pre-update alpha, as in the official
            # sequential code; each loss reaches only its own net (the other output is detached inside).
            alpha, beta = agent.alpha_net(obs), agent.beta_net(obs)
            l_alpha, l_beta = losses.multiplier_losses(alpha, beta, alpha, beta, q_new, v_new)
            self._step("alpha", l_alpha, agent.alpha_net.parameters())
            self._step("beta", l_beta, agent.beta_net.parameters())
            logs.update({"loss/alpha": l_alpha.detach(), "loss/beta": l_beta.detach(),
                         "beta/mean": beta.detach().mean()})
        if "actor" in self.optimizers:
            if c.gaussian_weights == "awr":
                weights = losses.awr_weights(q_new, v_new, c.awr_beta)
            else:
                weights = losses.aligniql_weights(q_new, v_new, agent.config.eta)
            mean, log_std = agent.actor(obs)
            actor_loss = losses.weighted_regression_loss(losses.gaussian_log_prob(mean, log_std, actions), weights)
            self._step("actor", actor_loss)
            logs.update({"loss/actor": actor_loss.detach(), "actor/weight_mean": weights.mean()})
        return logs

    @torch.no_grad()
    def validation_losses(self) -> dict[str, torch.Tensor]:
        """The acting networks' losses on the held-out transitions: ``val/bc`` (EMA denoiser, no dropout),
        ``val/value`` (V's expectile loss on the target twin Q) and ``val/q`` (the target twin's TD error).
        A rising ``val/bc`` while ``loss/bc`` falls is the behaviour policy overfitting. Empty without a hold-out.
        """
        if self.validation is None:
            return {}
        batch, t, noise = self.validation
        agent, cfg = self.agent, self.agent.config
        obs = agent.normalize_obs(batch.obs)
        noisy = add_noise(batch.actions, noise, t, agent.schedule)
        bc = losses.denoising_loss(agent.denoiser(obs, noisy, t.unsqueeze(-1).to(noise.dtype)), noise)
        q1, q2 = agent.critic.both(obs, batch.actions)
        v = agent.value(obs)
        y = losses.td_target(batch.rewards, batch.masks, agent.value(agent.normalize_obs(batch.next_obs)),
                             cfg.discount)
        return {"val/bc": bc, "val/value": losses.value_loss(torch.minimum(q1, q2), v, cfg.expectile),
                "val/q": losses.q_loss(q1, q2, y)}

    def learning_rates(self) -> dict[str, float]:
        return {f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    # ------------------------------------------------------------------ state for --resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run bit for bit: nets, targets, EMA, optimizers, step, RNG."""
        rng: dict[str, Any] = {"batch": self.generator.get_state(), "noise": self.noise_generator.get_state(),
                               "noise_device": self.device.type,
                               "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"step": self.step, "config": asdict(self.config), "agent": self.agent.state_dict(),
                "online_denoiser": self.denoiser.state_dict(), "online_critic": self.critic.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()}, "rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the trainer must have been built with the same settings."""
        if state["config"] != asdict(self.config):
            diff = {k: (v, asdict(self.config)[k]) for k, v in state["config"].items()
                    if asdict(self.config).get(k) != v}
            raise ValueError(f"training state was written with other trainer settings (saved, now): {diff}")
        if set(state["optimizers"]) != set(self.optimizers):
            raise ValueError(f"training state has optimizers {sorted(state['optimizers'])}, this trainer "
                             f"{sorted(self.optimizers)} (--multipliers / --gaussian-actor differ?)")
        self.agent.load_state_dict(state["agent"], strict=True)
        self.denoiser.load_state_dict(state["online_denoiser"], strict=True)
        self.critic.load_state_dict(state["online_critic"], strict=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.step = int(state["step"])
        self.generator.set_state(state["rng"]["batch"])
        saved_on = state["rng"].get("noise_device", self.device.type)
        if "noise" in state["rng"] and saved_on == self.device.type:
            self.noise_generator.set_state(state["rng"]["noise"])
        elif "noise" in state["rng"]:  # CPU and CUDA generator states do not convert into each other
            logger.warning("training state was saved on %s, resumed on %s: the step noise restarts from a generator "
                           "seeded by the step, so the run continues, but not bit for bit", saved_on, self.device.type)
            self.noise_generator.manual_seed(noise_seed(int(state["step"])))
        else:  # written before the step noise had its own generator (it came from the global RNG)
            logger.info("training state has no step-noise generator state: step noise continues from a fresh one")
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)


def score_of(result: dict[str, Any]) -> float | None:
    """Success rate (%) for goal-reaching tasks, else the normalized score, else the mean return (the headline of
    every benchmark table and summary); None for a run that was not evaluated."""
    if not result.get("evaluated", True):
        return None
    if result.get("success_rate") is not None:
        return 100.0 * result["success_rate"]
    if result.get("normalized_score") is not None:
        return float(result["normalized_score"])
    return None if result.get("mean_return") is None else float(result["mean_return"])


def evaluate_agent(agent: AlignIQLAgent, dataset_id: str, episodes: int, seed: int, *,
                   num_envs: int = 1, record_video: Any = None) -> dict[str, Any] | None:
    """Evaluate in the dataset's eval env with ``aligniql.evaluation.evaluate``, leaving the training RNG alone.

    Returns:
        ``EvalResult.to_dict()``, or ``None`` when ``episodes`` is 0.
    """
    if episodes <= 0:
        return None
    from aligniql.evaluation import evaluate

    devices = [agent.device] if agent.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # so that a resumed run draws the same numbers
        result = evaluate(agent, dataset_id, episodes=episodes, seed=seed,
                          num_envs=max(1, min(num_envs, episodes)), record_video=record_video).to_dict()
    parts = [f"return {result['mean_return']:.1f} +- {result['std_return']:.1f} over {episodes} episode"
             + ("s" if episodes != 1 else "")]
    if result.get("normalized_score") is not None:
        parts.append(f"normalized score {result['normalized_score']:.1f}")
    if result.get("success_rate") is not None:
        parts.append(f"success rate {100 * result['success_rate']:.0f}%")
    logger.info("eval: %s", ", ".join(parts))
    return result
