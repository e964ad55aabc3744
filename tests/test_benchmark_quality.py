"""benchmarks/quality.py's bookkeeping: seeds merge into one JSON, and --retrain replaces only the seeds asked for."""

import json

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
    monkeypatch.setattr(quality, "run_d3rlpy", lambda dataset, seed, args: {"curve": [], "final": {"score": 1.0}})
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
