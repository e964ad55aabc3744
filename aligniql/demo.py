"""The README's main job: load an agent, run it in its Gymnasium env, print return and normalized score.

    aligniql-demo                                # the pretrained Hopper agent shipped inside the package
    aligniql-demo --agent org/name               # any Hub repo id or local directory
    python -m aligniql.demo ...                  # the same
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from aligniql import AlignIQLAgent

# package data (pyproject's package-data), so it is found from any working directory and in an installed wheel
EMBEDDED = Path(__file__).resolve().parent / "pretrained" / "hopper-medium-v0"


def load(name: str | None) -> tuple[AlignIQLAgent, str]:
    if name:
        return AlignIQLAgent.from_pretrained(name), name
    if (EMBEDDED / "model.safetensors").is_file():
        return AlignIQLAgent.from_pretrained(EMBEDDED), os.path.relpath(EMBEDDED)
    raise SystemExit(f"error: the pretrained agent that ships with the package is not at {EMBEDDED} (an install "
                     "without its package data?); pass --agent with a Hub repo id or a local directory")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", help="local directory or Hub repo id (default: the embedded Hopper agent)")
    p.add_argument("--env", help="Gymnasium env id (default: the eval env the agent's config records)")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", default="runs/demo/replay.mp4",
                   help="replay of the first episode (.mp4/.gif); '' to skip; a rendering failure only warns")
    args = p.parse_args(argv)

    agent, source = load(args.agent)
    from aligniql.evaluation import agent_env, evaluate

    try:  # the dataset's eval env (a maze's fixed start and goal) when the config records it
        env = args.env or agent_env(agent.config)
    except ValueError as e:
        p.error(str(e))
    t0 = time.perf_counter()
    result = evaluate(agent, env, episodes=args.episodes, num_envs=args.episodes, seed=args.seed,
                      record_video=args.video or None)
    env_id = env if isinstance(env, str) else env.id
    print(f"agent: {source}  env: {env_id}  extraction: {agent.config.extraction} N={agent.config.num_samples}")
    print(result)
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0 if np.isfinite(result.mean_return) else 1


if __name__ == "__main__":
    raise SystemExit(main())
