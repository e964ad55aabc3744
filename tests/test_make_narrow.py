"""benchmarks/make_narrow.py: rollouts of a tiny agent's Gaussian actor in the real Hopper-v5, written as a Minari
dataset with its source's env spec and reference scores; whole episodes, deterministic, refusals that say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import make_narrow
from benchmarks.make_mixed import MixError
from tests.conftest import tiny_agent
from tests.training_fixtures import make_box_dataset

SOURCE = "bench/hopper/medium-v0"
NARROW = "narrow/hopper/gaussian-v0"


@pytest.fixture(scope="module")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    try:
        make_box_dataset(SOURCE, episodes=2, length=10)
    finally:
        mp.undo()
    return root


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    agent = tiny_agent(use_gaussian_actor=True, dataset_id=SOURCE, env_id="Hopper-v5")
    return agent.save_pretrained(tmp_path_factory.mktemp("agent") / "hopper-agent")


def build(agent_dir: Path, source_root: Path, out: Path, *extra: str) -> dict:
    return make_narrow.main(["--agent", str(agent_dir), "--source-root", str(source_root), "--out", str(out),
                             "--transitions", "60", "--results", str(out / "narrow.json"), *extra])[NARROW]


def episodes_of(root: Path):
    from minari import MinariDataset

    dataset = MinariDataset(root / NARROW / "data")
    return dataset, [(np.asarray(e.observations), np.asarray(e.actions), np.asarray(e.rewards))
                     for e in dataset.iterate_episodes()]


def test_rollouts_of_the_actor_with_the_source_env_and_scores(agent_dir, source_root, tmp_path):
    info = build(agent_dir, source_root, tmp_path)
    dataset, episodes = episodes_of(tmp_path)
    lengths = [len(r) for _, _, r in episodes]
    assert sum(lengths) == info["transitions"] == dataset.total_steps >= 60 > sum(lengths[:-1])  # whole episodes
    meta = dataset.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (-20.0, 3000.0)
    assert dataset.spec.env_spec.id == "Hopper-v5" and info["source_dataset"] == SOURCE
    returns = [float(r.sum()) for _, _, r in episodes]
    assert info["parts"][0]["return_mean"] == pytest.approx(np.mean(returns))
    assert info["best_normalized_return_mean"] == pytest.approx(100 * (np.mean(returns) + 20) / 3020)
    actions = np.concatenate([a for _, a, _ in episodes])
    assert actions.dtype == np.float32 and np.abs(actions).max() <= 1.0
    # sampled around the actor's mean with its std (1 when untrained), not the mean itself
    from aligniql import AlignIQLAgent

    agent = AlignIQLAgent.from_pretrained(agent_dir)
    obs = torch.as_tensor(np.concatenate([o[:-1] for o, _, _ in episodes]), dtype=torch.float32)
    with torch.no_grad():
        mean = agent.actor(agent.normalize_obs(obs))[0].numpy()
    residual = actions - mean
    assert 0.4 < residual.std() < 1.0 and np.abs(residual).max() <= 2.0
    assert (tmp_path / "narrow.json").is_file()


def test_same_seed_same_bytes_and_another_seed_is_refused(agent_dir, source_root, tmp_path):
    build(agent_dir, source_root, tmp_path / "a")
    build(agent_dir, source_root, tmp_path / "b")
    (_, first), (_, second) = episodes_of(tmp_path / "a"), episodes_of(tmp_path / "b")
    assert len(first) == len(second)
    for x, y in zip(first, second):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert build(agent_dir, source_root, tmp_path / "a")["seed"] == 0  # kept as it is
    with pytest.raises(MixError, match="another seed, size or agent"):
        build(agent_dir, source_root, tmp_path / "a", "--seed", "1")
    other = build(agent_dir, source_root, tmp_path / "a", "--seed", "1", "--force")
    assert other["seed"] == 1


def test_agent_without_gaussian_actor_or_dataset_is_refused(source_root, tmp_path):
    no_actor = tiny_agent(dataset_id=SOURCE).save_pretrained(tmp_path / "no-actor")
    with pytest.raises(MixError, match="no Gaussian actor"):
        build(no_actor, source_root, tmp_path / "out")
    with pytest.raises(MixError, match="no model.safetensors"):
        build(tmp_path / "missing", source_root, tmp_path / "out")
    no_source = tiny_agent(use_gaussian_actor=True, dataset_id=SOURCE).save_pretrained(tmp_path / "agent")
    with pytest.raises(MixError, match="not found"):
        build(no_source, tmp_path / "empty-root", tmp_path / "out")
