"""Train AlignIQL on a Minari dataset and export a Hub-ready agent.

    python training/train.py --env walker2d-medium-v2 --push        # or: aligniql-train --env ...
    python training/train.py --dataset bench/hopper/medium-v0 --steps 200000 --output-dir runs/hopper

From Python, with a :class:`~training.config.TrainConfig` (every flag is one of its fields)::

    from training.config import TrainConfig
    from training.train import train
    train(TrainConfig.create(dataset="bench/hopper/medium-v0", steps=200_000, seed=1))

The output directory holds the agent (``config.json``, ``model.safetensors``, ``README.md``), the run's
``train_config.json`` (the config as saved), ``metrics.jsonl`` and ``results.json``, and ``training_state/``
for ``--resume``. docs/training.md describes every flag group.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from aligniql import AlignIQLAgent, AlignIQLConfig, hub
from aligniql.agent import resolve_device
from aligniql.config import read_config_file
from aligniql.hub import atomic_write_text
from aligniql.precision import cpu_features, cpu_name, emulation_warning
from training import checkpoint
from training.checkpoint import append_jsonl
from training.config import (SAVED_FORMAT, TrainConfig, build_parser, from_args, load_saved, saved_dataset_id,
                             to_argv)
from training.datasets import (DatasetNotFoundError, OfflineData, load_dataset, prepare, resolve_dataset_id,
                               split_holdout)
from training.presets import domain_of
from training.push import NO_TOKEN, git_sha, has_token, package_versions, push_with_retry_hint, write_card
from training.trainer import Trainer, evaluate_agent, init_networks, score_of

logger = logging.getLogger("training.train")
SCRIPT = "python training/train.py"


class RunDirError(Exception):
    """The output directory does not fit the request: a run to resume that is not there or differs, or a run
    that would be overwritten."""


class BehaviorSourceError(ValueError):
    """``--behavior-from`` names an agent whose behaviour model this run cannot reuse."""


class Interrupted(Exception):
    """Training stopped early on Ctrl-C; the state is saved for --resume."""


def interactive() -> bool:
    """Whether stderr is a terminal: a redrawn progress bar there, plain progress lines in a log file or pipe."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def setup_logging() -> None:
    """INFO lines of ``training.*`` to stderr; on a terminal through tqdm.write, so they do not break the bar."""
    if interactive():
        from tqdm import tqdm

        class TqdmHandler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                tqdm.write(self.format(record), file=sys.stderr)

        handler: logging.Handler = TqdmHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("training")
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """A tqdm bar on a terminal; elsewhere a plain ``step, steps/s, losses, ETA`` line at every log line, so a
    log file gets readable lines instead of carriage-return redraws."""

    def __init__(self, total: int, initial: int, *, bar: bool | None = None) -> None:
        self.total, self.initial = total, initial
        self.t0 = time.perf_counter()
        self.bar = None
        if interactive() if bar is None else bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="aligniql", unit="step", dynamic_ncols=True)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log(self, record: dict[str, float]) -> None:
        """Show the losses of a metrics.jsonl record (it has ``step`` and ``steps_per_second``)."""
        losses = {"bc": record.get("loss/bc"), "v": record.get("loss/value"), "q": record.get("loss/q")}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if v is not None}, refresh=False)
            return
        step = int(record["step"])
        rate = (step - self.initial) / max(time.perf_counter() - self.t0, 1e-9)  # since this process started
        eta = _duration((self.total - step) / rate) if rate > 0 else "?"
        text = " ".join(f"{k} {v:.4f}" for k, v in losses.items() if v is not None)
        logger.info("step %d/%d (%.0f%%), %.1f steps/s, %s, ETA %s", step, self.total, 100 * step / self.total,
                    record["steps_per_second"], text, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_environment(config: TrainConfig) -> None:
    """What a config cannot check by itself, before the dataset is loaded: that its device exists here."""
    try:
        resolve_device(config.run.device)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"run.device (--device): {e}") from None


def load_data(config: TrainConfig) -> OfflineData:
    """Find (or download) the config's dataset and turn it into training tensors.

    Raises:
        ValueError: an unknown D4RL name.
        DatasetNotFoundError: the dataset is neither local nor downloadable.
    """
    dataset_id = resolve_dataset_id(config.data.env or config.data.dataset)
    dataset = load_dataset(dataset_id, download=config.data.download)
    return prepare(dataset, normalize_obs=config.data.normalize_obs, reward_transform=config.data.reward_transform)


