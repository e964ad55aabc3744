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

import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from aligniql import AlignIQLAgent, AlignIQLConfig
from aligniql.agent import resolve_device
from aligniql.hub import atomic_write_text
from training import checkpoint
from training.config import (SAVED_FORMAT, TrainConfig, build_parser, from_args, load_saved, saved_dataset_id,
                             to_argv)
from training.datasets import (DatasetNotFoundError, OfflineData, load_dataset, prepare, resolve_dataset_id,
                               split_holdout)
from training.presets import domain_of
from training.push import NO_TOKEN, git_sha, has_token, package_versions, push_with_retry_hint, write_card
from training.trainer import Trainer, evaluate_agent

logger = logging.getLogger("training.train")
SCRIPT = "python training/train.py"


class RunDirError(Exception):
    """The output directory does not fit the request: a run to resume that is not there or differs, or a run
    that would be overwritten."""


class Interrupted(Exception):
    """Training stopped early on Ctrl-C; the state is saved for --resume."""


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


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
        use_multipliers=a.multipliers, use_gaussian_actor=bool(a.gaussian_actor), discount=o.discount,
        reward_transform=data.reward_transform, reward_scale=data.reward_scale, reward_shift=data.reward_shift,
        env_id=data.env_id, dataset_id=data.dataset_id, ref_min_score=data.ref_min_score,
        ref_max_score=data.ref_max_score)
    agent = AlignIQLAgent(agent_config)
    agent.set_normalization(data.obs_mean, data.obs_std)
    return agent


def export(trainer: Trainer, out: Path) -> None:
    """Save the acting agent and the training state (each file atomically)."""
    trainer.agent.save_pretrained(out)
    checkpoint.save_state(trainer.state_dict(), out)


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
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(seed)
    train_set, held_out = split_holdout(data.transitions, config.data.holdout, seed)
    trainer = Trainer(build_agent(config, data), train_set, config.trainer_config(), seed=seed, device=device,
                      validation=held_out)
    if config.run.resume:
        trainer.load_state_dict(checkpoint.load_state(out)[0])
        metrics = out / "metrics.jsonl"  # drop lines logged after the saved step: they will be logged again
        kept = [x for x in metrics.read_text().splitlines() if json.loads(x)["step"] <= trainer.step] \
            if metrics.is_file() else []
        atomic_write_text(metrics, "".join(x + "\n" for x in kept))
        logger.info("resumed %s at step %d", out, trainer.step)
        return trainer
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    train_config = {"format": SAVED_FORMAT, "command": command, "config": config.to_dict(), "dataset": {
        "id": data.dataset_id, "env_id": data.env_id, "domain": domain_of(data.dataset_id, data.env_id),
        "transitions": len(data.transitions),
        "trained_on": len(train_set), "held_out": 0 if held_out is None else len(held_out),
        "episodes": data.num_episodes, "obs_keys": list(data.obs_keys), "reward_transform": data.reward_transform,
        "reward_scale": data.reward_scale, "reward_shift": data.reward_shift,
        "bootstrap": "mask = 1 - terminations; truncated last transitions kept with mask 1"},
        "versions": package_versions(), "git_sha": git_sha(), "device": str(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(out / "train_config.json", json.dumps(train_config, indent=2) + "\n")
    return trainer


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

    def evaluate(video: Path | None = None) -> dict[str, Any] | None:
        if data.env_id is None and ev.eval_episodes > 0:
            logger.info("%s has no environment spec: skipping evaluation", data.dataset_id)
            return None
        eval_seed = config.run.seed if ev.eval_seed is None else ev.eval_seed
        result = evaluate_agent(trainer.agent, data.dataset_id, ev.eval_episodes, eval_seed,
                                num_envs=ev.eval_num_envs, record_video=video)
        if result is not None:
            append_jsonl(out / "metrics.jsonl", {"step": trainer.step, **{f"eval/{k}": v for k, v in result.items()}})
        return result

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
    # a replay of the final evaluation's first episode for the model card; rendering failures only warn
    result = evaluate(out / "replay.mp4" if ev.video else None)
    results = {"dataset_id": data.dataset_id, "env_id": data.env_id, "step": trainer.step,
               "evaluated": result is not None, "eval_datetime": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               **(result or {})}
    if result is not None:  # huggingface_sb3's keys, so RL tooling that reads results.json understands it
        results.update(mean_reward=result["mean_return"], std_reward=result["std_return"],
                       n_eval_episodes=len(result["returns"]))
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_card(out)
    return out


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
    return run(config.resolved(data.dataset_id, data.env_id), data, command, on_save)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Returns 0 on success, 1 when the push failed (the checkpoint stays), 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "aligniql-train" if Path(sys.argv[0]).name == "aligniql-train" else SCRIPT
    parser = build_parser(prog, __doc__.split("\n\n")[0])
    try:  # every out-of-range value fails here, before the dataset is loaded
        config = from_args(parser.parse_args(argv))
        check_environment(config)
    except ValueError as e:
        parser.error(str(e))
    setup_logging()
    if config.hub.push and not has_token():
        logger.warning("%s; the push after training will fail unless you log in before it ends (the agent is saved "
                       "either way)", NO_TOKEN)
    try:
        data = load_data(config)
    except (ValueError, DatasetNotFoundError) as e:  # a bad name or a missing dataset: the message says it all
        raise SystemExit(f"error: {e}") from None
    config = config.resolved(data.dataset_id, data.env_id)
    command = f"{prog} {shlex.join(argv)}"
    try:
        out = run(config, data, command)
    except RunDirError as e:
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
