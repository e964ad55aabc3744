"""training/sweep.py without Ray: the command line's checks, the trials a spec makes, the aggregated table and
the push of a sweep's agents with its collection card (HfApi patched at the network seam, as in
test_training_push.py). The run directories are trained in-process with the stand-in evaluator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.test_training_push import SECRET, FakeHub
from tests.training_fixtures import BOX_ID, box_dataset, install_fake_evaluation, minari_root, single_thread  # noqa: F401
from training import sweep as sw


@pytest.mark.parametrize("tokens, seeds", [(["0-4"], [0, 1, 2, 3, 4]), (["0,2,7"], [0, 2, 7]),
                                           (["0-2,9", "11"], [0, 1, 2, 9, 11]), (["3", "1", "3"], [1, 3])])
def test_seed_syntax(tokens, seeds):
    assert sw.parse_seeds(tokens) == seeds


@pytest.mark.parametrize("token", ["4-2", "a", "1-", "-1", "0,,1", ""])
def test_bad_seeds_fail_clearly(token):
    with pytest.raises(ValueError, match="--seeds"):
        sw.parse_seeds([token])


def test_grid_values_take_their_field_types():
    grid = sw.parse_assignments(["expectile=0.7,0.9", "denoiser-blocks=1,2", "multipliers=true,false",
                                 "gaussian_actor=none,awr"], "--grid", many=True)
    assert grid == {"expectile": [0.7, 0.9], "denoiser_blocks": [1, 2], "multipliers": [True, False],
                    "gaussian_actor": [None, "awr"]}
    assert sw.parse_assignments(["batch_size=256"], "--set", many=False) == {"batch_size": 256}


@pytest.mark.parametrize("token, message", [
    ("expectile", "is not FIELD=VALUE"), ("expectile=", "is not FIELD=VALUE"),
    ("expectiles=0.7", "'expectiles' is not a TrainConfig field .*did you mean \\['expectile'\\]"),
    ("seed=1,2", "seed is set by --seeds"), ("steps=10", "set by --steps"), ("output_dir=x", "set by the sweep"),
    ("expectile=0.7,,0.9", "empty value"), ("expectile=0.7,0.7", "repeats a value"),
    ("batch_size=1.5", "batch_size: '1.5' is not a int"), ("multipliers=maybe", "not a boolean")])
def test_bad_grid_fails_clearly(token, message):
    with pytest.raises(ValueError, match=message):
        sw.parse_assignments([token], "--grid", many=True)


def test_out_of_range_values_fail_with_the_configs_wording_before_anything_runs():
    with pytest.raises(ValueError, match=r"optim.expectile \(--expectile\) must be in \(0, 1\), got 1.5"):
        sw.SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=10, grid={"expectile": [0.7, 1.5]})
    with pytest.raises(ValueError, match="both in --grid and --set"):
        sw.SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=10, grid={"eta": [1.0]}, settings={"eta": 2.0})


@pytest.mark.parametrize("argv, message", [
    (["--datasets", BOX_ID, "--steps", "10", "--grid", "etaa=1"], "not a TrainConfig field"),
    (["--datasets", BOX_ID, "--steps", "10", "--seeds", "2-1"], "--seeds"),
    (["--datasets", BOX_ID, "--steps", "0"], "--steps must be a positive integer"),
    (["--datasets", BOX_ID, "--steps", "10", "--push"], "--push needs --org"),
    (["--datasets", BOX_ID, BOX_ID, "--steps", "10"], "distinct dataset ids"),
])
def test_command_line_errors_exit_before_ray_starts(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        sw.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_trials_are_the_product_with_stable_names(tmp_path):
    spec = sw.SweepSpec(datasets=(BOX_ID, "walker2d-medium-v2"), seeds=(0, 1), steps=10,
                        grid={"expectile": [0.7, 0.9], "eta": [1.0, 3.0]}, settings={"batch_size": 64})
    trials = sw.trials(spec, tmp_path)
    assert len(trials) == 2 * 2 * 4 and len({t["run_dir"] for t in trials}) == 16
    t = trials[0]
    assert t["key"] == "hopper-tiny-v0-expectile0.7-eta1.0-seed0"
    assert trials[-1]["key"] == "walker2d-medium-v2-expectile0.9-eta3.0-seed1"
    assert trials[-1]["config"]["data"] == {**trials[-1]["config"]["data"], "env": "walker2d-medium-v2",
                                            "dataset": None}
    assert t["config"]["optim"]["batch_size"] == 64 and t["config"]["run"]["output_dir"] == t["run_dir"]
    assert spec.default_name() == sw.SweepSpec(**{**spec.__dict__}).default_name() != \
        sw.SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=10).default_name()


@pytest.fixture
def finished_sweep(box_dataset, tmp_path, monkeypatch):
    """What a sweep leaves: one run directory per trial, trained here by train() (the trials' code)."""
    from training.train import train

    install_fake_evaluation(monkeypatch)
    spec = sw.SweepSpec(datasets=(BOX_ID,), seeds=(0, 1), steps=4, grid={"expectile": [0.7, 0.9]},
                        settings=dict(TINY, batch_size=8, eval_episodes=2, video=False, device="cpu"))
    sweep_dir = tmp_path / "sweep"
    for t in sw.trials(spec, sweep_dir):
        train(sw.TrainConfig.from_dict(t["config"]))
    return spec, sweep_dir


def test_table_and_curves_files(finished_sweep):
    spec, sweep_dir = finished_sweep
    summary = sw.write_results(spec, sweep_dir)
    assert [(r["method"], r["seeds"], r["mean"], r["std"]) for r in summary["table"]] == [
        ("AlignIQL (expectile=0.7)", 2, 42.0, 0.0), ("AlignIQL (expectile=0.9)", 2, 42.0, 0.0)]
    assert (sweep_dir / "results.csv").read_text().splitlines()[1] == f"AlignIQL (expectile=0.7),{BOX_ID},42,0,2"
    assert "| dataset | AlignIQL (expectile=0.7) | AlignIQL (expectile=0.9) |" in (sweep_dir / "results.md").read_text()


def test_push_publishes_every_agent_and_a_collection_card(finished_sweep, monkeypatch, caplog):
    spec, sweep_dir = finished_sweep
    hub = FakeHub(monkeypatch)
    pushed = sw.push_all(spec, sweep_dir, "my-sweep", "org")
    agents = sorted(f"org/aligniql-hopper-tiny-v0-expectile{e}-seed{s}" for e in (0.7, 0.9) for s in (0, 1))
    assert sorted(v for k, v in pushed.items() if k != "collection") == agents
    assert pushed["collection"] == "org/aligniql-my-sweep"
    assert sorted(u["repo_id"] for u in hub.uploads[:-1]) == agents  # the collection card last, once
    agent_upload = next(u for u in hub.uploads if u["repo_id"] == agents[0])
    assert "training_state" not in agent_upload["files"] and "model.safetensors" in agent_upload["files"]
    card = hub.uploads[-1]["files"]["README.md"]
    assert hub.uploads[-1]["repo_id"] == "org/aligniql-my-sweep"
    for repo in agents:
        assert f"[{repo}](https://huggingface.co/{repo})" in card
    assert "| 42.0 |" in card and "42.0 ± 0.0 (2)" in card
    assert {"results.json", "results.csv", "results.md"} <= set(hub.uploads[-1]["files"])
    assert SECRET not in caplog.text and all(SECRET not in json.dumps(u, default=str) for u in hub.uploads)


def test_learning_curves_png_when_matplotlib_is_there(finished_sweep):
    pytest.importorskip("matplotlib", reason="curves.png needs matplotlib (the [bench] extra); without it the "
                        "table is written and the plot skipped")
    spec, sweep_dir = finished_sweep
    sw.write_results(spec, sweep_dir)
    assert (sweep_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_train_calls_on_save_after_each_state_save_with_the_state_on_disk(box_dataset, tmp_path, monkeypatch):
    from training.train import train

    install_fake_evaluation(monkeypatch)
    seen = []

    def on_save(step, out):  # the state of that step is complete when the hook runs: a sweep copies it
        seen.append((step, sw.state_step(out), (out / "model.safetensors").is_file()))

    config = sw.TrainConfig.create(dataset=BOX_ID, steps=7, save_every=3, batch_size=8, eval_episodes=0,
                                   output_dir=str(tmp_path / "run"), device="cpu", **TINY)
    train(config, on_save=on_save)
    assert seen == [(3, 3, True), (6, 6, True), (7, 7, True)]
    seen.clear()
    train(config.replace(resume=True), on_save=on_save)  # a finished run: nothing trained, nothing saved
    assert seen == []


def test_variants_are_scored_on_the_final_episodes_and_tabled_per_method(box_dataset, tmp_path, monkeypatch):
    from training.train import train

    calls = install_fake_evaluation(monkeypatch)  # it acts once with each variant's overrides
    spec = sw.SweepSpec(datasets=(BOX_ID,), seeds=(0, 1), steps=3, variants=True,
                        settings=dict(TINY, batch_size=8, eval_episodes=2, video=False, device="cpu",
                                      multipliers=True, gaussian_actor="awr"))
    sweep_dir = tmp_path / "sweep"
    for t in sw.trials(spec, sweep_dir):
        train(sw.TrainConfig.from_dict(t["config"]))
        assert t["variants"] and set(sw.evaluate_variants(Path(t["run_dir"]))) == set(sw.VARIANTS)
        assert sw.evaluate_variants(Path(t["run_dir"])) is not None  # read back, not evaluated again
    assert {(c["episodes"], c["seed"]) for c in calls[-len(sw.VARIANTS):]} == {(2, 1)}  # the final episodes
    assert len(calls) == 2 * (1 + len(sw.VARIANTS))
    table = sw.write_results(spec, sweep_dir)["table"]
    assert [r["method"] for r in table] == ["AlignIQL", *sw.VARIANTS] and all(r["seeds"] == 2 for r in table)
    assert spec.default_name() != sw.SweepSpec(datasets=(BOX_ID,), seeds=(0, 1), steps=3,
                                               settings=spec.settings).default_name()


def test_a_relative_datasets_path_reaches_the_trials_absolute(tmp_path, monkeypatch):
    """Trials run in working directories of their own: the driver's relative MINARI_DATASETS_PATH (as in
    ``MINARI_DATASETS_PATH=../shared/datasets``) must reach them as the folder it named."""
    from training.sweep import driver_data_path, worker_data_path

    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    monkeypatch.setenv("MINARI_DATASETS_PATH", "../data")
    assert driver_data_path() == str(tmp_path / "data") == os.environ["MINARI_DATASETS_PATH"]
    monkeypatch.chdir(tmp_path)  # the worker's own directory
    for own in (None, "../data"):  # unset, or the relative path inherited as it was
        if own is None:
            monkeypatch.delenv("MINARI_DATASETS_PATH")
        else:
            monkeypatch.setenv("MINARI_DATASETS_PATH", own)
        worker_data_path(str(tmp_path / "data"))
        assert os.environ["MINARI_DATASETS_PATH"] == str(tmp_path / "data")
    monkeypatch.setenv("MINARI_DATASETS_PATH", "/node/own/datasets")  # a node's own absolute path is kept
    worker_data_path(str(tmp_path / "data"))
    assert os.environ["MINARI_DATASETS_PATH"] == "/node/own/datasets"
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    assert driver_data_path() is None


def test_trials_score_named_rules_on_their_final_agent_once(box_dataset, tmp_path, monkeypatch):
    from training.train import train

    calls = install_fake_evaluation(monkeypatch)
    scoring = {"rules": {"greedy": {"extraction": "idql", "selection": "argmax"},
                         "awr": {"extraction": "idql", "selection": "softmax", "temperature": sw.AWR_TEMPERATURE}},
               "episodes": 3, "seed": 123}
    spec = sw.SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=3, scoring=scoring,
                        settings=dict(TINY, batch_size=8, eval_episodes=0, video=False, device="cpu"))
    assert spec.default_name() != sw.SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=3,
                                               settings=spec.settings).default_name()
    t, = sw.trials(spec, tmp_path / "sweep")
    assert t["scoring"] == scoring
    run_dir = Path(t["run_dir"])
    train(sw.TrainConfig.from_dict(t["config"]))
    rules = sw.score_rules(run_dir, t["scoring"])
    assert set(rules) == {"greedy", "awr"} and all(r["score"] == 42.0 and r["episodes"] == 3 for r in rules.values())
    assert [(c["episodes"], c["num_envs"], c["seed"]) for c in calls] == [(3, 3, 123)] * 2
    assert sw.score_rules(run_dir, t["scoring"]) == rules and len(calls) == 2  # read back, not evaluated again
    sw.score_rules(run_dir, {**scoring, "episodes": 2})  # other episodes: the file is replaced
    assert len(calls) == 4 and json.loads((run_dir / sw.SCORES_FILE).read_text())["scoring"]["episodes"] == 2


@pytest.mark.parametrize("scoring, message", [
    ({"rules": {}, "episodes": 1, "seed": 0}, "non-empty 'rules'"),
    ({"rules": {"x": {"extraction": "idql", "temprature": 1.0}}, "episodes": 1, "seed": 0}, "keys from"),
    ({"rules": {"x": {"temperature": 0.0}}, "episodes": 1, "seed": 0}, "temperature must be > 0"),
    ({"rules": {"x": {}}, "episodes": 0, "seed": 0}, "'episodes' >= 1"),
    ({"rules": {"x": {}}, "episodes": 1, "seed": 0, "precision": "fp16"}, "precision"),
])
def test_bad_scoring_is_refused_before_anything_trains(scoring, message):
    with pytest.raises(ValueError, match=message):
        sw.SweepSpec(datasets=(BOX_ID,), seeds=(0,), steps=3, scoring=scoring)
