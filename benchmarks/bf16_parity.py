"""Does bf16 acting choose what fp32 acting chooses? On N dataset states, with the same noise per state, the
fraction where the bf16 denoiser's candidates lead to the same argmax candidate as fp32's, the Q given up when
they differ, and the action difference; per extraction rule.

    MINARI_DATASETS_PATH=../shared/datasets python benchmarks/bf16_parity.py [--agent DIR] [--states 1000]

Writes benchmarks/results/bf16_parity.json. bf16 runs only the denoiser; Q and V score in fp32 either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from aligniql import AlignIQLAgent  # noqa: E402
from aligniql.demo import EMBEDDED  # noqa: E402
from benchmarks.common import machine, write_json  # noqa: E402


def dataset_states(dataset_id: str, count: int, seed: int) -> np.ndarray:
    import minari

    from training.datasets import observation_keys

    dataset = minari.load_dataset(dataset_id)
    obs = []
    for episode in dataset.iterate_episodes():
        o = episode.observations
        obs.append(np.concatenate([o[k] for k in observation_keys(dataset)], -1) if isinstance(o, dict) else o)
    obs = np.concatenate(obs).astype(np.float32)
    return obs[np.random.default_rng(seed).choice(len(obs), size=count, replace=False)]


def compare(agent: AlignIQLAgent, states: np.ndarray, rule: str, seeds: list[int]) -> dict:
    chosen = {}
    for precision in ("fp32", "bf16"):
        agent.set_precision(precision)
        cand = agent.candidates(states, extraction=rule, generator=seeds)
        chosen[precision] = (cand.log_weights.argmax(-1), cand)
    (i32, c32), (i16, c16) = chosen["fp32"], chosen["bf16"]
    rows = torch.arange(len(states))
    same = (i32 == i16).float().mean().item()
    # what the bf16 choice is worth under the fp32 scores of the same slot (slots share their noise)
    q_loss = (c32.q[rows, i32] - c32.q[rows, i16]).mean().item()
    q_spread = (c32.q.max(-1).values - c32.q.min(-1).values).mean().item()
    dact = (c32.actions[rows, i32] - c16.actions[rows, i16]).abs().max(-1).values
    slot = (c32.actions - c16.actions).abs().max(-1).values
    return {"rule": rule, "same_candidate": same, "mean_q_given_up": q_loss, "mean_q_spread_of_candidates": q_spread,
            "chosen_action_max_abs_diff_median": dact.median().item(),
            "same_slot_action_max_abs_diff_median": slot.median().item()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default=str(EMBEDDED))
    p.add_argument("--dataset", help="states from this Minari dataset (default: the agent's dataset_id)")
    p.add_argument("--states", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bf16_parity.json")
    args = p.parse_args(argv)
    agent = AlignIQLAgent.from_pretrained(args.agent)
    dataset_id = args.dataset or agent.config.dataset_id
    states = dataset_states(dataset_id, args.states, args.seed)
    seeds = list(range(args.seed, args.seed + len(states)))
    rules = [r for r in ("aligniql", "idql", "aligniql_hard")
             if r != "aligniql_hard" or agent.config.use_multipliers]
    rows = [compare(agent, states, rule, seeds) for rule in rules]
    for r in rows:
        print(f"{r['rule']:>14}: same candidate {100 * r['same_candidate']:.1f} %, "
              f"Q given up {r['mean_q_given_up']:.4f}"
              f" (candidates' Q spread {r['mean_q_spread_of_candidates']:.3f}), median |da| same slot "
              f"{r['same_slot_action_max_abs_diff_median']:.4f}")
    print("wrote", write_json(args.out, {"machine": machine(), "agent": args.agent, "dataset": dataset_id,
                                          "states": len(states), "num_samples": agent.config.num_samples,
                                          "rows": rows}))


if __name__ == "__main__":
    main()
