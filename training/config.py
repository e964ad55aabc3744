"""`TrainConfig`: every setting of a training run, in one frozen dataclass tree saved as ``train_config.json``.

The tree has six groups (``run``, ``data``, ``agent``, ``optim``, ``eval``, ``hub``); every field name is unique
across the groups and is also its command-line flag (``batch_size`` <-> ``--batch-size``), so the CLI of
``training/train.py`` is generated from these classes (:func:`build_parser`) and a flat name addresses a field
without its group (:meth:`TrainConfig.replace`). Fields whose default is ``None`` and that are marked ``preset``
are filled from the dataset's domain preset (``training/presets.py``) by :meth:`TrainConfig.resolved`.

Each field declares, next to its default and docstring: the values it accepts (checked in ``__post_init__``,
one wording for all), whether it may change on ``--resume`` (``resumable``), and what a run saved before the
field existed did (``legacy``), which is how old ``train_config.json`` files still resume.

    from training.config import TrainConfig
    from training.train import train

    config = TrainConfig.create(dataset="bench/hopper/medium-v0", steps=30_000, batch_size=256, seed=1)
    train(config.replace(expectile=0.8, output_dir="runs/hopper-e08"))
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import math
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligniql.agent import resolve_device
from aligniql.config import (ACTOR_LOG_STDS, EXTRACTIONS, REWARD_TRANSFORMS, SELECTIONS, AlignIQLConfig,
                             rule_defaults)
from aligniql.precision import PRECISIONS, resolve_precision
from training.presets import PRESET_NAMES, PRESETS, Preset, dataset_slug, preset_for
from training.trainer import BEHAVIOR_WEIGHTS, GAUSSIAN_WEIGHTS, INITS, TrainerConfig

SAVED_FORMAT = 2
"""``train_config.json`` format: 2 holds ``config`` (this tree); 1 (before TrainConfig) held flat ``args``."""
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Check:
    """A rule a field's value must follow, with the words used in the error message."""

    words: str
    ok: Callable[[Any], bool]


def at_least(low: float) -> Check:
    return Check(f">= {low}", lambda v: v >= low)


def positive() -> Check:
    return Check("> 0 and finite", lambda v: math.isfinite(v) and v > 0)


def between(low: float, high: float, *, low_open: bool = True, high_open: bool = True) -> Check:
    def ok(v: float) -> bool:
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)

    return Check(f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}", ok)


def option(default: Any, *, check: Check | None = None, choices: tuple[str, ...] | None = None,
           preset: bool = False, resumable: bool = False, legacy: Any = _MISSING, const: Any = None,
           source: bool = False) -> Any:
    """A config field.

    Args:
        default: the default; ``None`` with ``preset=True`` means "the domain preset's value".
        check: the rule the value follows (``None`` values are not checked).
        choices: the accepted strings.
        preset: filled from ``training.presets.Preset`` by :meth:`TrainConfig.resolved` when left ``None``.
        resumable: may differ between a run and its ``--resume``; all other fields define the run.
        legacy: the value runs saved before this field existed behaved as (default: ``default``).
        const: for an optional-value flag (``--gaussian-actor`` alone means ``awr``).
        source: one of the mutually exclusive, required dataset flags (``--env`` / ``--dataset``).
    """
    meta = {"check": check, "choices": choices, "preset": preset, "resumable": resumable, "legacy": legacy,
            "const": const, "source": source}
    return field(default=default, metadata=meta)


