"""Train AlignIQL on a Minari dataset and export a Hub-ready agent.

    python training/train.py --env walker2d-medium-v2 --push
    python training/train.py --dataset bench/hopper/medium-v0 --steps 200000 --output-dir runs/hopper

The output directory holds the agent (``config.json``, ``model.safetensors``, ``README.md``), the run's
``train_config.json``, ``metrics.jsonl`` and ``results.json``, and ``training_state/`` for ``--resume``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make `aligniql` and `training` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from aligniql import AlignIQLAgent, AlignIQLConfig  # noqa: E402
from aligniql.agent import resolve_device  # noqa: E402
from aligniql.config import EXTRACTIONS, SELECTIONS  # noqa: E402
from aligniql.hub import atomic_write_text  # noqa: E402
from training import checkpoint  # noqa: E402
from training.datasets import (DatasetNotFoundError, OfflineData, load_dataset, prepare,  # noqa: E402
                               resolve_dataset_id, split_holdout)
from training.presets import dataset_slug, preset_for  # noqa: E402
from training.push import (NO_TOKEN, git_sha, has_token, package_versions, push_with_retry_hint,  # noqa: E402
                           repo_id_problem, write_card)
from training.trainer import Trainer, TrainerConfig, evaluate_agent  # noqa: E402

logger = logging.getLogger("training.train")
# Arguments that may change between a run and its --resume; all others define the run and must match.
# arguments added after runs were started, with the behaviour those runs had: they resume with these values
LEGACY_ARGS = {"holdout": 0.0, "selection": "argmax", "temperature": 1.0}
RESUMABLE_ARGS = {"resume", "push", "repo_id", "private", "device", "threads", "eval_every", "eval_episodes",
                  "eval_seed", "eval_num_envs", "log_every", "save_every", "output_dir", "download", "env", "dataset",
                  "video"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except the ``None`` of preset-filled flags (their help names the preset)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; ``None`` defaults are filled from the dataset's domain preset (``training/presets.py``)."""
    p = argparse.ArgumentParser(prog="python training/train.py", description=__doc__.split("\n\n")[0],
                                formatter_class=_HelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--env", help="D4RL dataset name, mapped to its Minari id (walker2d-medium-v2)")
    src.add_argument("--dataset", help="any Minari dataset id, local ones included (bench/hopper/medium-v0)")
    p.add_argument("--steps", type=int, help="gradient steps (preset: 3M)")
    p.add_argument("--batch-size", type=int, help="transitions per step (preset: 512)")
    p.add_argument("--seed", type=int, default=0, help="network init, batches, hold-out split (and eval episodes "
                   "unless --eval-seed)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--video", action=argparse.BooleanOptionalAction, default=True,
                   help="record replay.mp4 of the final evaluation's first episode for the model card")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: denoiser forward/backward under bfloat16 autocast (~1.35x faster on AVX512-BF16 CPUs)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0: torch's default); use 1 on cores shared with other jobs")
    p.add_argument("--output-dir", help="run directory (default runs/aligniql-<dataset>-seed<seed>)")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps; 0 = only at the end (preset: 250k)")
    p.add_argument("--eval-episodes", type=int, help="episodes per evaluation; 0 = no evaluation (preset: 50)")
    p.add_argument("--eval-seed", type=int, help="seed of the first evaluation episode (episode i: + i); "
                   "default: --seed")
    p.add_argument("--eval-num-envs", type=int, default=10,
                   help="envs stepped together during evaluation (batched act; results do not depend on it)")
    p.add_argument("--log-every", type=int, default=1000, help="steps between metrics.jsonl lines")
    p.add_argument("--save-every", type=int, default=25_000, help="steps between training-state checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its training state")
    p.add_argument("--push", action="store_true", help="upload the agent to the Hugging Face Hub at the end")
    p.add_argument("--repo-id", help="Hub repo (default <your user>/aligniql-<dataset>)")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download the dataset when it is not local (needs network)")
    g = p.add_argument_group("algorithm")
    g.add_argument("--expectile", type=float, help="IQL expectile (preset: 0.7 locomotion, 0.9 AntMaze)")
    g.add_argument("--discount", type=float, default=0.99, help="TD discount")
    g.add_argument("--multipliers", action="store_true", help="train AlignIQL-hard's alpha(s), beta(s) nets")
    g.add_argument("--gaussian-actor", nargs="?", const="awr", choices=("awr", "aligniql"),
                   help="also train a Gaussian actor by weighted regression (IQL's AWR or AlignIQL weights)")
    g.add_argument("--awr-beta", type=float, help="AWR inverse temperature (preset: 3 locomotion, 10 AntMaze)")
    g.add_argument("--eta", type=float, default=1.0, help="AlignIQL strength in exp(-eta (Q-V)^2)")
    g.add_argument("--extraction", choices=EXTRACTIONS,
                   default="aligniql", help="default action-extraction rule stored in config.json")
    g.add_argument("--selection", choices=SELECTIONS,
                   help="default candidate selection stored in config.json (softmax for idql_expectile, else argmax)")
    g.add_argument("--temperature", type=float, default=1.0, help="softmax selection temperature in config.json")
    g.add_argument("--num-samples", type=int, help="diffusion candidates per state when acting (preset: 64)")
    g.add_argument("--reward-transform", choices=("locomotion", "antmaze", "none"),
                   help="default: by domain (locomotion x1000/(max-min return), AntMaze r-1, else none)")
    g.add_argument("--normalize-obs", action=argparse.BooleanOptionalAction, default=True,
                   help="standardize observations with dataset statistics (the official code does not)")
    g.add_argument("--holdout", type=float, default=0.05,
                   help="fraction of transitions held out (not trained on) for the val/* losses in metrics.jsonl, "
                        "as the official code's 5%%; 0 trains on everything")
    n = p.add_argument_group("networks")
    n.add_argument("--hidden-dim", type=int, default=256, help="Q, V, multiplier and Gaussian-actor MLP width")
    n.add_argument("--denoiser-hidden-dim", type=int, default=256, help="LN-ResNet width (blocks are 4x inside)")
    n.add_argument("--denoiser-blocks", type=int, default=3, help="LN-ResNet residual blocks")
    n.add_argument("--time-dim", type=int, default=128, help="learnable Fourier time features")
    n.add_argument("--diffusion-steps", type=int, default=5, help="T of the VP noise schedule")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse out-of-range values before the dataset is loaded (``parser.error`` exits with the usage)."""
    a = args
    checks = [
        (a.steps is None or a.steps >= 1, f"--steps must be >= 1, got {a.steps}"),
        (a.batch_size is None or a.batch_size >= 1, f"--batch-size must be >= 1, got {a.batch_size}"),
        (a.expectile is None or 0 < a.expectile < 1, f"--expectile must be in (0, 1), got {a.expectile}"),
        (0 < a.discount <= 1, f"--discount must be in (0, 1], got {a.discount}"),
        (0 <= a.holdout < 1, f"--holdout must be in [0, 1), got {a.holdout}"),
        (math.isfinite(a.eta) and a.eta > 0, f"--eta must be > 0, got {a.eta}"),
        (math.isfinite(a.temperature) and a.temperature > 0, f"--temperature must be > 0, got {a.temperature}"),
        (a.awr_beta is None or (math.isfinite(a.awr_beta) and a.awr_beta > 0),
         f"--awr-beta must be > 0, got {a.awr_beta}"),
        (a.num_samples is None or a.num_samples >= 1, f"--num-samples must be >= 1, got {a.num_samples}"),
        (a.log_every >= 1 and a.eval_num_envs >= 1 and a.save_every >= 0,
         "--log-every and --eval-num-envs must be >= 1 and --save-every >= 0"),
        (a.eval_every is None or a.eval_every >= 0, f"--eval-every must be >= 0, got {a.eval_every}"),
        (a.eval_episodes is None or a.eval_episodes >= 0, f"--eval-episodes must be >= 0, got {a.eval_episodes}"),
        (a.threads >= 0, f"--threads must be >= 0, got {a.threads}"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    if problem := repo_id_problem(a.repo_id):  # before hours of training, not at the push
        parser.error(problem)
    try:
        resolve_device(a.device)
    except (ValueError, RuntimeError) as e:
        parser.error(f"--device: {e}")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def setup_logging() -> None:
    """Log lines through tqdm.write so they do not break the progress bar."""
    from tqdm import tqdm

    class TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("training")
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def resolve_args(args: argparse.Namespace, dataset_id: str, env_id: str | None,
                 reward_transform: str) -> dict[str, Any]:
    """Fill unset options from the domain preset; returns the JSON-able run arguments."""
    preset = preset_for(dataset_id, env_id)
    out = dict(vars(args))
    for key in ("steps", "batch_size", "eval_every", "eval_episodes", "expectile", "awr_beta", "num_samples"):
        if out[key] is None:
            out[key] = getattr(preset, key)
    out["domain"] = preset.domain
    out["reward_transform"] = reward_transform
    out["dataset_id"] = dataset_id
    out["output_dir"] = str(args.output_dir or Path("runs") / f"aligniql-{dataset_slug(dataset_id)}-seed{args.seed}")
    if out["selection"] is None:
        out["selection"] = "softmax" if out["extraction"] == "idql_expectile" else "argmax"
    if out["extraction"] == "idql_expectile" and out["selection"] == "argmax":
        raise SystemExit("--extraction idql_expectile needs --selection softmax (its weights take two values, "
                         "so their argmax is just the first candidate with Q > V)")
    if out["extraction"] == "aligniql_hard" and not out["multipliers"]:
        raise SystemExit("--extraction aligniql_hard needs --multipliers")
    if out["extraction"] == "gaussian" and not out["gaussian_actor"]:
        raise SystemExit("--extraction gaussian needs --gaussian-actor")
    return out


def build_agent(cfg: dict[str, Any], data: OfflineData) -> AlignIQLAgent:
    """The agent config from the run arguments and the dataset facts, with the observation statistics set."""
    config = AlignIQLConfig(
        obs_dim=int(data.transitions.obs.shape[1]), act_dim=int(data.transitions.actions.shape[1]),
        obs_keys=data.obs_keys, obs_key_dims=data.obs_key_dims, normalize_obs=cfg["normalize_obs"],
        action_low=data.action_low, action_high=data.action_high, hidden_dim=cfg["hidden_dim"],
        denoiser_hidden_dim=cfg["denoiser_hidden_dim"], denoiser_blocks=cfg["denoiser_blocks"],
        time_dim=cfg["time_dim"], num_diffusion_steps=cfg["diffusion_steps"], num_samples=cfg["num_samples"],
        extraction=cfg["extraction"], selection=cfg["selection"], temperature=cfg["temperature"], eta=cfg["eta"],
        expectile=cfg["expectile"],
        use_multipliers=cfg["multipliers"], use_gaussian_actor=bool(cfg["gaussian_actor"]),
        discount=cfg["discount"], reward_transform=data.reward_transform, reward_scale=data.reward_scale,
        reward_shift=data.reward_shift, env_id=data.env_id, dataset_id=data.dataset_id,
        ref_min_score=data.ref_min_score, ref_max_score=data.ref_max_score)
    agent = AlignIQLAgent(config)
    agent.set_normalization(data.obs_mean, data.obs_std)
    return agent


def export(trainer: Trainer, out: Path) -> None:
    """Save the acting agent and the training state (each file atomically)."""
    trainer.agent.save_pretrained(out)
    checkpoint.save_state(trainer.state_dict(), out)


class Interrupted(Exception):
    """Training stopped early on Ctrl-C; the state is saved for --resume."""


def setup(cfg: dict[str, Any], data: OfflineData, command: str) -> Trainer:
    """Build the agent and trainer; on --resume restore the saved state, else start the run directory."""
    out = Path(cfg["output_dir"])
    if cfg["resume"]:
        checkpoint.check_resume_args(out, cfg, RESUMABLE_ARGS, LEGACY_ARGS)
        saved_keys = json.loads((out / "train_config.json").read_text()).get("dataset", {}).get("obs_keys")
        if saved_keys is not None and tuple(saved_keys) != data.obs_keys:  # else a bare tensor-shape mismatch
            raise SystemExit(f"--resume: the run in {out} was trained on the observation keys {saved_keys}, but "
                             f"this code reads {list(data.obs_keys)} from the dataset (achieved_goal has been kept "
                             "since AntMaze support); finish it with the code at its git_sha in train_config.json, "
                             "or start it over")
        if not checkpoint.has_state(out):
            raise SystemExit(f"--resume: {out} has no saved training state (the run stopped before its first save, "
                             "or it was deleted); start over without --resume")
    elif checkpoint.has_state(out):
        raise SystemExit(f"{out} already holds a training run; continue it with --resume, or delete it or pick "
                         "another --output-dir to start over")
    device = resolve_device(cfg["device"])
    if cfg["threads"] > 0:
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    tconf = TrainerConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], awr_beta=cfg["awr_beta"],
                          gaussian_weights=cfg["gaussian_actor"] or "awr", precision=cfg.get("precision", "fp32"))
    train_set, held_out = split_holdout(data.transitions, cfg["holdout"], cfg["seed"])
    trainer = Trainer(build_agent(cfg, data), train_set, tconf, seed=cfg["seed"], device=device,
                      validation=held_out)
    if cfg["resume"]:
        trainer.load_state_dict(checkpoint.load_state(out)[0])
        metrics = out / "metrics.jsonl"  # drop lines logged after the saved step: they will be logged again
        kept = [x for x in metrics.read_text().splitlines() if json.loads(x)["step"] <= trainer.step] \
            if metrics.is_file() else []
        atomic_write_text(metrics, "".join(x + "\n" for x in kept))
        logger.info("resumed %s at step %d", out, trainer.step)
        return trainer
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    train_config = {"command": command, "args": cfg, "trainer": asdict(tconf), "dataset": {
        "id": data.dataset_id, "env_id": data.env_id, "transitions": len(data.transitions),
        "trained_on": len(train_set), "held_out": 0 if held_out is None else len(held_out),
        "episodes": data.num_episodes, "obs_keys": list(data.obs_keys), "reward_transform": data.reward_transform,
        "reward_scale": data.reward_scale, "reward_shift": data.reward_shift,
        "bootstrap": "mask = 1 - terminations; truncated last transitions kept with mask 1"},
        "versions": package_versions(), "git_sha": git_sha(), "device": str(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(out / "train_config.json", json.dumps(train_config, indent=2) + "\n")
    return trainer


def train(cfg: dict[str, Any], data: OfflineData, command: str) -> Path:
    """Run (or continue) one training from resolved arguments; returns the output directory.

    Raises:
        Interrupted: after Ctrl-C, once the state is saved.
    """
    from tqdm import tqdm

    out, steps = Path(cfg["output_dir"]), cfg["steps"]
    trainer = setup(cfg, data, command)
    if cfg["resume"] and trainer.step >= steps and _finished(out, trainer.step):
        logger.info("%s already finished at step %d (results.json, model card): nothing to train", out, steps)
        return out
    logger.info("dataset %s: %d transitions (%d trained on), %d episodes, env %s, reward %s (scale %.4g, shift %g); "
                "device %s", data.dataset_id, len(data.transitions), len(trainer.data), data.num_episodes,
                data.env_id, data.reward_transform, data.reward_scale, data.reward_shift, trainer.device)

    def evaluate(video: Path | None = None) -> dict[str, Any] | None:
        if data.env_id is None and cfg["eval_episodes"] > 0:
            logger.info("%s has no environment spec: skipping evaluation", data.dataset_id)
            return None
        eval_seed = cfg["seed"] if cfg.get("eval_seed") is None else cfg["eval_seed"]
        result = evaluate_agent(trainer.agent, data.dataset_id, cfg["eval_episodes"], eval_seed,
                                num_envs=cfg["eval_num_envs"], record_video=video)
        if result is not None:
            append_jsonl(out / "metrics.jsonl", {"step": trainer.step, **{f"eval/{k}": v for k, v in result.items()}})
        return result

    log_every = max(1, min(cfg["log_every"], steps))
    with checkpoint.StopOnInterrupt() as stop, tqdm(total=steps, initial=trainer.step, desc="aligniql", unit="step",
                                         dynamic_ncols=True) as bar:
        window_t, window_step = time.perf_counter(), trainer.step
        while trainer.step < steps and not stop.requested:
            logs = trainer.train_step()
            step = trainer.step
            bar.update(1)
            if step % log_every == 0 or step == steps:  # the only host sync: losses are tensors until here
                now = time.perf_counter()
                logs |= trainer.validation_losses()
                record = {"step": step, **{k: float(v) for k, v in logs.items()}, **trainer.learning_rates(),
                          "steps_per_second": (step - window_step) / max(now - window_t, 1e-9)}
                window_t, window_step = now, step
                if bad := [k for k, v in record.items() if not math.isfinite(v)]:
                    raise FloatingPointError(f"non-finite {bad} at step {step}; the last saved state is in {out}")
                append_jsonl(out / "metrics.jsonl", record)
                bar.set_postfix(bc=f"{record['loss/bc']:.3f}", v=f"{record['loss/value']:.3f}",
                                q=f"{record['loss/q']:.3f}", refresh=False)
            if cfg["eval_every"] and step % cfg["eval_every"] == 0 and step < steps:
                evaluate()
            if cfg["save_every"] and step % cfg["save_every"] == 0 and step < steps:
                export(trainer, out)
        export(trainer, out)  # still inside: a Ctrl-C now waits until the files are written
    if stop.requested:
        what = f"at step {trainer.step} of {steps}" if trainer.step < steps else "after the last step, before the " \
            "final evaluation"
        logger.warning("stopped %s; the state is saved, continue with: %s", what, resume_command(command))
        raise Interrupted
    # a replay of the final evaluation's first episode for the model card; rendering failures only warn
    result = evaluate(out / "replay.mp4" if cfg.get("video", True) else None)
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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Returns 0 on success, 1 when the push failed (the checkpoint stays), 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    setup_logging()
    if args.push and not has_token():
        logger.warning("%s; the push after training will fail unless you log in before it ends (the agent is saved "
                       "either way)", NO_TOKEN)
    try:
        dataset_id = resolve_dataset_id(args.env or args.dataset)
        dataset = load_dataset(dataset_id, download=args.download)
    except (ValueError, DatasetNotFoundError) as e:  # a bad name or a missing dataset: the message says it all
        raise SystemExit(f"error: {e}") from None
    data = prepare(dataset, normalize_obs=args.normalize_obs, reward_transform=args.reward_transform)
    cfg = resolve_args(args, dataset_id, data.env_id, data.reward_transform)
    command = "python training/train.py " + shlex.join(argv)
    try:
        out = train(cfg, data, command)
    except Interrupted:
        return 130
    except KeyboardInterrupt:  # outside the training loop's handler: while loading, or in the final evaluation
        out = Path(cfg["output_dir"])
        if checkpoint.has_state(out):
            step = json.loads((out / "training_state" / "latest.json").read_text())["step"]
            logger.warning("interrupted; the training state of step %d is saved in %s: continue (and finish the "
                           "final evaluation and model card) with: %s", step, out, resume_command(command))
        else:
            logger.warning("interrupted before anything was saved")
        return 130
    logger.info("agent saved to %s (load with AlignIQLAgent.from_pretrained(%r))", out, str(out))
    if not cfg["push"]:
        return 0
    return 0 if push_with_retry_hint(out, cfg["repo_id"], private=cfg["private"]) else 1


if __name__ == "__main__":
    sys.exit(main())
