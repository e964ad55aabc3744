"""The training CLI in-process: arguments and presets, tiny end-to-end runs, evaluation, interrupt + resume."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aligniql import AlignIQLAgent
from tests.training_fixtures import (  # noqa: F401
    BOX_ID,
    GOAL_ID,
    NO_ENV_ID,
    TINY_ARGS,
    box_dataset,
    goal_dataset,
    install_fake_evaluation,
    make_no_env_dataset,
    minari_root,
    single_thread,
)
from training import train
from training.config import TrainConfig, from_args
from training.trainer import Trainer


def run(*args: str) -> int:
    return train.main([*TINY_ARGS, "--batch-size", "16", "--log-every", "2", *args])


def test_arguments_and_presets():
    parser = train.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--env", "hopper-medium-v2", "--dataset", "x/y/z-v0"])
    with pytest.raises(SystemExit):
        parser.parse_args([])
    args = parser.parse_args(["--env", "antmaze-large-play-v2", "--gaussian-actor", "--multipliers", "--private"])
    cfg = from_args(args).resolved("D4RL/antmaze/large-play-v1", "AntMaze_Large-v4").flat()
    assert (cfg["expectile"], cfg["awr_beta"], cfg["batch_size"], cfg["steps"]) == (0.9, 10.0, 512, 3_000_000)
    assert (cfg["eval_every"], cfg["eval_episodes"], cfg["num_samples"]) == (250_000, 50, 64)
    assert cfg["gaussian_actor"] == "awr" and cfg["multipliers"] and cfg["private"] and cfg["device"] == "auto"
    assert cfg["reward_transform"] == "antmaze"
    assert cfg["output_dir"] == str(Path("runs") / "aligniql-antmaze-large-play-v1-seed0")
    json.dumps(cfg)
    args = parser.parse_args(["--dataset", "bench/hopper/medium-v0", "--expectile", "0.8", "--steps", "10",
                              "--gaussian-actor", "aligniql", "--no-normalize-obs", "--device", "cpu"])
    cfg = from_args(args).resolved("bench/hopper/medium-v0", "Hopper-v5").flat()
    assert (cfg["expectile"], cfg["steps"], cfg["gaussian_actor"], cfg["normalize_obs"]) == (0.8, 10, "aligniql", False)
    cfg = from_args(parser.parse_args(["--dataset", "a/b-v0", "--extraction", "idql_expectile"])).resolved("a/b-v0")
    # expectile weights are only meant to be sampled
    assert (cfg.agent.selection, cfg.data.holdout) == ("softmax", 0.05)
    with pytest.raises(ValueError, match="needs --selection softmax"):
        from_args(parser.parse_args(["--dataset", "a/b-v0", "--extraction", "idql_expectile", "--selection",
                                     "argmax"]))
    with pytest.raises(ValueError, match="needs --multipliers"):
        from_args(parser.parse_args(["--dataset", "a/b-v0", "--extraction", "aligniql_hard"]))


@pytest.mark.parametrize("flags, message", [
    (["--expectile", "1.5"], r"optim.expectile \(--expectile\) must be in \(0, 1\), got 1.5"),
    (["--discount", "0"], "--discount"), (["--steps", "0"], r"--steps\) must be >= 1"),
    (["--holdout", "1"], "--holdout"),
    (["--eta", "nan"], "--eta"), (["--temperature", "-1"], "--temperature"), (["--num-samples", "0"], "--num-samples"),
    (["--critic-lr", "0"], r"--critic-lr\) must be > 0"), (["--polyak", "2"], "--polyak"),
    (["--ema-rate", "0"], "--ema-rate"), (["--denoiser-weight-decay", "-1"], "--denoiser-weight-decay"),
    (["--device", "tpu"], r"--device\): device must be"), (["--repo-id", "a b"], "must be a Hub repo id"),
    (["--gaussian-actor", "awr", "--extraction", "aligniql_hard"], "needs --multipliers"),
    *([(["--device", "cuda"], r"--device\): .*CUDA is not available")] if not torch.cuda.is_available() else []),
])
def test_out_of_range_arguments_fail_before_the_dataset_loads(flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--dataset", "not/loaded/at-all-v0", *flags])
    assert e.value.code == 2 and re.search(message, capsys.readouterr().err)


def test_box_dataset_end_to_end(box_dataset, tmp_path, monkeypatch):
    calls = install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    assert run("--dataset", BOX_ID, "--steps", "6", "--eval-every", "3", "--eval-episodes", "2",
               "--output-dir", str(out), "--seed", "3") == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md", "train_config.json",
                                               "results.json", "metrics.jsonl", "training_state"}
    assert [c["episodes"] for c in calls] == [2, 2] and calls[0]["env"] == BOX_ID  # step 3 and final
    assert calls[0]["num_envs"] == 2  # --eval-num-envs 10, capped at the episodes
    assert [c["seed"] for c in calls] == [3, 3]  # --eval-seed defaults to --seed
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in lines if "loss/bc" in r]
    assert [r["step"] for r in losses] == [2, 4, 6]
    assert all(np.isfinite(r[k]) for r in losses for k in ("loss/bc", "loss/value", "loss/q", "steps_per_second"))
    assert any("eval/normalized_score" in r for r in lines)
    results = json.loads((out / "results.json").read_text())
    assert results["evaluated"] and results["normalized_score"] == 42.0 and results["n_eval_episodes"] == 2
    train_config = json.loads((out / "train_config.json").read_text())
    assert train_config["command"].startswith("python training/train.py ") and "--steps 6" in train_config["command"]
    assert train_config["config"]["optim"]["expectile"] == 0.7
    assert train_config["dataset"]["reward_transform"] == "locomotion"
    assert TrainConfig.from_dict(train_config["config"]).flat()["seed"] == 3  # the config as saved
    total = train_config["dataset"]["transitions"]  # 5 % held out by default, scored as val/* on every log line
    assert train_config["dataset"]["held_out"] == total - int(total * 0.95) > 0
    assert all(np.isfinite(r[k]) for r in losses for k in ("val/bc", "val/value", "val/q"))
    machine = train_config["machine"]  # which CPU of the machine class trained it
    assert machine["cpu"] and machine["torch_threads"] >= 1 and isinstance(machine["cpu_features"]["avx512_bf16"], bool)

    agent = AlignIQLAgent.from_pretrained(out)
    c = agent.config
    assert (c.dataset_id, c.env_id, c.reward_transform, c.expectile) == (BOX_ID, "Hopper-v5", "locomotion", 0.7)
    assert c.reward_scale > 0 and c.ref_max_score == 3000.0 and c.normalize_obs
    assert not torch.equal(agent.obs_std, torch.ones(11))
    obs = np.random.default_rng(0).normal(size=(5, 11))
    actions = agent.act(obs)
    assert actions.shape == (5, 3) and actions.dtype == np.float32 and np.abs(actions).max() <= 1


def test_dict_observations_with_multipliers_and_gaussian_actor(goal_dataset, tmp_path, monkeypatch):
    calls = install_fake_evaluation(monkeypatch)
    out = tmp_path / "maze"
    assert run("--dataset", GOAL_ID, "--steps", "4", "--eval-episodes", "1", "--multipliers",
               "--gaussian-actor", "aligniql", "--output-dir", str(out)) == 0
    assert len(calls) == 1 and json.loads((out / "results.json").read_text())["success_rate"] == 1.0
    agent = AlignIQLAgent.from_pretrained(out)
    assert agent.config.obs_keys == ("observation", "achieved_goal", "desired_goal") and agent.config.use_multipliers
    obs = {"observation": np.zeros(4), "achieved_goal": np.zeros(2), "desired_goal": np.ones(2)}
    for extraction in ("aligniql", "aligniql_hard", "gaussian"):
        action = agent.act(obs, extraction=extraction)
        assert action.shape == (2,) and np.isfinite(action).all()
    batch = {k: np.zeros((3, v.shape[0])) for k, v in obs.items()}
    assert agent.act(batch).shape == (3, 2)


def test_dataset_without_env_skips_evaluation(minari_root, tmp_path, monkeypatch, capsys):
    make_no_env_dataset()
    calls = install_fake_evaluation(monkeypatch)
    out = tmp_path / "noenv"
    assert run("--dataset", NO_ENV_ID, "--steps", "2", "--eval-episodes", "3", "--output-dir", str(out)) == 0
    assert calls == [] and "skipping evaluation" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["evaluated"] is False
    agent = AlignIQLAgent.from_pretrained(out)
    action = agent.act(np.zeros(5))
    assert -2 <= action[0] <= 2 and 0 <= action[1] <= 1


def test_interrupt_then_resume_matches_uninterrupted_run(box_dataset, tmp_path, monkeypatch):
    common = ["--dataset", BOX_ID, "--steps", "8", "--eval-episodes", "0", "--save-every", "0", "--seed", "1"]
    assert run(*common, "--output-dir", str(tmp_path / "full")) == 0

    update = Trainer.update

    def interrupted_update(self, batch):
        if self.step == 3:  # Ctrl-C arrives during step 4: the loop finishes it, saves and stops
            signal.raise_signal(signal.SIGINT)
        return update(self, batch)

    monkeypatch.setattr(Trainer, "update", interrupted_update)
    part = tmp_path / "part"
    assert run(*common, "--output-dir", str(part)) == 130
    assert json.loads((part / "training_state" / "latest.json").read_text())["step"] == 4
    monkeypatch.setattr(Trainer, "update", update)
    assert run(*common, "--output-dir", str(part), "--resume") == 0

    full_w, part_w = load_file(tmp_path / "full" / "model.safetensors"), load_file(part / "model.safetensors")
    assert full_w.keys() == part_w.keys() and all(torch.equal(full_w[k], part_w[k]) for k in full_w)
    full_s = load_file(tmp_path / "full" / "training_state" / "step_00000008" / "state.safetensors")
    part_s = load_file(part / "training_state" / "step_00000008" / "state.safetensors")
    assert all(torch.equal(full_s[k], part_s[k]) for k in full_s)
    steps = [json.loads(x)["step"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]

    with pytest.raises(SystemExit, match="differ"):
        run(*common[:-1], "2", "--output-dir", str(part), "--resume")  # another seed
    with pytest.raises(SystemExit, match="cannot be lengthened"):
        run("--dataset", BOX_ID, "--steps", "16", *common[4:], "--output-dir", str(part), "--resume")
    with pytest.raises(SystemExit, match="already holds a training run"):
        run(*common, "--output-dir", str(part))  # no silent overwrite of a run
    with pytest.raises(SystemExit, match="nothing to resume"):
        run(*common, "--output-dir", str(tmp_path / "never"), "--resume")


def test_ctrl_c_after_the_last_step_keeps_the_state_and_resume_finishes(box_dataset, tmp_path, monkeypatch, capsys):
    calls = install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    common = ["--dataset", BOX_ID, "--steps", "4", "--eval-episodes", "2", "--save-every", "0", "--output-dir",
              str(out)]
    export = train.export

    def export_interrupted(trainer, folder):
        if trainer.step == 4:  # Ctrl-C while the final files are being written: they are written all the same
            signal.raise_signal(signal.SIGINT)
        export(trainer, folder)

    monkeypatch.setattr(train, "export", export_interrupted)
    assert run(*common) == 130
    assert json.loads((out / "training_state" / "latest.json").read_text())["step"] == 4
    assert not (out / "results.json").exists() and calls == []
    err = capsys.readouterr().err
    assert "before the final evaluation; the state is saved" in err and "--resume" in err
    monkeypatch.setattr(train, "export", export)

    evaluation = sys.modules["aligniql.evaluation"]  # the fake installed above
    fake = evaluation.evaluate

    def evaluation_interrupted(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C during the final evaluation, outside the training loop's handler

    monkeypatch.setattr(evaluation, "evaluate", evaluation_interrupted)
    assert run(*common, "--resume") == 130
    assert "training state of step 4 is saved" in capsys.readouterr().err and not (out / "results.json").exists()
    monkeypatch.setattr(evaluation, "evaluate", fake)
    assert run(*common, "--resume") == 0
    assert json.loads((out / "results.json").read_text())["step"] == 4 and (out / "README.md").is_file()
    metrics = (out / "metrics.jsonl").read_text()
    assert run(*common, "--resume") == 0  # a finished run: nothing to train, nothing evaluated twice
    assert (out / "metrics.jsonl").read_text() == metrics and len(calls) == 1


def test_eval_seed_sets_the_evaluation_episodes_only(box_dataset, tmp_path, monkeypatch):
    calls = install_fake_evaluation(monkeypatch)
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--dataset", BOX_ID, "--steps", "2", "--eval-episodes", "1", "--seed", "3"]
    assert run(*common, "--output-dir", str(a)) == 0
    assert run(*common, "--eval-seed", "100000", "--output-dir", str(b)) == 0
    assert [c["seed"] for c in calls] == [3, 100000]
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same training


def test_resume_without_a_saved_state_says_so(box_dataset, tmp_path, monkeypatch):
    install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    common = ["--dataset", BOX_ID, "--steps", "2", "--eval-episodes", "0", "--output-dir", str(out)]
    assert run(*common) == 0
    import shutil
    shutil.rmtree(out / "training_state")  # e.g. killed before its first save
    with pytest.raises(SystemExit, match="has no saved training state"):
        run(*common, "--resume")


def test_real_evaluation_if_available(box_dataset, tmp_path):
    pytest.importorskip("aligniql.evaluation")
    out = tmp_path / "real"
    assert run("--dataset", BOX_ID, "--steps", "2", "--eval-episodes", "1", "--output-dir", str(out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["evaluated"] and len(results["returns"]) == 1 and results["normalized_score"] is not None


def test_cli_reports_missing_or_unpublished_datasets_cleanly(minari_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match=r"error: .*mujoco/walker2d/medium-v0.*minari download"):
        train.main(["--env", "walker2d-medium-v2", "--push"])
    with pytest.raises(SystemExit, match="no Minari equivalent"):
        train.main(["--env", "hopper-medium-replay-v2"])


def test_a_run_saved_before_train_config_resumes_with_the_legacy_values(box_dataset, tmp_path, monkeypatch):
    install_fake_evaluation(monkeypatch)
    out = tmp_path / "old"
    common = ["--dataset", BOX_ID, "--steps", "4", "--eval-episodes", "0", "--output-dir", str(out)]
    assert run(*common, "--holdout", "0", "--save-every", "2") == 0
    # rewrite train_config.json as the flat argparse dump of the code before TrainConfig, from before the
    # --holdout, --selection and --temperature flags existed
    tc = json.loads((out / "train_config.json").read_text())
    cfg = TrainConfig.from_dict(tc["config"])
    args = {k: v for k, v in cfg.flat().items() if k not in ("holdout", "selection", "temperature", "critic_lr",
                                                           "polyak", "ema_rate", "denoiser_dropout")}
    args |= {"domain": "locomotion", "dataset_id": BOX_ID}
    old = {"command": tc["command"], "args": args, "trainer": cfg.trainer_config().__dict__, "dataset": tc["dataset"]}
    (out / "train_config.json").write_text(json.dumps(old))
    latest = json.loads((out / "training_state" / "latest.json").read_text())
    assert latest["step"] == 4
    with pytest.raises(SystemExit, match=r"'holdout': \(0\.0, 0\.05\)"):
        run(*common, "--resume")
    with pytest.raises(SystemExit, match=r"'critic_lr': \(0\.0003, 0\.001\)"):  # from the old "trainer" part
        run(*common, "--holdout", "0", "--critic-lr", "1e-3", "--resume")
    assert run(*common, "--holdout", "0", "--resume") == 0  # finished: nothing to do, but it resumes
