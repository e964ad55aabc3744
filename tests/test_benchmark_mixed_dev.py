"""benchmarks/mixed_dev.py's bookkeeping: the report's means over seeds, and the critic points' configs."""

import argparse
import json

from benchmarks import mixed_dev


def test_report_averages_each_point_and_rule_over_the_seeds(tmp_path):
    rule = "AlignIQL argmax N=64 (paper default)"
    # seed 0 was saved under the rule's old name, from before the package's default moved to argmax Q
    for seed, name, score in ((0, "AlignIQL argmax N=64 (default)", 10.0), (1, rule, 30.0)):
        (tmp_path / f"mixed_hopper_medium-random-v0_seed{seed}.json").write_text(json.dumps({"seed": seed, "points": {
            "tau0.9": {"scores": {name: {"score": score}}, "validation": {"val/q": seed + 1.0}}}}))
    summary = mixed_dev.report("mixed/hopper/medium-random-v0", tmp_path)
    row = summary["table"]["tau0.9"][rule]
    assert (row["mean"], row["seeds"]) == (20.0, 2) and abs(row["std"] - 14.142) < 1e-3
    assert summary["validation"]["tau0.9"]["val/q"] == 1.5 and summary["seeds"] == [0, 1]
    assert "AlignIQL argmax N=64 (default)" not in summary["table"]["tau0.9"]
    assert "| tau0.9 | AlignIQL argmax N=64 (paper default) | 20.0 ± 14.1 | 2 |" in (
        tmp_path / "mixed_hopper_medium-random-v0.md").read_text()


def test_report_compares_every_row_with_d3rlpy_by_two_standard_errors(tmp_path):
    rule = "IDQL argmax Q N=64"
    for seed, a, b in ((0, 10.0, 70.0), (1, 20.0, 90.0), (2, 30.0, 80.0)):
        (tmp_path / f"mixed_hopper_medium-random-v0_seed{seed}.json").write_text(json.dumps({"seed": seed, "points": {
            "tau0.7": {"scores": {rule: {"score": a}}, "validation": {}},
            "tau0.9": {"scores": {rule: {"score": b}}, "validation": {}}}}))
    for seed, score in ((0, 86.0), (1, 82.0), (2, 21.0)):  # the d3rlpy scores of mixed hopper
        (tmp_path / f"mixed_hopper_medium-random-v0_d3rlpy_seed{seed}.json").write_text(json.dumps(
            {"seed": seed, "final": {"normalized_score": score}}))
    table = mixed_dev.report("mixed/hopper/medium-random-v0", tmp_path)["table"]
    # 20 ± 10 against 63 ± 36.4: the gap 43 is under 2 SE = 2 sqrt((100 + 1325) / 3) = 43.6
    assert table["tau0.7"][rule]["vs_d3rlpy"] == "tie" and table["tau0.9"][rule]["vs_d3rlpy"] == "tie"
    (tmp_path / "mixed_hopper_medium-random-v0_d3rlpy_seed2.json").unlink()  # 84 ± 2.8 alone
    table = mixed_dev.report("mixed/hopper/medium-random-v0", tmp_path)["table"]
    assert (table["tau0.7"][rule]["vs_d3rlpy"], table["tau0.9"][rule]["vs_d3rlpy"]) == ("behind", "tie")
    assert "| tau0.7 | IDQL argmax Q N=64 | 20.0 ± 10.0 | 3 | behind |" in (
        tmp_path / "mixed_hopper_medium-random-v0.md").read_text()


def test_versus_needs_two_seeds_a_side():
    from benchmarks.common import versus

    one, two = {"mean": 5.0, "std": 0.0, "seeds": 1}, {"mean": 90.0, "std": 1.0, "seeds": 2}
    assert versus(one, two) == "n/a" and versus(two, {**two, "mean": 10.0}) == "ahead"


def test_critic_points_reuse_the_full_runs_behaviour_model(tmp_path, monkeypatch):
    import training.train

    seen = []
    monkeypatch.setattr(training.train, "train", lambda config: seen.append(config))
    args = argparse.Namespace(steps=100, batch_size=32, threads=1, runs=str(tmp_path), behavior_seed=None)
    mixed_dev.train_point("mixed/hopper/medium-random-v0", 2, "tau0.9_cu3", args)
    mixed_dev.train_point("mixed/hopper/medium-random-v0", 2, "tau0.7", args)
    point, full = seen
    assert (point.optim.expectile, point.optim.critic_updates, point.run.seed) == (0.9, 3, 2)
    assert point.optim.behavior_from == full.run.output_dir and full.optim.behavior_from is None
    assert point.agent.gaussian_actor is None and point.agent.multipliers and full.agent.gaussian_actor == "awr"
    assert point.eval.eval_episodes == 0 and full.optim.expectile == 0.7


def test_a_critic_point_can_borrow_another_seeds_behaviour_model_and_carries_d3rlpys_actor_choices(
        tmp_path, monkeypatch):
    import training.train

    seen = []
    monkeypatch.setattr(training.train, "train", lambda config: seen.append(config))
    args = argparse.Namespace(steps=100, batch_size=32, threads=1, runs=str(tmp_path), behavior_seed=2)
    mixed_dev.train_point("mixed/hopper/medium-random-v0", 0, "tau0.7_d3actor", args)
    (point,) = seen
    assert point.run.seed == 0 and point.optim.behavior_from.endswith("tau0.7/seed2")
    assert (point.optim.init, point.agent.actor_log_std, point.agent.value_layer_norm) == ("torch", "sigmoid", False)
    assert point.agent.gaussian_actor == "awr"


def test_the_weighted_behaviour_point_is_the_full_run_but_for_its_behaviour_weights(tmp_path, monkeypatch):
    import training.train

    seen = []
    monkeypatch.setattr(training.train, "train", lambda config: seen.append(config))
    args = argparse.Namespace(steps=100, batch_size=32, threads=1, runs=str(tmp_path), behavior_seed=None)
    for point in ("tau0.7", "tau0.7_awd"):
        mixed_dev.train_point("mixed/hopper/medium-random-v0", 2, point, args)
    full, weighted = seen
    assert weighted.optim.behavior_weights == "awr" and full.optim.behavior_weights is None  # the paper preset's
    assert weighted.optim.behavior_from is None and weighted.run.output_dir.endswith("tau0.7_awd/seed2")
    assert weighted.differences(full) == {"behavior_weights": (None, "awr")}


def test_rules_flag_scores_only_the_rules_asked_for(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "val/value": 0.1, "val/q": 0.2}) + "\n")
    (run / "train_config.json").write_text(json.dumps({"git_sha": "abc"}))
    monkeypatch.setattr(mixed_dev, "train_point", lambda dataset, seed, point, args: run)
    asked = []
    monkeypatch.setattr(mixed_dev, "evaluate_rules", lambda run_dir, rules, *a: asked.append(sorted(rules)))
    rules = ["IDQL argmax Q N=64", "Gaussian (AWR, tau 0.7)"]
    args = argparse.Namespace(
        threads=0, out=str(tmp_path), points=["tau0.7", "tau0.9"], rules=rules, steps=1, batch_size=1, episodes=1,
        behavior_seed=None)
    mixed_dev.run_seed("mixed/hopper/medium-random-v0", 0, args)
    assert asked == [sorted(rules), ["IDQL argmax Q N=64"]]  # tau0.9 has no Gaussian actor to score
    args.rules = None
    asked.clear()
    mixed_dev.run_seed("mixed/hopper/medium-random-v0", 0, args)
    assert asked[1] == sorted(mixed_dev.RULES | mixed_dev.EXTRA_RULES)