def build_agent(config: TrainConfig, data: OfflineData) -> AlignIQLAgent:
    """The agent from the resolved config and the dataset facts, with the observation statistics set."""
    a, o = config.agent, config.optim
    agent_config = AlignIQLConfig(
        obs_dim=int(data.transitions.obs.shape[1]), act_dim=int(data.transitions.actions.shape[1]),
        obs_keys=data.obs_keys, obs_key_dims=data.obs_key_dims, normalize_obs=config.data.normalize_obs,
        action_low=data.action_low, action_high=data.action_high, hidden_dim=a.hidden_dim,
        value_layer_norm=a.value_layer_norm, denoiser_hidden_dim=a.denoiser_hidden_dim,
        denoiser_blocks=a.denoiser_blocks, denoiser_dropout=a.denoiser_dropout, time_dim=a.time_dim,
        num_diffusion_steps=a.diffusion_steps, beta_schedule=a.beta_schedule, clip_sampler=a.clip_sampler,
        ddpm_temperature=a.ddpm_temperature, num_samples=a.num_samples, extraction=a.extraction,
        selection=a.selection, temperature=a.temperature, eta=a.eta, expectile=o.expectile,
        use_multipliers=a.multipliers, use_gaussian_actor=bool(a.gaussian_actor),
        actor_log_std=a.actor_log_std, discount=o.discount,
        reward_transform=data.reward_transform, reward_scale=data.reward_scale, reward_shift=data.reward_shift,
        env_id=data.env_id, dataset_id=data.dataset_id, ref_min_score=data.ref_min_score,
        ref_max_score=data.ref_max_score, eval_env=data.eval_env)
    agent = AlignIQLAgent(agent_config)
    agent.set_normalization(data.obs_mean, data.obs_std)
    return agent


BEHAVIOR_FIELDS = ("obs_dim", "act_dim", "obs_keys", "normalize_obs", "denoiser_hidden_dim", "denoiser_blocks",
                   "denoiser_dropout", "time_dim", "num_diffusion_steps", "beta_schedule", "dataset_id")
"""The agent-config fields that define a behaviour model: a reused one must agree on all of them."""


def reuse_behavior(agent: AlignIQLAgent, source: str, seed: int) -> dict[str, Any]:
    """Copy the EMA denoiser of a trained agent (``optim.behavior_from``) into ``agent``, checking that it models
    the same data the same way. Returns what ``train_config.json`` records about it.

    Raises:
        BehaviorSourceError: the source is not a finished agent of this dataset, or its behaviour model differs.
    """
    try:
        folder = hub.resolve_pretrained(source)  # a local directory as it is, a Hub id downloaded once
        src = AlignIQLAgent.from_pretrained(folder)
    except (OSError, ValueError) as e:  # not there, or not an agent
        raise BehaviorSourceError(f"--behavior-from {source}: cannot load it as an agent: {e}") from None
    if (folder / "train_config.json").is_file() and not (folder / "results.json").is_file():
        raise BehaviorSourceError(f"--behavior-from {source}: that run has not finished (no results.json), so its "
                                  "model.safetensors is an intermediate EMA; finish it with --resume first")
    mine, theirs = agent.config.to_dict(), src.config.to_dict()
    diff = {k: (theirs.get(k), mine.get(k)) for k in BEHAVIOR_FIELDS if theirs.get(k) != mine.get(k)}
    if diff:
        raise BehaviorSourceError(f"--behavior-from {source}: its behaviour model differs from this run's "
                                  f"(source, this run): {diff}")
    if not (torch.allclose(src.obs_mean, agent.obs_mean, rtol=1e-6, atol=1e-7)
            and torch.allclose(src.obs_std, agent.obs_std, rtol=1e-6, atol=1e-7)):
        raise BehaviorSourceError(f"--behavior-from {source}: its observation normalization differs from this "
                                  "dataset's (another version of the dataset, or --normalize-obs differs)")
    agent.denoiser.load_state_dict(src.denoiser.state_dict(), strict=True)
    record: dict[str, Any] = {"from": str(source),
                              "weights_sha256": read_config_file(folder / hub.CONFIG_NAME)[1].get("weights_sha256")}
    if (folder / "train_config.json").is_file():
        src_seed = load_saved(folder / "train_config.json")[0].run.seed
        record["seed"] = src_seed
        if src_seed != seed:  # the hold-out split follows the seed
            logger.warning("--behavior-from %s was trained with seed %d, this run has seed %d: its behaviour model "
                           "saw part of this run's hold-out, so val/bc is not a held-out loss", source, src_seed, seed)
    return record


