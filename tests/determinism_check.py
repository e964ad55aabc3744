"""Run by tests/test_determinism.py in fresh processes, under other kernel paths and thread counts
(``ATEN_CPU_CAPABILITY``, ``OMP_NUM_THREADS``): the guarantees must not depend on what this CPU happens to pick.

Checks, with paper-size and tiny networks: batch_invariant rows equal rows acted alone bit for bit, the default
batching agrees with them to float rounding, and evaluate()'s episodes do not depend on num_envs.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from aligniql import AlignIQLAgent, AlignIQLConfig, evaluate  # noqa: E402

SIZES = {"paper": {}, "tiny": dict(hidden_dim=32, denoiser_hidden_dim=32, denoiser_blocks=1, time_dim=8)}


def make(size: str, n: int) -> AlignIQLAgent:
    torch.manual_seed(0)
    agent = AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, num_samples=n, **SIZES[size]))
    agent.set_normalization(np.zeros(11), np.ones(11))
    return agent


def main() -> int:
    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    seeds = [11, 12, 13, 14, 15]
    # N=7: rows not a multiple of the vector width, where even this CPU's batched kernels round differently
    for size, n in (("paper", 64), ("paper", 7), ("tiny", 4)):
        agent = make(size, n)
        for selection in ("argmax", "softmax"):
            alone = np.stack([agent.act(o, selection=selection, generator=s) for o, s in zip(obs, seeds)])
            for b in (2, 5):
                got = agent.act(obs[:b], selection=selection, generator=seeds[:b], batch_invariant=True)
                if not np.array_equal(got, alone[:b]):
                    print(f"FAIL {size} N={n} {selection} batch {b}: batch_invariant rows differ from rows alone "
                          f"by up to {np.abs(got - alone[:b]).max():.3g}")
                    return 1
        batched = agent.candidates(obs, generator=seeds)
        for i, s in enumerate(seeds):
            one = agent.candidates(obs[i], generator=s)
            if not (torch.allclose(batched.q[i], one.q[0], rtol=1e-5, atol=1e-5)
                    and torch.allclose(batched.actions[i], one.actions[0], rtol=1e-5, atol=1e-6)):
                print(f"FAIL {size} N={n}: default batching differs from a row alone beyond float rounding")
                return 1
    agent = make("tiny", 4)
    runs = [evaluate(agent, "Hopper-v5", episodes=3, num_envs=k, max_episode_steps=30, seed=7).returns
            for k in (1, 3)]
    if runs[0] != runs[1]:
        print(f"FAIL evaluate: returns {runs[0]} with 1 env, {runs[1]} with 3")
        return 1
    print(f"ok: threads={torch.get_num_threads()} capability={torch.backends.cpu.get_cpu_capability()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
