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
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import RESULTS, machine  # noqa: E402
from benchmarks.quality import EVAL_SEED  # noqa: E402

PRESETS = ("default", "paper")
RULES = {"argmax Q (idql)": {"extraction": "idql"}, "AlignIQL argmax -(Q-V)^2": {"extraction": "aligniql"},
         "Diffusion BC (N=1)": {"extraction": "aligniql", "num_samples": 1}}


def critic_config(source: Path, preset: str, threads: int):
    """The critic-only run of ``preset`` on ``source``'s behaviour model: the source's dataset, seed and budget."""
    from training.config import TrainConfig, load_saved

    src, _ = load_saved(source / "train_config.json")
    return TrainConfig.create(dataset=src.data.dataset, env=src.data.env, seed=src.run.seed, steps=src.optim.steps,
                              batch_size=src.optim.batch_size, preset=preset, behavior_from=str(source),
                              extraction="idql", eval_episodes=0, threads=threads, video=False,
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

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {preset: critic_config(args.source.resolve(), preset, args.threads) for preset in PRESETS}
    dataset = configs["default"].data.dataset or configs["default"].data.env
    path = RESULTS / f"paired_critic_{dataset.replace('/', '_')}_seed{configs['default'].run.seed}.json"
    state = json.loads(path.read_text()) if path.exists() else {
        "dataset": dataset, "source": str(args.source), "eval_seed": EVAL_SEED, "episodes": args.episodes,
        "scores": {}, "machine": machine()}
    for preset, config in configs.items():
        out = Path(config.run.output_dir)
        if not (out / "results.json").exists():
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
