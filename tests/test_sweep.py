"""Sweeps on a local Ray (loopback, 2 CPUs, no dashboard): the trials, the aggregated table, a trial that fails
and is retried from its checkpoint, and a driver interrupted by Ctrl-C and rerun. Skipped without ``ray[tune]``
(``pip install -e ".[sweep]"``; the dev extra includes it).

The default tests share one sweep (2 datasets x 2 seeds, 20 steps, checkpoints every 10): one trial fails at its
first checkpoint, and the driver is interrupted when the first trial completes, then rerun."""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason='needs ray[tune]: pip install -e ".[sweep]"')

import ray  # noqa: E402

from aligniql import AlignIQLAgent  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.sweep_faults import InterruptDriver, TrialFaults, saves  # noqa: E402
from tests.training_fixtures import BOX_ID, make_box_dataset  # noqa: E402
from training.sweep import SweepSpec, local_ray_env, run_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OTHER_ID = "test/hopper/other-v0"
SETTINGS = dict(TINY, batch_size=8, save_every=10, log_every=5, eval_episodes=1, eval_num_envs=1, video=False,
                device="cpu")
# each trial also scores one named rule on its final agent, in the trial (benchmarks/quality.py's variants)
SCORING = {"rules": {"argmax Q": {"extraction": "idql", "selection": "argmax"}}, "episodes": 1, "seed": 9}
SPEC = SweepSpec(datasets=(BOX_ID, OTHER_ID), seeds=(0, 1), steps=20, settings=SETTINGS, scoring=SCORING)
FAIL_KEY = "hopper-other-v0-seed1"


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """Ray on this machine with the datasets and this checkout visible to its workers (they inherit the
    environment of the process that starts Ray)."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        make_box_dataset()
        make_box_dataset(OTHER_ID, seed=5)
        for key, value in local_ray_env().items():  # what run_sweep sets before it starts Ray itself
            mp.setenv(key, value)
        # address='local': a new Ray here, never a cluster that `ray start` left on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield root
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def sweep(local_ray):
    """The shared scenario: the first run is interrupted, the second (the same call) finishes the sweep."""
    storage, faults = local_ray / "sweeps", local_ray / "faults"
    faults.mkdir()
    on_save = TrialFaults(faults, fail_key=FAIL_KEY)
    with pytest.raises(RuntimeError, match="did not finish"):
        run_sweep(SPEC, storage=storage, on_save=on_save, callbacks=[InterruptDriver(faults / "interrupted")],
                  verbose=0)
    sweep_dir = storage / SPEC.default_name()
    first_done = (faults / "interrupted").read_text()
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in (sweep_dir / "runs").glob("*/results.json")}
    summary = run_sweep(SPEC, storage=storage, on_save=on_save, verbose=0)
    return {"dir": sweep_dir, "summary": summary, "faults": faults, "first_done": first_done, "stamps": stamps}


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_trials_run_at_the_drivers_priority(local_ray):
    # Ray's default worker niceness (15) lets any other job on the machine starve the trials
    assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)


def test_an_explicit_worker_niceness_is_kept(monkeypatch):
    monkeypatch.setenv("RAY_worker_niceness", "7")
    assert local_ray_env() == {}
    monkeypatch.delenv("RAY_worker_niceness")
    assert local_ray_env() == {"RAY_worker_niceness": "0"}


def test_sweep_trains_loadable_agents_and_aggregates_their_scores(sweep):
    runs = sweep["dir"] / "runs"
    keys = sorted(p.name for p in runs.iterdir())
    assert keys == sorted(f"hopper-{d}-v0-seed{s}" for d in ("tiny", "other") for s in (0, 1))
    for key in keys:
        agent = AlignIQLAgent.from_pretrained(runs / key)  # strict: every tensor present, the hash checked
        assert agent.config.dataset_id == (BOX_ID if "tiny" in key else OTHER_ID)
        assert {"config.json", "model.safetensors", "README.md", "train_config.json", "results.json"} <= \
            {p.name for p in (runs / key).iterdir()}
        assert results_of(runs / key)["step"] == 20
        scores = json.loads((runs / key / "scores.json").read_text())  # scored in the trial, after training
        assert scores["scoring"] == SCORING and scores["rules"]["argmax Q"]["seed"] == 9
    table = {row["dataset"]: row for row in sweep["summary"]["table"]}
    assert set(table) == {BOX_ID, OTHER_ID}
    for dataset, name in ((BOX_ID, "tiny"), (OTHER_ID, "other")):
        scores = [results_of(runs / f"hopper-{name}-v0-seed{s}")["normalized_score"] for s in (0, 1)]
        row = table[dataset]
        assert row["method"] == "AlignIQL" and row["seeds"] == 2
        assert row["mean"] == pytest.approx(statistics.fmean(scores))
        assert row["std"] == pytest.approx(statistics.stdev(scores))  # sample std, ddof 1
    assert json.loads((sweep["dir"] / "results.json").read_text())["table"] == sweep["summary"]["table"]
    with open(sweep["dir"] / "results.csv") as f:
        rows = {r["dataset"]: r for r in csv.DictReader(f)}
    assert float(rows[BOX_ID]["mean"]) == pytest.approx(table[BOX_ID]["mean"], rel=1e-5)
    assert rows[OTHER_ID]["seeds"] == "2"
    md = (sweep["dir"] / "results.md").read_text()
    assert f"| {BOX_ID} | {table[BOX_ID]['mean']:.1f} ± {table[BOX_ID]['std']:.1f} (2) |" in md


def assert_ends_as_if_uninterrupted(run_dir: Path, scratch: Path) -> None:
    """The trial's result and final losses equal those of the same config trained here in one go."""
    from training.config import TrainConfig
    from training.train import train

    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss/bc" in m] == [5, 10, 15, 20]  # no line twice after the resume
    params = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text())["config"])
    reference = train(params.replace(output_dir=str(scratch), threads=1))
    assert results_of(run_dir)["returns"] == pytest.approx(results_of(reference)["returns"], rel=1e-4)
    final = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines() if "loss/bc" in x][-1]
    for k in ("loss/bc", "loss/value", "loss/q"):
        assert [m for m in metrics if "loss/bc" in m][-1][k] == pytest.approx(final[k], rel=1e-4)


