"""Default preset against the paper's on one behaviour model: a paired report of what the critic choices change.

    MINARI_DATASETS_PATH=../shared/datasets MUJOCO_GL=egl python benchmarks/paired_critic.py \
        --source runs/quality/bench_hopper_medium-expert-v0_default/seed0 --threads 1

``--source`` is a finished full run (behaviour model + critic). For each preset (``default``, ``paper``) one
critic-only run trains on the source's frozen behaviour model (``--behavior-from``, same seed and budget), so the
two critics differ only in what the presets set; then each act-time rule is scored on both agents with the
quality benchmark's report seeds. Finished runs and scores are kept (rerunning the command resumes). Writes
``benchmarks/results/paired_critic_<dataset>_seed<k>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import RESULTS, machine  # noqa: E402
from benchmarks.quality import EVAL_SEED  # noqa: E402

PRESETS = ("default", "paper")
RULES = {"argmax Q (idql)": {"extraction": "idql", "selection": "argmax"},
         "AlignIQL argmax -(Q-V)^2": {"extraction": "aligniql", "selection": "argmax"},
         "Diffusion BC (N=1)": {"extraction": "aligniql", "selection": "argmax", "num_samples": 1}}


def critic_config(source: Path, preset: str, threads: int):
    """The critic-only run of ``preset`` on ``source``'s behaviour model: the source's settings (dataset, seed,
    budget, hold-out, networks), less what the presets set, which ``preset`` fills."""
    from training.config import load_saved
    from training.presets import Preset

    src, _ = load_saved(source / "train_config.json")
    unset = {f.name: None for f in dataclasses.fields(Preset) if f.name not in ("domain", "steps", "batch_size")}
    # the act default does not matter (every rule is scored): argmax Q for both keeps their config.json alike
    return src.replace(**{**unset, "extraction": "idql", "eval_episodes": 0}, preset=preset,
                       behavior_from=str(source), multipliers=False, gaussian_actor=None, threads=threads,
                       video=False, resume=False, push=False,
                       output_dir=str(source.parent / f"{source.name}_{preset}_critic"))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, required=True, help="a finished full training run")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    from aligniql import AlignIQLAgent
    from aligniql.evaluation import evaluate
    from aligniql.hub import atomic_write_text
    from training.train import train
    from training.trainer import score_of

    from training.config import load_saved, saved_dataset_id

    source = args.source.resolve()
    if not (source / "train_config.json").is_file() or not (source / "results.json").is_file():
        p.error(f"--source {args.source}: not a finished training run (it needs train_config.json and results.json)")
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {preset: critic_config(source, preset, args.threads) for preset in PRESETS}
    src, raw = load_saved(source / "train_config.json")
    dataset = saved_dataset_id(raw) or src.data.dataset  # the Minari id, also for a run started with --env
    path = RESULTS / f"paired_critic_{dataset.replace('/', '_')}_seed{configs['default'].run.seed}.json"
    state = json.loads(path.read_text()) if path.exists() else {
        "dataset": dataset, "source": str(source), "eval_seed": EVAL_SEED, "episodes": args.episodes,
        "scores": {}, "machine": machine()}
    env_id = raw.get("dataset", {}).get("env_id")
    for preset, config in configs.items():
        out = Path(config.run.output_dir)
        if (out / "results.json").exists():  # kept only while it is what this preset trains today
            diff = config.resolved(dataset, env_id).differences(load_saved(out / "train_config.json")[0])
            if diff:
                p.error(f"{out} was trained with other settings than --preset {preset} gives now (saved, now): "
                        f"{diff}; move it aside to train it again")
        else:
            train(config.replace(resume=(out / "training_state").exists()))
        agent = AlignIQLAgent.from_pretrained(out)
        scores = state["scores"].setdefault(preset, {})
        for name, overrides in RULES.items():
            if name not in scores:
                res = evaluate(agent, dataset, episodes=args.episodes, num_envs=args.episodes, seed=EVAL_SEED,
                               **overrides)
                scores[name] = score_of(res.to_dict())
                atomic_write_text(path, json.dumps(state, indent=1) + "\n")
            print(f"{preset:8} {name:28} {scores[name]:7.2f}", flush=True)
    return state


if __name__ == "__main__":
    main()
