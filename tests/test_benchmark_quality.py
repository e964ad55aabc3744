"""benchmarks/quality.py's bookkeeping: seeds merge into one JSON, and --retrain replaces only the seeds asked for."""

import json
from pathlib import Path

import pytest

from benchmarks import common, quality


def test_retrain_replaces_only_the_seeds_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(quality, "RESULTS", tmp_path)
    monkeypatch.setattr(quality, "plot", lambda summary, path: None)  # matplotlib is a benchmark-only dependency
    trained = []

    def fake_ours(dataset, seed, args):
        trained.append(seed)
        final = {m: {"score": 10.0 * seed + len(trained)} for m in quality.VARIANTS}
        return {"curve": [], "final": final, "run_dir": str(tmp_path / f"seed{seed}")}

    monkeypatch.setattr(quality, "run_ours", fake_ours)
    baselines = []

    def fake_d3rlpy(dataset, seed, args):
        baselines.append(seed)
        return {"curve": [], "final": {"score": 1.0 + seed}}

    monkeypatch.setattr(quality, "run_d3rlpy", fake_d3rlpy)
    quality.main(["--datasets", "bench/hopper/medium-v0", "--seeds", "0", "1", "2"])
    path = tmp_path / "quality_bench_hopper_medium-v0.json"
    before = json.loads(path.read_text())["per_seed"]
    quality.main(["--datasets", "bench/hopper/medium-v0", "--seeds", "0", "1"])  # all there: nothing trained
    assert trained == [0, 1, 2]
    quality.main(["--datasets", "bench/hopper/medium-v0", "--seeds", "1", "--retrain"])
    after = json.loads(path.read_text())
    assert trained == [0, 1, 2, 1] and set(after["per_seed"]) == {"0", "1", "2"}
    assert after["per_seed"]["0"] == before["0"] and after["per_seed"]["2"] == before["2"]
    assert after["per_seed"]["1"]["ours"]["final"]["AlignIQL"]["score"] == 14.0  # the new run's
    # d3rlpy's code and data did not change: its entry stays and does not train again
    assert baselines == [0, 1, 2] and after["per_seed"]["1"]["d3rlpy"] == before["1"]["d3rlpy"]
    assert after["table"]["AlignIQL"]["seeds"] == 3 and after["table"]["AlignIQL"]["std_ddof"] == 1


def test_retrain_moves_only_a_finished_run_aside(tmp_path):
    run = tmp_path / "seed0"
    (run / "training_state").mkdir(parents=True)  # interrupted: --retrain resumes it
    assert quality.move_finished_run_aside(run) is None and run.is_dir()
    (run / "results.json").write_text("{}")  # finished: kept under another name, the seed trains anew
    aside = quality.move_finished_run_aside(run)
    assert not run.exists() and (aside / "results.json").is_file() and aside.name.startswith("seed0.before-retrain-")


def test_run_ours_trains_through_the_config_api_and_resumes_an_interrupted_run(tmp_path, monkeypatch):
    import argparse

    import training.train

    seen = []

    def fake_train(config):
        seen.append(config)
        raise RuntimeError("stop after the config")  # the rest of run_ours reads the run's files

    monkeypatch.setattr(training.train, "train", fake_train)
    args = argparse.Namespace(runs=str(tmp_path), tag=None, steps=123, batch_size=64, eval_every=50,
                              curve_episodes=2, device="cpu", retrain=False, together=False)
    for interrupted in (False, True):
        run = tmp_path / "bench_hopper_medium-v0" / "seed1"
        if interrupted:
            (run / "training_state").mkdir(parents=True)
        try:
            quality.run_ours("bench/hopper/medium-v0", 1, args)
        except RuntimeError:
            pass
    first, again = seen
    assert (first.optim.steps, first.optim.batch_size, first.run.seed, first.agent.multipliers) == (123, 64, 1, True)
    assert first.agent.gaussian_actor == "awr" and first.eval.eval_seed == quality.EVAL_SEED
    assert first.run.output_dir == str(run) and not first.run.resume and again.run.resume


