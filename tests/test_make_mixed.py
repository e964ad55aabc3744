"""benchmarks/make_mixed.py on a tiny synthetic source: proportions, determinism, whole episodes, metadata, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import make_mixed
from tests.training_fixtures import make_box_dataset

SOURCE = "bench/hopper/medium-v0"
MIXED = "mixed/hopper/medium-random-v0"
REF = (-20.0, 3000.0)  # the tiny source's reference scores (training_fixtures.make_box_dataset)


@pytest.fixture(scope="module")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Hopper source with the shared data's layout: two behaviour segments in ``bench_generation``."""
    root = tmp_path_factory.mktemp("source")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    try:
        dataset = make_box_dataset(SOURCE, episodes=4, length=25)
        dataset.storage.update_metadata({"bench_generation": {"segments": [
            {"policy": "ppo", "source": "tiny-ppo", "first_episode": 0, "last_episode": 1},
            {"policy": "tqc", "source": "tiny-tqc", "first_episode": 2, "last_episode": 3}]}})
    finally:
        mp.undo()
    return root


def build(source_root: Path, out: Path, *extra: str) -> dict:
    return make_mixed.main(["--source-root", str(source_root), "--out", str(out), "--envs", "hopper",
                            "--qualities", "medium", "--results", str(out / "mixed.json"), *extra])