def export(trainer: Trainer, out: Path) -> None:
    """Save the acting agent and the training state (each file atomically)."""
    trainer.agent.save_pretrained(out)
    checkpoint.save_state(trainer.state_dict(), out)


def resolve(config: TrainConfig, data: OfflineData) -> TrainConfig:
    """``config`` with its preset fields filled: on ``--resume``, from the run being resumed where it has a readable
    ``train_config.json`` of the same ``--preset`` (so a run resumes as it started, whatever the presets say now),
    else from the dataset's preset."""
    fresh = config.resolved(data.dataset_id, data.env_id)
    path = Path(fresh.run.output_dir) / "train_config.json"
    if not config.run.resume or not path.is_file():
        return fresh
    try:
        saved, _ = load_saved(path)
    except ValueError:  # unreadable: check_resume says so
        return fresh
    return config.resolved(data.dataset_id, data.env_id, saved=saved)


def check_resume(out: Path, config: TrainConfig, dataset_id: str) -> None:
    """Refuse ``--resume`` when the settings that define the run differ from its saved ``train_config.json``
    (runs saved before a setting existed compare with the value they had: its ``legacy``)."""
    path = out / "train_config.json"
    if not path.is_file():
        raise RunDirError(f"--resume: {path} not found; nothing to resume in {out}")
    saved, raw = load_saved(path)
    diff: dict[str, Any] = config.differences(saved)
    if (saved_id := saved_dataset_id(raw)) is not None and saved_id != dataset_id:
        diff["dataset_id"] = (saved_id, dataset_id)
    if diff:
        why = (" (--steps also sets where the cosine learning-rate schedule reaches 0, so a run cannot be "
               "lengthened: start a new one)") if "steps" in diff else ""
        raise RunDirError(f"--resume: these settings differ from the run in {out} (saved, now): {diff}; rerun the "
                          f"original command with --resume{why}")


def setup(config: TrainConfig, data: OfflineData, command: str) -> Trainer:
    """Build the agent and trainer; on --resume restore the saved state, else start the run directory."""
    out, seed = Path(config.run.output_dir), config.run.seed
    if config.run.resume:
        check_resume(out, config, data.dataset_id)
        saved_keys = json.loads((out / "train_config.json").read_text()).get("dataset", {}).get("obs_keys")
        if saved_keys is not None and tuple(saved_keys) != data.obs_keys:  # else a bare tensor-shape mismatch
            raise RunDirError(f"--resume: the run in {out} was trained on the observation keys {saved_keys}, but "
                              f"this code reads {list(data.obs_keys)} from the dataset (achieved_goal has been kept "
                              "since AntMaze support); finish it with the code at its git_sha in train_config.json, "
                              "or start it over")
        if not checkpoint.has_state(out):
            raise RunDirError(f"--resume: {out} has no saved training state (the run stopped before its first "
                              "save, or it was deleted); start over without --resume")
    elif checkpoint.has_state(out):
        raise RunDirError(f"{out} already holds a training run; continue it with --resume, or delete it or pick "
                          "another --output-dir to start over")
    device = resolve_device(config.run.device)
    warn_if_emulated(config.optim.precision, device)
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(seed)
    train_set, held_out = split_holdout(data.transitions, config.data.holdout, seed)
    agent = build_agent(config, data)
    init_networks(agent, config.optim.init)
    # a resumed run's state holds the reused denoiser (and train_config.json its source): the source may be gone
    reuse = config.optim.behavior_from is not None and not config.run.resume
    behavior = reuse_behavior(agent, config.optim.behavior_from, seed) if reuse else None
    trainer = Trainer(agent, train_set, config.trainer_config(), seed=seed, device=device, validation=held_out)
    if config.run.resume:
        try:
            trainer.load_state_dict(checkpoint.load_state(out)[0])
        except ValueError as e:  # a damaged state, or one of other trainer settings
            raise RunDirError(f"--resume: cannot continue {out}: {e}") from None
        checkpoint.truncate_metrics(out / "metrics.jsonl", trainer.step)
        logger.info("resumed %s at step %d", out, trainer.step)
        return trainer
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    write_train_config(out, config, data, command, len(train_set), 0 if held_out is None else len(held_out), device,
                       **({"behavior": behavior} if behavior else {}))
    return trainer