def test_together_trains_the_missing_seeds_as_one_multi_seed_run(tmp_path, monkeypatch):
    import argparse

    import training.train

    calls = []
    monkeypatch.setattr(training.train, "train_seeds", lambda config, seeds: calls.append((config, seeds)))
    args = argparse.Namespace(runs=str(tmp_path), tag="k", steps=123, batch_size=64, eval_every=50, curve_episodes=2,
                              device="cpu", retrain=False, together=True)
    group = tmp_path / "bench_hopper_medium-v0_k"
    (group / "seed1").mkdir(parents=True)
    (group / "seed1" / "results.json").write_text("{}")  # finished: not trained again
    quality.train_together("bench/hopper/medium-v0", [0, 1, 2], args)
    (config, seeds), = calls
    assert seeds == [0, 2] and config.run.output_dir == str(group) and not config.run.resume
    assert (config.optim.steps, config.agent.multipliers, config.eval.eval_seed) == (123, True, quality.EVAL_SEED)
    (group / "training_state").mkdir()  # an interrupted group resumes
    (group / "training_state" / "latest.json").write_text('{"step": 50}')
    quality.train_together("bench/hopper/medium-v0", [0, 1, 2], args)
    assert calls[1][0].run.resume


HOPPER, WALKER = "bench/hopper/medium-v0", "bench/walker2d/medium-v0"


class FakeAgent:
    def __init__(self, path):
        self.path = path

    def set_precision(self, precision):
        return self


class FakeEval:
    def __init__(self, score):
        self.score = score

    def to_dict(self):
        return {"normalized_score": self.score, "mean_return": 10 * self.score, "successes": None}


def finish_fake_run(run_dir, git_sha, steps=(20, 40)):
    """What a finished trial leaves in its run directory, as far as quality.py reads it."""
    run_dir.mkdir(parents=True)
    lines = [x for s in steps for x in ({"step": s, "loss/bc": 1.0},
                                        {"step": s, "eval/normalized_score": s / 2, "eval/mean_return": float(s)})]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run_dir / "train_config.json").write_text(json.dumps({"git_sha": git_sha, "dataset": {"held_out": 0.05},
                                                             "config": {"optim": {"awr_beta": 3.0}},
                                                             "machine": {"cpu": "Test CPU", "cpu_features": {}}}))
    (run_dir / "results.json").write_text(json.dumps({"step": steps[-1], "normalized_score": 1.0}))


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch):
    """run_sweep replaced by one that records its call and leaves finished run directories, as a sweep whose
    trials all finished; the agent and its evaluation replaced too, so that quality.py's reading of the run
    directories (curve, revision) and its evaluation calls are the real ones."""
    import aligniql
    import aligniql.evaluation
    import training.sweep

    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(quality, "plot", lambda summary, path: None)
    state = {"calls": [], "evals": [], "d3rlpy": [], "sha": lambda dataset, seed: "a" * 40}

    def run_sweep(spec, **kwargs):
        state["calls"].append((spec, kwargs))
        sweep_dir = Path(kwargs["storage"]) / kwargs["name"]
        (sweep_dir / training.sweep.TUNE_DIR).mkdir(parents=True, exist_ok=True)
        for t in training.sweep.trials(spec, sweep_dir):
            if not (Path(t["run_dir"]) / "results.json").exists():
                finish_fake_run(Path(t["run_dir"]), state["sha"](t["dataset"], t["seed"]))
                if (t["dataset"], t["seed"]) == state.get("scored_by_trial"):  # as run_trial's score_rules leaves it
                    rules = {name: {"score": 77.0, "normalized_score": 77.0} for name in t["scoring"]["rules"]}
                    (Path(t["run_dir"]) / training.sweep.SCORES_FILE).write_text(
                        json.dumps({"scoring": t["scoring"], "rules": rules}))
        return {}

    def evaluate(agent, dataset, *, episodes, num_envs, seed, **overrides):
        state["evals"].append({"run_dir": agent.path, "episodes": episodes, "num_envs": num_envs, "seed": seed,
                               **overrides})
        return FakeEval(float(len(state["evals"])))

    monkeypatch.setattr(training.sweep, "run_sweep", run_sweep)
    monkeypatch.setattr(aligniql.AlignIQLAgent, "from_pretrained", classmethod(lambda cls, p, device: FakeAgent(p)))
    monkeypatch.setattr(aligniql.evaluation, "evaluate", evaluate)
    monkeypatch.setattr(quality, "run_ours", lambda *a: pytest.fail("--engine sweep must not train in-process"))
    monkeypatch.setattr(quality, "run_d3rlpy", lambda dataset, seed, args: state["d3rlpy"].append((dataset, seed))
                        or {"curve": [], "final": {"score": 1.0}})
    return state


