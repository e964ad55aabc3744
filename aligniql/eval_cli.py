"""Command line: evaluate a saved or Hub agent and print a table (the ``aligniql-eval`` command).

    aligniql-eval DIR_OR_REPO --env bench/pointmaze/medium-v0 --episodes 10
    aligniql-eval DIR_OR_REPO --env Hopper-v5 --num-envs 4 --video replay.mp4 --json result.json

``python -m aligniql.evaluate ...`` runs the same. This module is not ``aligniql/evaluate.py`` because
``aligniql.evaluate`` is the evaluation function, and a submodule of that name would replace it on import.

``--env`` takes a Gymnasium id or a local Minari dataset id (set MINARI_DATASETS_PATH); without it, the agent's
own ``dataset_id`` (when available locally) or ``env_id``. The implementation is ``aligniql.evaluation``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aligniql.config import EXTRACTIONS, SELECTIONS
from aligniql.precision import PRECISIONS


def _default_env(config: Any) -> Any:
    if config.dataset_id:
        try:
            import minari

            if config.dataset_id in minari.list_local_datasets():
                return config.dataset_id
        except ImportError:
            pass
    if config.eval_env is None and config.env_id is None:
        return None
    from aligniql.evaluation import agent_env

    return agent_env(config)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, evaluate, print the result table. Returns the exit status."""
    prog = "aligniql-eval" if Path(sys.argv[0]).name == "aligniql-eval" else "python -m aligniql.evaluate"
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", metavar="NAME_OR_DIR", help="directory written by save_pretrained, or a Hub repo id")
    p.add_argument("--env", help="Gymnasium env id or Minari dataset id (default: from the agent's config)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--num-envs", type=int, default=1, help="sub-environments stepped together")
    p.add_argument("--vectorization", choices=("sync", "async"), default="sync")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument("--max-episode-steps", type=int, help="override the env's time limit")
    p.add_argument("--video", metavar="PATH", help="write a replay of episode 0 (.mp4 or .gif)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--num-samples", type=int, help="N diffusion candidates (default: the agent's config)")
    p.add_argument("--extraction", choices=EXTRACTIONS, help="extraction rule (default: the agent's config)")
    p.add_argument("--selection", choices=SELECTIONS, help="default: the agent's config")
    p.add_argument("--temperature", type=float, help="softmax temperature (default: the agent's config)")
    p.add_argument("--eta", type=float, help="AlignIQL strength (default: the agent's config)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="denoiser precision; auto: bf16 where the CPU/GPU has native bf16 matmuls")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    if args.video:
        from aligniql.video import configure_headless_gl

        configure_headless_gl()  # before anything imports mujoco

    from aligniql.agent import AlignIQLAgent, resolve_device
    from aligniql.evaluation import evaluate

    try:  # the errors a user can fix from the command line: one line each, no traceback
        resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        p.error(f"--device: {e}")
    try:
        agent = AlignIQLAgent.from_pretrained(args.agent, device=args.device)
        env = args.env or _default_env(agent.config)
        if env is None:
            p.error("the agent's config names no env_id or dataset_id; pass --env")
        agent.set_precision(args.precision)
        overrides = {k: v for k in ("num_samples", "extraction", "selection", "temperature", "eta")
                     if (v := getattr(args, k)) is not None}
        result = evaluate(agent, env, episodes=args.episodes, num_envs=args.num_envs, seed=args.seed,
                          vectorization=args.vectorization, record_video=args.video,
                          max_episode_steps=args.max_episode_steps, **overrides)
    except (ValueError, FileNotFoundError) as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    print(f"agent: {args.agent}  (extraction {overrides.get('extraction', agent.config.extraction)}, "
          f"N={overrides.get('num_samples', agent.config.num_samples)}, device {args.device})")
    print(result)
    if args.json:
        from aligniql.hub import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