def warn_if_emulated(precision: str, device: torch.device) -> None:
    if (why := emulation_warning(precision, device)) is not None:
        logger.warning("%s", why)


def machine(device: torch.device) -> dict[str, Any]:
    """What trained the run: seeds of one benchmark may come from different CPUs of the machine class, whose
    float kernels (AVX2, AVX512, AMX) round differently and run at different speeds."""
    info: dict[str, Any] = {"cpu": cpu_name(), "cpu_features": cpu_features(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_train_config(out: Path, config: TrainConfig, data: OfflineData, command: str, trained_on: int,
                       held_out: int, device: torch.device, **extra: Any) -> None:
    """``train_config.json``: the resolved config, the dataset facts, versions, commit and device."""
    train_config = {"format": SAVED_FORMAT, "command": command, "config": config.to_dict(), "dataset": {
        "id": data.dataset_id, "env_id": data.env_id, "domain": domain_of(data.dataset_id, data.env_id),
        "transitions": len(data.transitions), "trained_on": trained_on, "held_out": held_out,
        "episodes": data.num_episodes, "obs_keys": list(data.obs_keys), "reward_transform": data.reward_transform,
        "reward_scale": data.reward_scale, "reward_shift": data.reward_shift,
        "bootstrap": "mask = 1 - terminations; truncated last transitions kept with mask 1"},
        "versions": package_versions(), "git_sha": git_sha(), "device": str(device), "machine": machine(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    atomic_write_text(out / "train_config.json", json.dumps(train_config, indent=2) + "\n")


def run(config: TrainConfig, data: OfflineData, command: str,
        on_save: Callable[[int, Path], None] | None = None) -> Path:
    """Run (or continue) one training from a resolved config; returns the output directory.

    ``on_save(step, output_dir)`` is called after each training-state save (the periodic ones and the last),
    once its files are complete: a scheduler can hand the state on as its checkpoint (training/sweep.py).

    Raises:
        Interrupted: after Ctrl-C, once the state is saved.
        RunDirError: the output directory does not fit (see :class:`RunDirError`).
    """
    if not config.is_resolved:
        raise ValueError("run() needs a resolved config: config.resolved(data.dataset_id, data.env_id)")
    out, steps, ev = Path(config.run.output_dir), config.optim.steps, config.eval
    trainer = setup(config, data, command)
    if config.run.resume and trainer.step >= steps and _finished(out, trainer.step):
        logger.info("%s already finished at step %d (results.json, model card): nothing to train", out, steps)
        return out
    logger.info("dataset %s: %d transitions (%d trained on), %d episodes, env %s, reward %s (scale %.4g, shift %g); "
                "device %s", data.dataset_id, len(data.transitions), len(trainer.data), data.num_episodes,
                data.env_id, data.reward_transform, data.reward_scale, data.reward_shift, trainer.device)

    def evaluate() -> None:
        evaluate_into(out, trainer.agent, trainer.step, config, data)

    log_every, save_every = max(1, min(config.run.log_every, steps)), config.run.save_every
    with checkpoint.StopOnInterrupt() as stop, Progress(steps, trainer.step) as progress:
        window_t, window_step = time.perf_counter(), trainer.step
        while trainer.step < steps and not stop.requested:
            logs = trainer.train_step()
            step = trainer.step
            progress.update()
            if step % log_every == 0 or step == steps:  # the only host sync: losses are tensors until here
                now = time.perf_counter()
                logs |= trainer.validation_losses()
                record = {"step": step, **{k: float(v) for k, v in logs.items()}, **trainer.learning_rates(),
                          "steps_per_second": (step - window_step) / max(now - window_t, 1e-9)}
                window_t, window_step = now, step
                if bad := [k for k, v in record.items() if not math.isfinite(v)]:
                    raise FloatingPointError(f"non-finite {bad} at step {step}; the last saved state is in {out}")
                append_jsonl(out / "metrics.jsonl", record)
                progress.log(record)
            if ev.eval_every and step % ev.eval_every == 0 and step < steps:
                evaluate()
            if save_every and step % save_every == 0 and step < steps:
                export(trainer, out)
                if on_save is not None:
                    on_save(step, out)
        export(trainer, out)  # still inside: a Ctrl-C now waits until the files are written
        if on_save is not None:
            on_save(trainer.step, out)
    if stop.requested:
        what = f"at step {trainer.step} of {steps}" if trainer.step < steps else "after the last step, before the " \
            "final evaluation"
        logger.warning("stopped %s; the state is saved, continue with: %s", what, resume_command(command))
        raise Interrupted
    finish(out, trainer.agent, trainer.step, config, data)
    return out


def evaluate_into(out: Path, agent: AlignIQLAgent, step: int, config: TrainConfig, data: OfflineData,
                  video: Path | None = None) -> dict[str, Any] | None:
    """Evaluate in the dataset's env and log it to ``out/metrics.jsonl``; None when there is nothing to run."""
    ev = config.eval
    if data.env_id is None and ev.eval_episodes > 0:
        logger.info("%s has no environment spec: skipping evaluation", data.dataset_id)
        return None
    eval_seed = config.run.seed if ev.eval_seed is None else ev.eval_seed
    result = evaluate_agent(agent, data.dataset_id, ev.eval_episodes, eval_seed, num_envs=ev.eval_num_envs,
                            record_video=video)
    if result is not None:
        append_jsonl(out / "metrics.jsonl", {"step": step, **{f"eval/{k}": v for k, v in result.items()}})
    return result


def finish(out: Path, agent: AlignIQLAgent, step: int, config: TrainConfig, data: OfflineData) -> dict[str, Any]:
    """The final evaluation (with a replay of its first episode for the model card; rendering failures only
    warn), ``results.json`` and the model card. Returns the results."""
    result = evaluate_into(out, agent, step, config, data, out / "replay.mp4" if config.eval.video else None)
    results = {"dataset_id": data.dataset_id, "env_id": data.env_id, "step": step,
               "evaluated": result is not None, "eval_datetime": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               **(result or {})}
    if result is not None:  # huggingface_sb3's keys, so RL tooling that reads results.json understands it
        results.update(mean_reward=result["mean_return"], std_reward=result["std_return"],
                       n_eval_episodes=len(result["returns"]))
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_card(out)
    return results


def _finished(out: Path, step: int) -> bool:
    """Whether the run in ``out`` completed its final evaluation and card at ``step``."""
    try:
        return json.loads((out / "results.json").read_text())["step"] == step and (out / "README.md").is_file()
    except (OSError, ValueError, KeyError):
        return False


def resume_command(command: str) -> str:
    return command.replace(" --resume", "") + " --resume"


def train(config: TrainConfig, *, command: str | None = None,
          on_save: Callable[[int, Path], None] | None = None) -> Path:
    """Train (or, with ``config.run.resume``, continue) one run; the Python API of this module.

    Args:
        config: the run; fields left ``None`` are filled from the dataset's domain preset.
        command: what ``train_config.json`` and the resume hints name as the command (default: the
            equivalent ``python training/train.py`` command line).
        on_save: called as ``on_save(step, output_dir)`` after each training-state save (see :func:`run`).

    Returns:
        The output directory, a loadable agent (no push: call ``training.push.push`` for that).

    Raises:
        ValueError: a device that does not exist here, or an unknown D4RL name.
        DatasetNotFoundError: the dataset is neither local nor downloadable.
        RunDirError: the output directory does not fit (a run to resume missing or different, or one to keep).
        Interrupted: Ctrl-C during training, once the state is saved.
    """
    check_environment(config)
    data = load_data(config)
    command = command or f"{SCRIPT} {shlex.join(to_argv(config))}"
    return run(resolve(config, data), data, command, on_save)


def train_seeds(config: TrainConfig, seeds: list[int], *, command: str | None = None) -> Path:
    """Train one agent per seed together in one process (``training.multi_seed``: stacked weights, one
    optimizer step per network over all members), each exported to ``<output_dir>/seed<k>/`` exactly as a
    single-seed run with seed k writes its directory (agent, card, train_config.json, metrics.jsonl,
    results.json), plus ``summary.json`` / ``summary.md`` over the members. ``config.run.resume`` continues
    the group. Returns the group directory.

    Raises:
        as :func:`train`; ``ValueError`` for an empty or repeated seed list.
    """
    from training import multi_seed

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct seeds, got {seeds}")
    if config.optim.behavior_from is not None or config.optim.critic_updates != 1:
        raise ValueError("--behavior-from and --critic-updates are single-seed options for now: train each seed "
                         "with --seed")
    check_environment(config)
    data = load_data(config)
    group = resolve(config, data)
    if config.run.output_dir is None:  # the single-seed default names one seed
        slug = Path(group.run.output_dir).name.rsplit("-seed", 1)[0]
        name = f"{slug}-seeds{'_'.join(map(str, seeds))}"
        group = group.replace(output_dir=str(Path(group.run.output_dir).parent / name))
    out = Path(group.run.output_dir)
    seeds_flag = f"--seeds {' '.join(map(str, seeds))}"  # replaces --seed, which main() refuses beside it
    command = command or f"{SCRIPT} {shlex.join(to_argv(config.replace(seed=0)))} {seeds_flag}"
    members = {s: group.replace(seed=s, output_dir=str(multi_seed.member_dir(out, s))) for s in seeds}
    if group.run.resume:
        for member in members.values():
            check_resume(Path(member.run.output_dir), member, data.dataset_id)
    device = resolve_device(group.run.device)
    warn_if_emulated(group.optim.precision, device)
    if not group.run.resume and checkpoint.has_state(out):
        raise RunDirError(f"{out} already holds a training run; continue it with --resume, or delete it or pick "
                          "another --output-dir to start over")
    if group.run.threads > 0:  # before the train_config.json files, which record the thread count
        torch.set_num_threads(group.run.threads)
    if not group.run.resume:  # before training, as a single run: an interrupted group resumes against these
        for seed, member in members.items():
            held_rows = multi_seed.holdout_rows(len(data.transitions), group.data.holdout, seed)[1]
            held_k = 0 if held_rows is None else len(held_rows)  # counted on row numbers, not a data copy
            member_out = multi_seed.member_dir(out, seed)
            member_out.mkdir(parents=True, exist_ok=True)
            write_train_config(member_out, member, data, command, len(data.transitions) - held_k, held_k, device,
                               group={"dir": str(out), "seeds": seeds})
    ev = group.eval
    agent_config = build_agent(group, data).config  # the members differ only in their seeds

    def evaluate(seed: int, agent: AlignIQLAgent) -> dict[str, Any] | None:
        member = members[seed]
        if data.env_id is None or ev.eval_episodes <= 0:
            return None
        return evaluate_agent(agent, data.dataset_id, ev.eval_episodes,
                              member.run.seed if ev.eval_seed is None else ev.eval_seed, num_envs=ev.eval_num_envs)

    try:
        agents = multi_seed.train_members(
            data.transitions, agent_config, group.trainer_config(), seeds, out, obs_mean=data.obs_mean,
            obs_std=data.obs_std, holdout=group.data.holdout, device=device, log_every=group.run.log_every,
            save_every=group.run.save_every, resume=group.run.resume, eval_every=ev.eval_every, evaluate=evaluate)
    except multi_seed.Interrupted:
        logger.warning("stopped; the group's state is saved in %s, continue with: %s", out, resume_command(command))
        raise Interrupted from None
    except (FileNotFoundError, FileExistsError) as e:
        raise RunDirError(str(e)) from None
    scores = {}
    for seed, agent in zip(seeds, agents):
        member, member_out = members[seed], multi_seed.member_dir(out, seed)
        if group.run.resume and _finished(member_out, group.optim.steps):  # its evaluation and card are there
            results = json.loads((member_out / "results.json").read_text())
        else:
            results = finish(member_out, agent, group.optim.steps, member, data)
        scores[seed] = score_of(results)
    write_summary(out, data.dataset_id, group.optim.steps, scores)
    return out


def write_summary(out: Path, dataset_id: str, steps: int, scores: dict[int, float | None]) -> dict[str, Any]:
    """``summary.json`` and ``summary.md``: the final score of each member, their mean and sample std, and the
    members' learning curves in one plot (``curves.png``, when matplotlib is installed)."""
    import statistics

    values = [v for v in scores.values() if v is not None]
    summary = {"dataset_id": dataset_id, "steps": steps, "scores": {str(k): v for k, v in scores.items()},
               "mean": statistics.fmean(values) if values else None,
               "std": statistics.stdev(values) if len(values) > 1 else (0.0 if values else None),
               "std_ddof": 1, "seeds": len(values)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {'n/a' if v is None else f'{v:.1f}'} |" for k, v in scores.items())
    total = "n/a" if summary["mean"] is None else f"{summary['mean']:.1f} ± {summary['std']:.1f}"
    atomic_write_text(out / "summary.md", f"# {dataset_id}: {len(scores)} seeds, {steps} steps\n\n| seed | score |\n"
                      f"|---|---|\n{rows}\n\nmean ± sample std over {summary['seeds']} seeds: {total}\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return summary
    fig, ax = plt.subplots(figsize=(6, 4))
    for seed in scores:
        curve = [(r["step"], score_of({k[5:]: v for k, v in r.items() if k.startswith("eval/")}))
                 for r in map(json.loads, (out / f"seed{seed}" / "metrics.jsonl").read_text().splitlines())
                 if any(k.startswith("eval/") for k in r)]
        if curve:
            ax.plot(*zip(*curve), marker="o", label=f"seed {seed}")
    ax.set(xlabel="gradient steps", ylabel="score", title=dataset_id)
    ax.legend()
    fig.savefig(out / "curves.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Returns 0 on success, 1 when the push failed (the checkpoint stays), 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "aligniql-train" if Path(sys.argv[0]).name == "aligniql-train" else SCRIPT
    parser = build_parser(prog, __doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=argparse.SUPPRESS,
                        help="train these seeds together in one process (stacked weights), one agent each in "
                             "<output-dir>/seed<k>/, plus summary.json over them; instead of --seed")
    try:  # every out-of-range value fails here, before the dataset is loaded
        parsed = parser.parse_args(argv)
        seeds = vars(parsed).pop("seeds", None)
        config = from_args(parsed)
        check_environment(config)
        if seeds is not None and (len(set(seeds)) != len(seeds) or "--seed" in argv):
            raise ValueError(f"--seeds takes distinct seeds and replaces --seed, got {seeds}")
    except ValueError as e:
        parser.error(str(e))
    if seeds is not None:
        setup_logging()
        try:
            out = train_seeds(config, seeds, command=f"{prog} {shlex.join(argv)}")
        except (ValueError, DatasetNotFoundError, RunDirError) as e:
            raise SystemExit(f"error: {e}") from None
        except Interrupted:
            return 130
        logger.info("agents saved to %s/seed<k> (summary in %s)", out, out / "summary.md")
        if config.hub.push:
            logger.warning("--push with --seeds: push the member you want with aligniql-push %s/seed<k>", out)
        return 0
    setup_logging()
    if config.hub.push and not has_token():
        logger.warning("%s; the push after training will fail unless you log in before it ends (the agent is saved "
                       "either way)", NO_TOKEN)
    try:
        data = load_data(config)
    except (ValueError, DatasetNotFoundError) as e:  # a bad name or a missing dataset: the message says it all
        raise SystemExit(f"error: {e}") from None
    config = resolve(config, data)
    command = f"{prog} {shlex.join(argv)}"
    try:
        out = run(config, data, command)
    except (RunDirError, BehaviorSourceError) as e:
        raise SystemExit(str(e)) from None
    except Interrupted:
        return 130
    except KeyboardInterrupt:  # outside the training loop's handler: while loading, or in the final evaluation
        out = Path(config.run.output_dir)
        if checkpoint.has_state(out):
            step = json.loads((out / "training_state" / "latest.json").read_text())["step"]
            logger.warning("interrupted; the training state of step %d is saved in %s: continue (and finish the "
                           "final evaluation and model card) with: %s", step, out, resume_command(command))
        else:
            logger.warning("interrupted before anything was saved")
        return 130
    logger.info("agent saved to %s (load with AlignIQLAgent.from_pretrained(%r))", out, str(out))
    if not config.hub.push:
        return 0
    return 0 if push_with_retry_hint(out, config.hub.repo_id, private=config.hub.private) else 1


if __name__ == "__main__":
    sys.exit(main())
