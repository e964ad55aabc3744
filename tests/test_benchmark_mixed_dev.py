"""benchmarks/mixed_dev.py's bookkeeping: the report's means over seeds, and the critic points' configs."""

import argparse
import json

from benchmarks import mixed_dev


def test_report_averages_each_point_and_rule_over_the_seeds(tmp_path):
    rule = "AlignIQL argmax N=64 (default)"
    for seed, score in ((0, 10.0), (1, 30.0)):
        (tmp_path / f"mixed_hopper_medium-random-v0_seed{seed}.json").write_text(json.dumps({"seed": seed, "points": {
            "tau0.9": {"scores": {rule: {"score": score}}, "validation": {"val/q": seed + 1.0}}}}))
    summary = mixed_dev.report("mixed/hopper/medium-random-v0", tmp_path)
    row = summary["table"]["tau0.9"][rule]
    assert (row["mean"], row["seeds"]) == (20.0, 2) and abs(row["std"] - 14.142) < 1e-3
    assert summary["validation"]["tau0.9"]["val/q"] == 1.5 and summary["seeds"] == [0, 1]
    assert "| tau0.9 | AlignIQL argmax N=64 (default) | 20.0 ± 14.1 | 2 |" in (
        tmp_path / "mixed_hopper_medium-random-v0.md").read_text()


def test_critic_points_reuse_the_full_runs_behaviour_model(tmp_path, monkeypatch):
    import training.train

    seen = []
    monkeypatch.setattr(training.train, "train", lambda config: seen.append(config))
    args = argparse.Namespace(steps=100, batch_size=32, threads=1, runs=str(tmp_path))
    mixed_dev.train_point("mixed/hopper/medium-random-v0", 2, "tau0.9_cu3", args)
    mixed_dev.train_point("mixed/hopper/medium-random-v0", 2, "tau0.7", args)
    point, full = seen
    assert (point.optim.expectile, point.optim.critic_updates, point.run.seed) == (0.9, 3, 2)
    assert point.optim.behavior_from == full.run.output_dir and full.optim.behavior_from is None
    assert point.agent.gaussian_actor is None and point.agent.multipliers and full.agent.gaussian_actor == "awr"
    assert point.eval.eval_episodes == 0 and full.optim.expectile == 0.7