@pytest.fixture(scope="module")
def built(source_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out")
    return out, build(source_root, out)[MIXED]


def open_mixed(root: Path, dataset_id: str = MIXED):
    from minari import MinariDataset

    return MinariDataset(root / dataset_id / "data")


def arrays(dataset) -> list[tuple[bytes, ...]]:
    return [(np.asarray(e.observations).tobytes(), np.asarray(e.actions).tobytes(), np.asarray(e.rewards).tobytes(),
             np.asarray(e.terminations).tobytes(), np.asarray(e.truncations).tobytes())
            for e in dataset.iterate_episodes()]


def test_proportions_and_parts(built, source_root):
    out, info = built
    n_src = sum(25 + 3 * i for i in range(4))
    random, ppo, tqc = info["parts"]
    assert [p["policy"] for p in info["parts"]] == ["uniform-random", "ppo", "tqc"]
    assert ppo["transitions"] + tqc["transitions"] == n_src and (ppo["episodes"], tqc["episodes"]) == (2, 2)
    # The smallest whole-episode random part that reaches 30 %: dropping its last episode falls short.
    target = np.ceil(0.3 * n_src / 0.7)
    dataset = open_mixed(out)
    lengths = [len(e) for e in dataset.iterate_episodes()][:random["episodes"]]
    assert sum(lengths) == random["transitions"] >= target > sum(lengths[:-1])
    assert info["random_fraction"] == pytest.approx(random["transitions"] / (random["transitions"] + n_src))
    assert dataset.total_steps == info["transitions"] == random["transitions"] + n_src
    assert dataset.total_episodes == info["episodes"] == random["episodes"] + 4
    returns = [float(np.sum(e.rewards)) for e in dataset.iterate_episodes()]
    for part in info["parts"]:
        mean = np.mean(returns[part["first_episode"]:part["last_episode"] + 1])
        assert part["return_mean"] == pytest.approx(mean)
        assert part["normalized_return_mean"] == pytest.approx(100 * (mean - REF[0]) / (REF[1] - REF[0]))
    best = max(info["parts"], key=lambda p: p["normalized_return_mean"])
    assert (info["best_part"], info["best_normalized_return_mean"]) == (best["policy"],
                                                                        best["normalized_return_mean"])


def test_episodes_kept_whole(built, source_root):
    out, info = built
    random_eps = info["parts"][0]["episodes"]
    mixed = list(open_mixed(out).iterate_episodes())
    source = list(open_mixed(source_root, SOURCE).iterate_episodes())
    for src, mix in zip(source, mixed[random_eps:], strict=True):
        np.testing.assert_array_equal(mix.observations, np.asarray(src.observations, np.float32))
        for key in ("actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(mix, key), getattr(src, key))
    for ep in mixed:
        assert ep.observations.dtype == np.float32 and ep.actions.dtype == np.float32
        ends = ep.terminations | ep.truncations
        assert ends[-1] and not ends[:-1].any()  # exactly one ending, at the last step
    for ep in mixed[:random_eps]:  # a random Hopper falls within the 1000-step limit, or the limit truncates it
        assert ep.terminations[-1] or (len(ep) == 1000 and ep.truncations[-1])
        assert np.all(np.abs(ep.actions) <= 1.0)


def test_metadata(built):
    import minari

    out, info = built
    dataset = open_mixed(out)
    meta = dataset.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == REF
    assert minari.get_normalized_score(dataset, np.array([REF[1]])) == pytest.approx(1.0)
    assert dataset.spec.env_spec.id == "Hopper-v5" and dataset.spec.env_spec.max_episode_steps == 1000
    env = dataset.recover_environment(eval_env=True)
    assert env.spec.id == "Hopper-v5"
    env.close()
    assert dataset.observation_space.dtype == np.float32
    assert "uniform-random" in meta["description"] and SOURCE in meta["description"]
    assert meta[make_mixed.MIX_KEY] == info and info["source_dataset"] == SOURCE
    side = json.loads((out / "mixed.json").read_text())
    assert side["datasets"][MIXED] == info


def test_deterministic_from_seed(built, source_root, tmp_path):
    out, info = built
    again = build(source_root, tmp_path / "again")[MIXED]
    assert again == info
    assert arrays(open_mixed(tmp_path / "again")) == arrays(open_mixed(out))
    build(source_root, tmp_path / "other", "--seed", "1")
    assert arrays(open_mixed(tmp_path / "other"))[0] != arrays(open_mixed(out))[0]


def test_idempotent_and_force(built, source_root, capsys):
    out, info = built
    data = out / MIXED / "data" / "main_data.hdf5"
    stamp = data.stat().st_mtime_ns
    assert build(source_root, out)[MIXED] == info
    assert data.stat().st_mtime_ns == stamp and "| exists |" in capsys.readouterr().out
    with pytest.raises(make_mixed.MixError, match="--force"):
        build(source_root, out, "--seed", "3")


def test_force_rebuilds(source_root, tmp_path, capsys):
    first = build(source_root, tmp_path, "--random-fraction", "0.5")[MIXED]
    assert first["random_fraction"] >= 0.5
    second = build(source_root, tmp_path, "--random-fraction", "0.2", "--force")[MIXED]
    assert 0.2 <= second["random_fraction"] < first["random_fraction"]
    assert "| built |" in capsys.readouterr().out


def test_training_loader_reads_it(built, monkeypatch):
    from training.datasets import load_dataset, prepare

    out, info = built
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    data = prepare(load_dataset(MIXED, download=False))
    assert len(data.transitions) == info["transitions"] and data.num_episodes == info["episodes"]
    assert data.env_id == "Hopper-v5" and (data.ref_min_score, data.ref_max_score) == REF
    assert data.reward_transform == "locomotion"


@pytest.mark.parametrize("args, match", [
    (["--random-fraction", "0"], r"\(0, 1\)"),
    (["--random-fraction", "1.5"], r"\(0, 1\)"),
    (["--envs", "antmaze"], "unknown env 'antmaze'"),
    (["--envs", "walker2d", "--qualities", "medium-expert"], "no source of quality 'medium-expert'"),
])
def test_bad_input(args, match, tmp_path):
    with pytest.raises(make_mixed.MixError, match=match):
        make_mixed.main(["--out", str(tmp_path), "--results", str(tmp_path / "r.json"), *args])


def test_missing_source_names_the_variable(tmp_path):
    with pytest.raises(make_mixed.MixError, match="MINARI_DATASETS_PATH"):
        make_mixed.main(["--source-root", str(tmp_path / "empty"), "--out", str(tmp_path / "out"),
                         "--envs", "walker2d", "--results", str(tmp_path / "r.json")])