def test_failed_trial_is_retried_from_its_checkpoint_and_ends_as_if_uninterrupted(sweep, local_ray):
    assert (sweep["faults"] / "failed").read_text() == "10"
    steps = [s["step"] for s in saves(sweep["faults"]) if s["key"] == FAIL_KEY]
    assert steps == [10, 20]  # failed after step 10, resumed there: step 10 was not trained again
    assert_ends_as_if_uninterrupted(sweep["dir"] / "runs" / FAIL_KEY, local_ray / "uninterrupted")


@pytest.mark.slow
def test_sigkilled_worker_is_replaced_and_its_trial_resumes(local_ray):
    faults = local_ray / "kill-faults"
    faults.mkdir()
    spec = SweepSpec(datasets=(BOX_ID,), seeds=(3,), steps=20, settings=SETTINGS)
    key = "hopper-tiny-v0-seed3"
    run_sweep(spec, storage=local_ray / "kill-sweeps", on_save=TrialFaults(faults, fail_key=key, how="kill"),
              verbose=0)
    log = saves(faults)
    assert [s["step"] for s in log] == [10, 20] and log[0]["pid"] != log[1]["pid"]  # a new worker process
    assert_ends_as_if_uninterrupted(local_ray / "kill-sweeps" / spec.default_name() / "runs" / key,
                                    local_ray / "kill-uninterrupted")


def test_interrupted_sweep_finishes_with_the_same_call_without_retraining(sweep):
    first = sweep["first_done"]
    assert first in sweep["stamps"]  # finished before the interruption
    runs = sweep["dir"] / "runs"
    for key, stamp in sweep["stamps"].items():  # nothing that had finished was trained or evaluated again
        assert (runs / key / "results.json").stat().st_mtime_ns == stamp
    assert len(sweep["stamps"]) < 4  # the interruption left work for the second call
    log = saves(sweep["faults"])
    assert [s["step"] for s in log if s["key"] == first] == [10, 20]
    for key in {s["key"] for s in log}:  # a resumed trial continues from its checkpoint, never from scratch
        steps = [s["step"] for s in log if s["key"] == key]
        assert steps.count(10) == 1, (key, steps)
    assert all(t["finished"] for t in sweep["summary"]["trials"])


def test_another_sweep_under_the_same_name_is_refused(sweep):
    other = SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=20, settings=SETTINGS)
    with pytest.raises(ValueError, match="holds another sweep"):
        run_sweep(other, storage=sweep["dir"].parent, name=sweep["dir"].name)