def test_sweep_engine_trains_the_same_runs_through_run_sweep_and_writes_the_same_entries(tmp_path, fake_sweep):
    from training.sweep import trials

    fake_sweep["sha"] = lambda dataset, seed: "b" * 40 if (dataset, seed) == (HOPPER, 1) else "a" * 40
    fake_sweep["scored_by_trial"] = (WALKER, 1)
    argv = ["--engine", "sweep", "--datasets", HOPPER, WALKER, "--seeds", "0", "1", "--steps", "40",
            "--eval-every", "20", "--storage", str(tmp_path / "store"), "--cpus-per-trial", "2"]
    quality.main(argv)
    (spec, kwargs), = fake_sweep["calls"]
    assert (spec.datasets, spec.seeds, spec.steps, spec.grid, spec.variants) == ((HOPPER, WALKER), (0, 1), 40, {},
                                                                                 False)
    assert kwargs == {"storage": (tmp_path / "store").resolve(), "name": spec.default_name(), "cpus_per_trial": 2.0,
                      "gpus_per_trial": 0.0, "address": None}
    args = quality.build_parser().parse_args(argv)
    sweep_dir = (tmp_path / "store").resolve() / spec.default_name()
    for t in trials(spec, sweep_dir):  # every trial is the run the local engine would train
        assert t["config"] == quality.ours_config(t["dataset"], t["seed"], args, Path(t["run_dir"])).to_dict()
    assert t["config"]["agent"]["multipliers"] and t["config"]["agent"]["gaussian_actor"] == "awr"
    assert {e["episodes"] for e in fake_sweep["evals"]} == {10} and {e["seed"] for e in fake_sweep["evals"]} == \
        {quality.EVAL_SEED} and len(fake_sweep["evals"]) == 3 * len(quality.VARIANTS)  # one run scored in its trial
    assert spec.scoring == quality.scoring(args)  # every trial scores the variants as the local engine does
    assert fake_sweep["d3rlpy"] == [(HOPPER, 0), (HOPPER, 1), (WALKER, 0), (WALKER, 1)]

    hopper = json.loads((tmp_path / "results" / "quality_bench_hopper_medium-v0.json").read_text())
    entry = hopper["per_seed"]["1"]["ours"]
    assert entry["run_dir"] == str(sweep_dir / "runs" / "hopper-medium-v0-seed1")
    assert entry["curve"] == [{"step": 20, "score": 10.0, "mean_return": 20.0},
                              {"step": 40, "score": 20.0, "mean_return": 40.0}]
    assert set(entry["final"]) == set(quality.VARIANTS) and (entry["git_sha"], entry["held_out"]) == ("b" * 40, 0.05)
    assert entry["machine"]["cpu"] == "Test CPU"  # seeds may come from different CPUs of the machine class
    assert hopper["commits"] == ["a" * 40, "b" * 40] and hopper["table"]["AlignIQL"]["seeds"] == 2
    assert hopper["engine"] == "sweep" and hopper["wall_clock_s"] >= 0 and hopper["sweep_dir"] == str(sweep_dir)
    walker = json.loads((tmp_path / "results" / "quality_bench_walker2d_medium-v0.json").read_text())
    assert walker["commits"] == ["a" * 40] and set(walker["per_seed"]) == {"0", "1"}
    assert {f["score"] for f in walker["per_seed"]["1"]["ours"]["final"].values()} == {77.0}  # the trial's scores

    quality.main(argv)  # every entry there: no sweep, nothing evaluated, the last training's timing kept
    assert len(fake_sweep["calls"]) == 1 and len(fake_sweep["evals"]) == 3 * len(quality.VARIANTS)
    again = json.loads((tmp_path / "results" / "quality_bench_hopper_medium-v0.json").read_text())
    assert again["per_seed"] == hopper["per_seed"] and again["wall_clock_s"] == hopper["wall_clock_s"]


