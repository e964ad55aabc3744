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