def _check_group(group: Any) -> None:
    """Types, choices and ranges of one group's fields; the one place these are checked."""
    hints = _hints(type(group))
    for f in dataclasses.fields(group):
        value, meta = getattr(group, f.name), f.metadata
        if value is None:
            if _base(hints[f.name])[1]:
                continue
            raise ValueError(f"{_name(f.name)} must be given, got None")
        base, _ = _base(hints[f.name])
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # JSON writes 1.0 as 1 sometimes; a float field takes an int
            object.__setattr__(group, f.name, value)
        if not isinstance(value, base) or (base is int and isinstance(value, bool)):
            raise ValueError(f"{_name(f.name)} must be {base.__name__}, got {value!r}")
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{_name(f.name)} must be one of {', '.join(meta['choices'])}, got {value!r}")
        if (check := meta.get("check")) is not None and not check.ok(value):
            raise ValueError(f"{_name(f.name)} must be {check.words}, got {value!r}")


def _name(field_name: str) -> str:
    """How errors name a field: its path in the tree and its flag."""
    return f"{_GROUP_OF.get(field_name, '?')}.{field_name} ({flag_of(field_name)})"


def flag_of(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


class _Group:
    def __post_init__(self) -> None:
        _check_group(self)


@dataclass(frozen=True)
class RunConfig(_Group):
    """Where and how the run executes."""

    seed: int = option(0)
    """Seeds the network init, the batches and the hold-out split (and the evaluation episodes unless
    --eval-seed is given)."""
    output_dir: str | None = option(None, resumable=True)
    """Run directory (default runs/aligniql-<dataset>-seed<seed>)."""
    device: str = option("auto", resumable=True)
    """auto, cpu, cuda or cuda:N."""
    threads: int = option(0, check=at_least(0), resumable=True)
    """CPU threads for torch (0: torch's default); use 1 on cores shared with other jobs."""
    log_every: int = option(1000, check=at_least(1), resumable=True)
    """Steps between metrics.jsonl lines (and progress lines when stderr is not a terminal)."""
    save_every: int = option(25_000, check=at_least(0), resumable=True)
    """Steps between training-state checkpoints (0: only at the end)."""
    resume: bool = option(False, resumable=True)
    """Continue the run in --output-dir from its training state (its defining settings must match)."""
    preset: str = option("default", choices=PRESET_NAMES, legacy="paper")
    """Where the fields marked preset take their values: default (this package's per-domain choices, the
    paper's settings wherever no measurement says otherwise) or paper (the official AlignIQL launchers' settings,
    exactly)."""


@dataclass(frozen=True)
class DataConfig(_Group):
    """The dataset and how its transitions are prepared."""

    env: str | None = option(None, source=True, resumable=True)
    """D4RL dataset name, mapped to its Minari id (walker2d-medium-v2)."""
    dataset: str | None = option(None, source=True, resumable=True)
    """Any Minari dataset id, local ones included (bench/hopper/medium-v0)."""
    download: bool = option(True, resumable=True)
    """Download the dataset when it is not local (needs network)."""
    holdout: float = option(0.05, check=between(0, 1, low_open=False), legacy=0.0)
    """Fraction of transitions held out (not trained on) for the val/* losses in metrics.jsonl, as the
    official code's 5%; 0 trains on everything."""
    normalize_obs: bool = option(True)
    """Standardize observations with dataset statistics (the official code does not)."""
    reward_transform: str | None = option(None, choices=REWARD_TRANSFORMS, preset=True)
    """locomotion (x1000 / (max - min episode return)), antmaze (r - 1) or none."""


@dataclass(frozen=True)
class AgentConfig(_Group):
    """The agent's networks and its act-time defaults (stored in config.json)."""

    hidden_dim: int = option(AlignIQLConfig.hidden_dim, check=at_least(1))
    """Q, V, multiplier and Gaussian-actor MLP width."""
    value_layer_norm: bool | None = option(None, preset=True, legacy=True)
    """LayerNorm on the input of V and of the multiplier nets, as the jaxrl5 MLP of the official launchers does."""
    denoiser_hidden_dim: int = option(AlignIQLConfig.denoiser_hidden_dim, check=at_least(1))
    """LN-ResNet width (blocks are 4x inside)."""
    denoiser_blocks: int = option(AlignIQLConfig.denoiser_blocks, check=at_least(1))
    """LN-ResNet residual blocks."""
    denoiser_dropout: float = option(AlignIQLConfig.denoiser_dropout, check=between(0, 1, low_open=False))
    """Dropout inside the LN-ResNet blocks (training only)."""
    time_dim: int = option(AlignIQLConfig.time_dim, check=at_least(2))
    """Learnable Fourier time features."""
    diffusion_steps: int = option(AlignIQLConfig.num_diffusion_steps, check=at_least(1))
    """T of the noise schedule."""
    beta_schedule: str = option(AlignIQLConfig.beta_schedule, choices=("vp", "cosine", "linear"))
    """Noise schedule (vp: the official one)."""
    clip_sampler: bool = option(AlignIQLConfig.clip_sampler)
    """Clip the sample to [-1, 1] after every reverse step (official default)."""
    ddpm_temperature: float = option(AlignIQLConfig.ddpm_temperature, check=positive())
    """Scale of the noise added at each reverse step when acting."""
    multipliers: bool = option(False)
    """Train AlignIQL-hard's alpha(s), beta(s) nets."""
    gaussian_actor: str | None = option(None, choices=GAUSSIAN_WEIGHTS, const="awr")
    """Also train a Gaussian actor by weighted regression: IQL's awr weights (the flag alone) or AlignIQL's
    aligniql weights exp(-eta (Q-V)^2)."""
    actor_log_std: str = option(AlignIQLConfig.actor_log_std, choices=ACTOR_LOG_STDS)
    """The Gaussian actor's log-std: clamp (a parameter clipped to [-5, 2], the IQL authors') or sigmoid
    (-5 + 7 sigmoid(p), d3rlpy's)."""
    extraction: str | None = option(None, choices=EXTRACTIONS, preset=True, legacy=AlignIQLConfig.extraction)
    """Default action-extraction rule stored in config.json."""
    selection: str | None = option(None, choices=SELECTIONS, preset=True, legacy="argmax")
    """Default candidate selection stored in config.json (default: the preset's with the preset's extraction;
    with an extraction given, softmax for idql_expectile, else argmax)."""
    temperature: float | None = option(None, check=positive(), preset=True, legacy=AlignIQLConfig.temperature)
    """Softmax selection temperature stored in config.json (default: the preset's with the preset's extraction,
    else 1)."""
    eta: float = option(AlignIQLConfig.eta, check=positive())
    """AlignIQL strength in exp(-eta (Q-V)^2)."""
    num_samples: int | None = option(None, check=at_least(1), preset=True)
    """Diffusion candidates per state when acting."""


_T = TrainerConfig  # the Trainer's own settings: their defaults are the ones declared there


@dataclass(frozen=True)
class OptimConfig(_Group):
    """The objective's constants, the optimizers and the step budget."""

    steps: int | None = option(None, check=at_least(1), preset=True)
    """Gradient steps; the cosine learning rates reach 0 there, so --resume cannot lengthen a run."""
    batch_size: int | None = option(None, check=at_least(1), preset=True)
    """Transitions per step."""
    expectile: float | None = option(None, check=between(0, 1), preset=True)
    """IQL expectile of V."""
    discount: float = option(AlignIQLConfig.discount, check=between(0, 1, high_open=False))
    """TD discount."""
    awr_beta: float | None = option(None, check=positive(), preset=True)
    """AWR inverse temperature of the Gaussian actor's weights (and of the behaviour model's, with
    --behavior-weights awr)."""
    behavior_weights: str | None = option(None, choices=BEHAVIOR_WEIGHTS, preset=True, legacy="none")
    """none: the diffusion model clones the behaviour, as the paper. awr: each sample's denoising loss is weighted
    by IQL's min(exp(awr_beta (Q - V)), 100), so that the candidates come from the data's better actions (on mixed
    data most of a state's candidates are otherwise the bad part's); measured worse than none on the mixed dev sets
    and on hopper/medium-expert (benchmarks/README.md), so no preset sets it. Ignored with --behavior-from."""
    critic_lr: float = option(_T.critic_lr, check=positive())
    """Adam learning rate (constant) of the twin Q and of V."""
    denoiser_lr: float = option(_T.denoiser_lr, check=positive())
    """AdamW peak learning rate of the denoiser (cosine decay to 0 at --steps)."""
    denoiser_weight_decay: float = option(_T.denoiser_weight_decay, check=at_least(0))
    """AdamW's decoupled weight decay on all denoiser parameters (optax's default, not PyTorch's 1e-2)."""
    multiplier_lr: float = option(_T.multiplier_lr, check=positive())
    """Adam learning rate of the AlignIQL-hard multiplier nets."""
    multiplier_grad_clip: float = option(_T.multiplier_grad_clip, check=positive())
    """Gradient-norm clip of the multiplier nets."""
    actor_lr: float = option(_T.actor_lr, check=positive())
    """Adam peak learning rate of the Gaussian actor (cosine decay to 0 at --steps)."""
    polyak: float = option(_T.polyak, check=between(0, 1, high_open=False))
    """Rate of the target twin Q's Polyak average."""
    ema_rate: float = option(_T.ema_rate, check=between(0, 1, high_open=False))
    """Rate of the EMA denoiser that acts."""
    critic_updates: int = option(_T.critic_updates, check=at_least(1))
    """IQL critic updates (V, twin Q, Polyak) per step, the extra ones on fresh batches: more critic training
    at ~1/5 of a full step's cost each (the critic never reads the behaviour model). The multipliers and the
    Gaussian actor still update once per step."""
    init: str = option(_T.init, choices=INITS)
    """How the Q, V, multiplier and Gaussian actor MLPs start: xavier (uniform, zero biases) or torch
    (nn.Linear's default, as d3rlpy and CORL)."""
    behavior_from: str | None = option(None)
    """A trained agent (run directory, agent directory or Hub id) of the same dataset whose behaviour model (the
    EMA denoiser) this run reuses as it is: only the critic, the multipliers and the Gaussian actor train, so a
    new expectile or critic budget costs a critic's training (~1/5 of a full run), as IDQL's decoupling allows."""
    precision: str = option(_T.precision, choices=PRECISIONS, resumable=True)
    """bf16: the denoiser's forward/backward under bfloat16 autocast (fp32 master weights; the critic stays
    fp32; ~1.2-1.35x faster on AVX512-BF16 CPUs). auto: bf16 where the training device has native bf16 matmuls
    (AMX or AVX512-BF16 CPUs, Ampere+ GPUs), else fp32; train_config.json records which was used. May change on
    --resume (the state holds fp32 master weights either way)."""


@dataclass(frozen=True)
class EvalConfig(_Group):
    """Evaluation in the dataset's environment during and after training."""

    eval_every: int | None = option(None, check=at_least(0), preset=True, resumable=True)
    """Evaluate every N steps; 0 = only at the end."""
    eval_episodes: int | None = option(None, check=at_least(0), preset=True, resumable=True)
    """Episodes per evaluation; 0 = no evaluation."""
    eval_seed: int | None = option(None, resumable=True)
    """Seed of the first evaluation episode (episode i: + i); default: --seed."""
    eval_num_envs: int = option(10, check=at_least(1), resumable=True)
    """Envs stepped together during evaluation (batched act; results do not depend on it)."""
    video: bool = option(True, resumable=True)
    """Record replay.mp4 of the final evaluation's first episode for the model card."""


def _repo_id_check() -> Check:
    def ok(repo_id: str) -> bool:
        from training.push import repo_id_problem

        return repo_id_problem(repo_id) is None

    return Check("a Hub repo id ('org/name' or 'name')", ok)


@dataclass(frozen=True)
class HubConfig(_Group):
    """Publishing the agent to the Hugging Face Hub."""

    push: bool = option(False, resumable=True)
    """Upload the agent to the Hugging Face Hub at the end."""
    repo_id: str | None = option(None, check=_repo_id_check(), resumable=True)
    """Hub repo (default <your user>/aligniql-<dataset>)."""
    private: bool = option(False, resumable=True)
    """Create the Hub repo as private."""


RULE_FIELDS = ("selection", "temperature")
"""Preset fields that belong to the preset's act-time rule: not taken from it when the extraction is given."""

GROUPS: dict[str, type] = {"run": RunConfig, "data": DataConfig, "agent": AgentConfig, "optim": OptimConfig,
                           "eval": EvalConfig, "hub": HubConfig}
_GROUP_OF = {f.name: g for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Build it with :meth:`create` (flat names) or group by group; it is validated on
    construction, and :meth:`resolved` fills the preset fields once the dataset is known."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    def __post_init__(self) -> None:
        """The rules between fields; the rules of one field are checked by its group."""
        for name, cls in GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"TrainConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        d, a = self.data, self.agent
        if (d.env is None) == (d.dataset is None):
            raise ValueError("give exactly one of data.env (--env, a D4RL name) and data.dataset (--dataset, a "
                             f"Minari id), got env={d.env!r} and dataset={d.dataset!r}")
        if a.extraction == "idql_expectile" and a.selection == "argmax":
            raise ValueError("--extraction idql_expectile needs --selection softmax (its weights take two values, "
                             "so their argmax is just the first candidate with Q > V)")
        if a.extraction == "aligniql_hard" and not a.multipliers:
            raise ValueError("--extraction aligniql_hard needs --multipliers")
        if a.extraction == "gaussian" and not a.gaussian_actor:
            raise ValueError("--extraction gaussian needs --gaussian-actor")

    # ------------------------------------------------------------------ building
    @classmethod
    def create(cls, **values: Any) -> TrainConfig:
        """From flat field names, e.g. ``TrainConfig.create(dataset="bench/hopper/medium-v0", steps=1000)``."""
        unknown = sorted(set(values) - set(_GROUP_OF))
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(_GROUP_OF)}")
        groups = {g: cls_(**{k: v for k, v in values.items() if _GROUP_OF[k] == g}) for g, cls_ in GROUPS.items()}
        return cls(**groups)

    def replace(self, **values: Any) -> TrainConfig:
        """A copy with some fields changed, by flat name: ``config.replace(seed=2, expectile=0.9)``."""
        return TrainConfig.create(**{**self.flat(), **values})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (the ``config`` of a ``train_config.json``); unknown keys are errors."""
        if not isinstance(d, dict) or set(d) - set(GROUPS):
            raise ValueError(f"a TrainConfig dict has the groups {list(GROUPS)}, got {d!r:.200}")
        flat: dict[str, Any] = {}
        for group, values in d.items():
            unknown = set(values) - {f.name for f in dataclasses.fields(GROUPS[group])}
            if unknown:
                raise ValueError(f"unknown fields in TrainConfig.{group}: {sorted(unknown)}")
            flat.update(values)
        for f in _all_fields():  # written before the field existed: the value such runs had
            if f.name not in flat and f.metadata["legacy"] is not _MISSING:
                flat[f.name] = f.metadata["legacy"]
        return cls.create(**flat)

    @classmethod
    def from_legacy(cls, args: dict[str, Any], trainer: dict[str, Any] | None = None) -> TrainConfig:
        """The config of a run saved before TrainConfig (``train_config.json`` format 1: the flat argparse
        ``args`` and the ``trainer`` settings); fields it lacks take the value such runs had (``legacy``)."""
        known = {**{k: v for k, v in (trainer or {}).items() if k in _GROUP_OF},
                 **{k: v for k, v in args.items() if k in _GROUP_OF}}
        for f in _all_fields():
            if f.name not in known:
                known[f.name] = f.default if f.metadata["legacy"] is _MISSING else f.metadata["legacy"]
        return cls.create(**known)

    def resolved(self, dataset_id: str, env_id: str | None = None, saved: TrainConfig | None = None) -> TrainConfig:
        """Every field set: preset fields from the dataset's domain preset, ``output_dir`` and ``selection`` derived.

        A value given explicitly always wins over the preset. ``saved``: the run being resumed, whose values fill
        the preset fields instead (a run keeps the preset values it started with when a new version changes them).
        """
        flat = self.flat()
        preset = preset_for(dataset_id, env_id, flat["preset"])
        kept = saved.flat() if saved is not None and saved.run.preset == flat["preset"] else None
        # the act-time rule is one unit: the preset's selection and temperature go with its extraction only
        own_rule = flat["extraction"] is not None
        for f in _all_fields():
            if f.metadata["preset"] and flat[f.name] is None and not (own_rule and f.name in RULE_FIELDS):
                flat[f.name] = kept[f.name] if kept is not None else getattr(preset, f.name)
        if flat["output_dir"] is None:
            flat["output_dir"] = str(Path("runs") / f"aligniql-{dataset_slug(dataset_id)}-seed{flat['seed']}")
        for name, value in rule_defaults(flat["extraction"]).items():  # the given extraction's own rule
            if flat[name] is None:
                flat[name] = value
        if flat["precision"] == "auto":  # the saved config (and the model card) say what this machine ran
            flat["precision"] = resolve_precision("auto", resolve_device(flat["device"]))
        return TrainConfig.create(**flat)

    # ------------------------------------------------------------------ reading
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{field name: value}`` across all groups."""
        return {k: v for group in self.to_dict().values() for k, v in group.items()}

    @property
    def is_resolved(self) -> bool:
        flat = self.flat()
        return all(flat[f.name] is not None for f in _all_fields() if f.metadata["preset"])

    def trainer_config(self) -> TrainerConfig:
        """The optimisation settings the :class:`~training.trainer.Trainer` takes (needs :meth:`resolved`)."""
        if not self.is_resolved:
            raise ValueError("trainer_config() needs a resolved config: call config.resolved(dataset_id, env_id)")
        o = self.optim
        return TrainerConfig(steps=o.steps, batch_size=o.batch_size, critic_lr=o.critic_lr, denoiser_lr=o.denoiser_lr,
                             denoiser_weight_decay=o.denoiser_weight_decay, multiplier_lr=o.multiplier_lr,
                             multiplier_grad_clip=o.multiplier_grad_clip, actor_lr=o.actor_lr, polyak=o.polyak,
                             ema_rate=o.ema_rate, gaussian_weights=self.agent.gaussian_actor or "awr",
                             awr_beta=o.awr_beta, behavior_weights=o.behavior_weights,
                             critic_updates=o.critic_updates, init=o.init,
                             train_denoiser=o.behavior_from is None, precision=o.precision)

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that define the run (what the model card lists), by flat name."""
        return {f.name: getattr(getattr(self, _GROUP_OF[f.name]), f.name) for f in _all_fields()
                if not f.metadata["resumable"]}

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (other's, self's)}`` for the fields that define a run (not ``resumable``) and differ."""
        mine, theirs = self.flat(), other.flat()
        return {f.name: (theirs[f.name], mine[f.name]) for f in _all_fields()
                if not f.metadata["resumable"] and theirs[f.name] != mine[f.name]}


def _all_fields() -> list[dataclasses.Field]:
    return [f for cls in GROUPS.values() for f in dataclasses.fields(cls)]


# ---------------------------------------------------------------------- train_config.json
def load_saved(path: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """Read a run's ``train_config.json`` (either format): ``(config, the whole file)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no readable config.
    """
    saved = json.loads(Path(path).read_text())
    if "config" in saved:
        return TrainConfig.from_dict(saved["config"]), saved
    if "args" in saved:
        return TrainConfig.from_legacy(saved["args"], saved.get("trainer")), saved
    raise ValueError(f"{path} holds neither 'config' nor 'args'; is it a train_config.json?")


def saved_dataset_id(saved: dict[str, Any]) -> str | None:
    return saved.get("dataset", {}).get("id") or saved.get("args", {}).get("dataset_id")


# ---------------------------------------------------------------------- the command line
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base(tp: Any) -> tuple[type, bool]:
    """``int | None`` -> ``(int, True)``."""
    args = typing.get_args(tp)
    if args and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return tp, False


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal after each field), read from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source (a frozen app): the help lists the fields undocumented
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _preset_help(name: str) -> str:
    def show(v: Any) -> str:  # 1/3 as 0.3333, not 0.3333333333333333
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    values: dict[Any, list[str]] = {}
    for domain, preset in PRESETS.items():
        values.setdefault(getattr(preset, name), []).append(domain)
    if len(values) == 1:
        return f"preset: {show(next(iter(values)))}"
    return "preset: " + ", ".join(f"{show(v)} ({', '.join(domains)})" for v, domains in values.items())


def build_parser(prog: str = "python training/train.py", description: str | None = None) -> argparse.ArgumentParser:
    """The CLI, one flag per :class:`TrainConfig` field, grouped as the tree; the help shows each field's
    docstring and its default (or its per-domain preset values)."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)  # flags not given keep the field defaults
    source = None
    for group, cls in GROUPS.items():
        g = p.add_argument_group(group, cls.__doc__)
        docs, hints = field_docs(cls), _hints(cls)
        for f in dataclasses.fields(cls):
            meta, flag = f.metadata, flag_of(f.name)
            base, _ = _base(hints[f.name])
            doc = docs.get(f.name, "")
            if meta["preset"]:
                doc += f" ({_preset_help(f.name)})"
            elif base is bool:
                doc += " (default: on)" if f.default else ""
            elif f.default is not None:
                doc += f" (default: {f.default})"
            target = g
            if meta["source"]:
                source = source or g.add_mutually_exclusive_group(required=True)
                target = source
            kwargs: dict[str, Any] = {"dest": f.name, "help": doc.replace("%", "%%")}
            if base is bool:  # a preset bool can be switched either way
                action = argparse.BooleanOptionalAction if f.default or meta["preset"] else "store_true"
                target.add_argument(flag, action=action, **kwargs)
                continue
            if meta["const"] is not None:
                kwargs.update(nargs="?", const=meta["const"])
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            target.add_argument(flag, type=base, metavar=None if meta["choices"] else f.name.upper(), **kwargs)
    return p


def to_argv(config: TrainConfig) -> list[str]:
    """The flags that rebuild ``config`` (its fields that differ from their defaults): a command for any config."""
    argv: list[str] = []
    for f in sorted(_all_fields(), key=lambda f: not f.metadata["source"]):  # the dataset first, as people write it
        value = getattr(getattr(config, _GROUP_OF[f.name]), f.name)
        if value == f.default:
            continue
        if isinstance(value, bool):
            argv.append(flag_of(f.name) if value else "--no-" + flag_of(f.name)[2:])
        else:
            argv += [flag_of(f.name), str(value)]
    return argv


def from_args(args: argparse.Namespace) -> TrainConfig:
    """The config of parsed flags (flags not given keep their defaults); raises ``ValueError`` when invalid."""
    return TrainConfig.create(**vars(args))


def check_preset_fields() -> None:
    """Every preset field is a field of ``Preset`` (and the other way round): import-time guard."""
    preset_fields = {f.name for f in _all_fields() if f.metadata["preset"]}
    known = {f.name for f in dataclasses.fields(Preset)} - {"domain"}
    if preset_fields != known:
        raise AssertionError(f"TrainConfig preset fields {sorted(preset_fields)} != Preset fields {sorted(known)}")


check_preset_fields()