def test_sweep_engine_retrain_moves_the_finished_trials_and_tunes_record_aside(tmp_path, fake_sweep):
    argv = ["--engine", "sweep", "--datasets", HOPPER, "--seeds", "3", "--steps", "40", "--runs", str(tmp_path),
            "--skip-d3rlpy"]
    quality.main(argv)
    (spec, kwargs), = fake_sweep["calls"]
    sweep_dir = tmp_path.resolve() / "sweep" / spec.default_name()  # the default storage: <runs>/sweep
    assert kwargs["storage"] / kwargs["name"] == sweep_dir
    fake_sweep["sha"] = lambda dataset, seed: "c" * 40
    quality.main(argv + ["--retrain"])
    assert [c[1]["name"] for c in fake_sweep["calls"]] == [spec.default_name()] * 2  # the same sweep
    names = sorted(p.name for p in (sweep_dir / "runs").iterdir())
    assert names[0] == "hopper-medium-v0-seed3" and names[1].startswith("hopper-medium-v0-seed3.before-retrain-")
    assert any(p.name.startswith("tune.before-retrain-") for p in sweep_dir.iterdir())
    result = json.loads((tmp_path / "results" / "quality_bench_hopper_medium-v0.json").read_text())
    assert result["commits"] == ["c" * 40]


@pytest.mark.parametrize("argv, message", [
    (["--engine", "sweep", "--together"], "--together"),
    (["--storage", "x", "--cpus-per-trial", "1"], "--cpus-per-trial, --storage need --engine sweep"),
    (["--engine", "sweep", "--seeds", "-1"], "non-negative seeds"),
    (["--engine", "sweep", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
])
def test_engine_flags_are_checked_before_anything_trains(argv, message, capsys):
    with pytest.raises(SystemExit):
        quality.main(["--datasets", HOPPER] + argv)
    assert message in capsys.readouterr().err


def test_an_unfinished_sweep_stops_with_its_error(tmp_path, fake_sweep, monkeypatch):
    import training.sweep

    def unfinished(spec, **kwargs):
        raise RuntimeError("1 of 1 trials did not finish; rerun the same command to resume")

    monkeypatch.setattr(training.sweep, "run_sweep", unfinished)
    with pytest.raises(SystemExit, match="did not finish; rerun the same command"):
        quality.main(["--engine", "sweep", "--datasets", HOPPER, "--seeds", "0", "--runs", str(tmp_path)])
    assert not (tmp_path / "results").exists()


def test_the_local_engine_imports_neither_ray_nor_the_sweep():
    import subprocess
    import sys

    code = "import sys, benchmarks.quality; print(sorted(m for m in ('ray', 'training.sweep') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_the_awr_variant_takes_the_runs_own_temperature():
    from training.sweep import resolve_rule

    rule = quality.VARIANTS["IQL-AWR softmax (T = 1/awr_beta)"]
    saved = {"config": {"optim": {"awr_beta": 4.0}}}
    assert resolve_rule(rule, saved) == {"extraction": "idql", "selection": "softmax", "temperature": 0.25}
    assert resolve_rule({"extraction": "idql"}, saved) == {"extraction": "idql"}
    with pytest.raises(ValueError, match="awr_beta"):
        resolve_rule(rule, {"config": {"optim": {"awr_beta": None}}})


def test_a_variant_added_later_is_tabled_over_the_seeds_that_have_it():
    import argparse

    old = {"AlignIQL": {"score": 1.0}}
    new = {"AlignIQL": {"score": 3.0}, "IQL-AWR softmax (T = 1/awr_beta)": {"score": 5.0}}
    per_seed = {"0": {"ours": {"final": new}, "d3rlpy": {"final": {"score": 2.0}}},
                "1": {"ours": {"final": old}, "d3rlpy": {"final": {"score": 4.0}}},
                "2": {"d3rlpy": {"final": {"score": 6.0}}}}
    args = argparse.Namespace(steps=10, batch_size=8, episodes=2, tag=None)
    table = quality.summarize("bench/hopper/medium-v0", per_seed, args)["table"]
    assert (table["AlignIQL"]["mean"], table["AlignIQL"]["seeds"]) == (2.0, 2)
    awr = table["IQL-AWR softmax (T = 1/awr_beta)"]
    assert (awr["mean"], awr["seeds"]) == (5.0, 1)
    assert table["d3rlpy IQL"]["seeds"] == 3 and "Gaussian (AWR)" not in table
