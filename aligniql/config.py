"""`AlignIQLConfig`: everything an agent needs to act, saved as ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

FORMAT_VERSION = 1
# Facts about the files rather than the agent, kept in config.json next to the config's fields:
# which aligniql wrote them, and the sha256 of model.safetensors that from_pretrained checks.
FILE_INFO_KEYS: tuple[str, ...] = ("aligniql_version", "weights_sha256")

Extraction = Literal["aligniql", "aligniql_hard", "idql", "idql_expectile", "gaussian"]
Selection = Literal["argmax", "softmax"]
ActorLogStd = Literal["clamp", "sigmoid"]
EXTRACTIONS: tuple[str, ...] = get_args(Extraction)
SELECTIONS: tuple[str, ...] = get_args(Selection)
ACTOR_LOG_STDS: tuple[str, ...] = get_args(ActorLogStd)
EXPECTILE_ARGMAX = ("extraction='idql_expectile' gives every candidate with Q > V the same weight, so its argmax is "
                    "just the first such candidate (a bug of the official AlignIQL evaluation code); use "
                    "selection='softmax' (IDQL samples p = w / sum w at temperature 1), or extraction='idql' for "
                    "the greedy argmax of Q")
REWARD_TRANSFORMS: tuple[str, ...] = ("none", "locomotion", "antmaze")


@dataclass(frozen=True)
class AlignIQLConfig:
    """Architecture, inference defaults and data facts of one agent (docs/algorithm.md §8).

    Only ``obs_dim`` and ``act_dim`` are required; everything else defaults to the values of the
    official AlignIQL code. The config is flat and JSON-native so ``config.json`` stays readable.
    """

    obs_dim: int
    """Length of the flat observation the networks see (dict observations: sum of ``obs_key_dims``)."""
    act_dim: int
    """Length of the action vector."""

    # -- observations and actions, as the environment gives and takes them
    obs_keys: tuple[str, ...] = ()
    """For dict observations: the keys concatenated, in this order. Empty for flat observations."""
    obs_key_dims: tuple[int, ...] = ()
    """Length of each entry of ``obs_keys``."""
    normalize_obs: bool = True
    """Whether observations are standardized with the mean/std stored in ``model.safetensors``."""
    action_low: tuple[float, ...] | None = None
    """Lower action bound of the environment; ``None`` means -1 in every dimension."""
    action_high: tuple[float, ...] | None = None
    """Upper action bound of the environment; ``None`` means +1 in every dimension."""

    # -- networks (docs/algorithm.md §2.3, §4.1)
    hidden_dim: int = 256
    """Width of the twin Q, V and multiplier MLPs (two hidden layers each)."""
    value_layer_norm: bool = True
    """LayerNorm on the input of V and of the multiplier nets, as the jaxrl5 MLP does."""
    denoiser_hidden_dim: int = 256
    denoiser_blocks: int = 3
    time_dim: int = 128
    """Size of the learnable Fourier time features (64 frequencies, cos and sin)."""
    denoiser_dropout: float = 0.1
    """Dropout inside the LN-ResNet blocks; active only in training."""

    # -- diffusion (docs/algorithm.md §4.2, §4.4)
    num_diffusion_steps: int = 5
    beta_schedule: Literal["vp", "cosine", "linear"] = "vp"
    clip_sampler: bool = True
    """Clip the sample to [-1, 1] after every reverse step (official default)."""
    ddpm_temperature: float = 1.0
    """Scale of the noise added at each reverse step."""

    # -- policy extraction at act() time (docs/algorithm.md §5, §7)
    num_samples: int = 64
    """N: diffusion candidates drawn per observation."""
    extraction: Extraction = "aligniql"
    """How candidates are scored: ``aligniql`` (-eta (Q-V)^2), ``aligniql_hard`` (-beta(s) Q),
    ``idql`` (Q), ``idql_expectile`` (log |expectile - 1(Q<V)|), or ``gaussian`` (the weighted-
    regression Gaussian actor's mean, no diffusion)."""
    selection: Selection = "argmax"
    """``argmax`` of the log-weights, or a ``softmax`` sample at ``temperature``."""
    eta: float = 1.0
    """AlignIQL soft-constraint strength; scales the log-weight, so it matters only for softmax."""
    temperature: float = 1.0
    """Softmax selection temperature: p = softmax(log_weights / temperature). With rewards normalized as in
    training, a state's candidates differ in Q by ~0.05-0.4, so temperature 1 samples almost uniformly (i.e.
    behaviour cloning); ~0.01 gives a real preference (benchmarks/extraction.py measures both)."""
    expectile: float = 0.7
    """IQL expectile of V (0.7 locomotion, 0.9 AntMaze); also used by ``idql_expectile``."""

    # -- which optional networks the checkpoint holds
    use_multipliers: bool = False
    """Whether the AlignIQL-hard multiplier nets alpha(s), beta(s) were trained and are stored."""
    use_gaussian_actor: bool = False
    """Whether a Gaussian weighted-regression actor is stored."""
    actor_log_std: ActorLogStd = "clamp"
    """The Gaussian actor's state-independent log-std: ``clamp`` (a parameter clipped to [-5, 2], the IQL
    authors' code) or ``sigmoid`` (-5 + 7 sigmoid(p), d3rlpy's IQL: starts at -1.5 and keeps a gradient at the
    bounds). Only the training loss reads it: acting uses the mean."""

    # -- provenance: what Q and V were trained on (their scale depends on it)
    discount: float = 0.99
    reward_transform: str = "none"
    """``none``, ``locomotion`` (r * reward_scale) or ``antmaze`` (r - 1)."""
    reward_scale: float = 1.0
    reward_shift: float = 0.0
    """Training reward was ``r * reward_scale + reward_shift``."""
    env_id: str | None = None
    """Gymnasium id of the evaluation environment, when known."""
    dataset_id: str | None = None
    """Minari id of the training dataset, when known."""
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    """Reference returns of the dataset (random / expert), for normalized scores without the dataset."""
    eval_env: dict[str, Any] | None = dataclasses.field(default=None, hash=False)
    """The Gymnasium ``EnvSpec`` (as its JSON object) of the dataset's evaluation env, kwargs included: a maze's
    fixed start and goal map and its time limit, which ``env_id`` alone does not give. ``evaluate`` uses it, so
    the agent is scored in its benchmark env without the dataset."""
    format_version: int = FORMAT_VERSION
    """Checkpoint format; loading a newer one than this package knows is refused."""

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"AlignIQLConfig: {msg}")

        for name in ("obs_dim", "act_dim", "hidden_dim", "denoiser_hidden_dim", "denoiser_blocks",
                     "num_diffusion_steps", "num_samples"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive int, got {value!r}")
        need(isinstance(self.time_dim, int) and not isinstance(self.time_dim, bool) and self.time_dim > 0
             and self.time_dim % 2 == 0, f"time_dim must be a positive even int, got {self.time_dim!r}")
        for name in ("normalize_obs", "value_layer_norm", "clip_sampler", "use_multipliers", "use_gaussian_actor"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("eta", "temperature", "expectile", "discount", "ddpm_temperature", "reward_scale",
                     "reward_shift"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                 f"{name} must be a finite number, got {value!r}")
        need(0 < self.discount <= 1, f"discount must be in (0, 1], got {self.discount}")
        need(self.ddpm_temperature >= 0, f"ddpm_temperature must be >= 0, got {self.ddpm_temperature}")
        need(self.reward_scale > 0, f"reward_scale must be > 0, got {self.reward_scale}")
        need(len(self.obs_keys) == len(self.obs_key_dims),
             f"obs_keys {self.obs_keys} and obs_key_dims {self.obs_key_dims} differ in length")
        need(len(set(self.obs_keys)) == len(self.obs_keys), f"obs_keys has duplicates: {self.obs_keys}")
        if self.obs_keys:
            need(sum(self.obs_key_dims) == self.obs_dim,
                 f"obs_key_dims {self.obs_key_dims} sum to {sum(self.obs_key_dims)}, not obs_dim={self.obs_dim}")
        for name in ("action_low", "action_high"):
            bound = getattr(self, name)
            need(bound is None or len(bound) == self.act_dim,
                 f"{name} must have act_dim={self.act_dim} entries, got {bound}")
            need(bound is None or all(math.isfinite(b) for b in bound), f"{name} must be finite, got {bound}")
        low, high = self.bounds()
        need(all(lo < hi for lo, hi in zip(low, high)), f"action_low {low} must be < action_high {high}")
        need(self.beta_schedule in ("vp", "cosine", "linear"), f"unknown beta_schedule {self.beta_schedule!r}")
        need(self.extraction in EXTRACTIONS, f"extraction must be one of {EXTRACTIONS}, got {self.extraction!r}")
        need(self.selection in SELECTIONS, f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        need(self.reward_transform in REWARD_TRANSFORMS,
             f"reward_transform must be one of {REWARD_TRANSFORMS}, got {self.reward_transform!r}")
        need(self.eta > 0 and self.temperature > 0, "eta and temperature must be > 0")
        need(0 < self.expectile < 1, f"expectile must be in (0, 1), got {self.expectile}")
        need((self.ref_min_score is None) == (self.ref_max_score is None)
             and (self.ref_min_score is None or self.ref_min_score < self.ref_max_score),
             f"ref_min_score {self.ref_min_score} and ref_max_score {self.ref_max_score} must both be set, min < max")
        need(0 <= self.denoiser_dropout < 1, f"denoiser_dropout must be in [0, 1), got {self.denoiser_dropout}")
        need(self.extraction != "aligniql_hard" or self.use_multipliers,
             "extraction='aligniql_hard' needs use_multipliers=True")
        need(self.extraction != "idql_expectile" or self.selection == "softmax", EXPECTILE_ARGMAX)
        need(self.actor_log_std in ACTOR_LOG_STDS,
             f"actor_log_std must be one of {ACTOR_LOG_STDS}, got {self.actor_log_std!r}")
        need(self.extraction != "gaussian" or self.use_gaussian_actor,
             "extraction='gaussian' needs use_gaussian_actor=True")
        need(self.eval_env is None or (isinstance(self.eval_env, dict) and isinstance(self.eval_env.get("id"), str)),
             f"eval_env must be an EnvSpec's JSON object with an 'id', got {self.eval_env!r:.100}")
        need(isinstance(self.format_version, int) and self.format_version <= FORMAT_VERSION,
             f"format_version {self.format_version} is newer than this aligniql understands "
             f"({FORMAT_VERSION}); upgrade aligniql")

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(low, high) action bounds, with the [-1, 1] default filled in."""
        low = self.action_low if self.action_low is not None else (-1.0,) * self.act_dim
        high = self.action_high if self.action_high is not None else (1.0,) * self.act_dim
        return tuple(low), tuple(high)

    # -- serialization
    def to_dict(self) -> dict[str, Any]:
        """JSON-native values; a copy, so editing it leaves the frozen config alone."""
        return json.loads(json.dumps({f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                                      for f in dataclasses.fields(self)}))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignIQLConfig:
        """Build a config from ``to_dict`` output; unknown or missing required keys raise."""
        if not isinstance(data, dict):
            raise TypeError(f"AlignIQLConfig.from_dict expects a dict, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"AlignIQLConfig: unknown keys {unknown}; known keys are {sorted(fields)}")
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ValueError(f"AlignIQLConfig: missing required keys {missing}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self, path: str | Path, **file_info: str) -> None:
        """Write the config atomically, with ``file_info`` (keys of ``FILE_INFO_KEYS``) beside its fields."""
        from aligniql.hub import atomic_write_text

        unknown = sorted(set(file_info) - set(FILE_INFO_KEYS))
        if unknown:
            raise ValueError(f"unknown file info keys {unknown}; expected some of {FILE_INFO_KEYS}")
        atomic_write_text(Path(path), json.dumps({**self.to_dict(), **file_info}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> AlignIQLConfig:
        return read_config_file(path)[0]

    def replace(self, **changes: Any) -> AlignIQLConfig:
        return dataclasses.replace(self, **changes)


def rule_defaults(extraction: str) -> dict[str, Any]:
    """The selection and temperature an extraction rule takes when none is given: argmax at T = 1, except the
    expectile weights, which are only meant to be sampled. A saved rule's own selection and temperature belong
    to its extraction; naming another one (in a config or at ``act()``) gets these instead."""
    return {"selection": "softmax" if extraction == "idql_expectile" else "argmax",
            "temperature": AlignIQLConfig.temperature}


def read_config_file(path: str | Path) -> tuple[AlignIQLConfig, dict[str, Any]]:
    """``config.json`` -> (the config, its file info: ``aligniql_version``, ``weights_sha256`` when recorded)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    info = {k: data.pop(k) for k in FILE_INFO_KEYS if k in data}
    return AlignIQLConfig.from_dict(data), info
