"""TrainConfig: the CLI generated from it, presets, validation, saving, the Python API and the progress lines."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from tests.training_fixtures import BOX_ID, TINY_ARGS, box_dataset, install_fake_evaluation, minari_root  # noqa: F401
from training import train
from training.config import GROUPS, TrainConfig, build_parser, field_docs, from_args, to_argv
from training.presets import PRESETS


def test_every_field_is_a_flag_with_its_doc_and_default_in_the_help():
    help_text = " ".join(build_parser().format_help().split())
    for cls in GROUPS.values():
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            flag = "--" + f.name.replace("_", "-")
            assert flag in help_text
            assert " ".join(docs[f.name].split()) in help_text, f.name
    for text in ("--critic-lr CRITIC_LR Adam learning rate", "(default: 0.005)", "(default: 0.001)",
                 "--denoiser-weight-decay", "(default: 0.0001)", "(preset: 0.7 (locomotion", "0.9 (antmaze)",
                 "(preset: 0.3333 (locomotion, pointmaze), 1 (antmaze"):  # floats shown short
        assert text in help_text, text


def test_flags_set_fields_and_unset_ones_keep_their_defaults():
    cfg = from_args(build_parser().parse_args(["--dataset", "a/b-v0", "--critic-lr", "1e-3", "--polyak", "0.01",
                                               "--ema-rate", "0.002", "--denoiser-weight-decay", "0",
                                               "--no-video", "--gaussian-actor"]))
    assert (cfg.optim.critic_lr, cfg.optim.polyak, cfg.optim.ema_rate, cfg.optim.denoiser_weight_decay) == \
        (1e-3, 0.01, 0.002, 0.0)
    assert cfg.eval.video is False and cfg.agent.gaussian_actor == "awr" and cfg.optim.denoiser_lr == 3e-4
    assert cfg.optim.steps is None and not cfg.is_resolved  # preset fields wait for the dataset
    trainer = cfg.resolved("a/b-v0").trainer_config()
    assert (trainer.critic_lr, trainer.polyak, trainer.ema_rate, trainer.gaussian_weights) == (1e-3, 0.01, 0.002, "awr")


def test_presets_fill_only_what_is_left_unset():
    base = TrainConfig.create(dataset="D4RL/antmaze/large-play-v1")
    antmaze = base.resolved("D4RL/antmaze/large-play-v1", "AntMaze_Large-v4")
    assert (antmaze.optim.expectile, antmaze.optim.awr_beta, antmaze.data.reward_transform) == (0.9, 10.0, "antmaze")
    mine = base.replace(expectile=0.8, steps=7).resolved("D4RL/antmaze/large-play-v1", "AntMaze_Large-v4")
    assert (mine.optim.expectile, mine.optim.steps, mine.optim.awr_beta) == (0.8, 7, 10.0)
    for preset in PRESETS.values():  # a preset is complete: resolving leaves nothing unset
        assert all(getattr(preset, f.name) is not None for f in dataclasses.fields(preset))


def test_saved_config_round_trips_and_argv_rebuilds_it():
    cfg = TrainConfig.create(env="walker2d-medium-v2", steps=100, critic_lr=1e-3, multipliers=True,
                             gaussian_actor="aligniql", normalize_obs=False, eval_seed=5, push=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    argv = to_argv(cfg)
    assert "--no-normalize-obs" in argv and "--multipliers" in argv and "--critic-lr" in argv
    assert from_args(build_parser().parse_args(argv)) == cfg
    assert cfg.replace(seed=4).run.seed == 4 and cfg.run.seed == 0  # frozen: replace returns a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize("values, message", [
    ({"dataset": "a/b-v0", "expectile": 1.0}, r"optim.expectile \(--expectile\) must be in \(0, 1\), got 1.0"),
    ({"dataset": "a/b-v0", "steps": "10"}, r"optim.steps \(--steps\) must be int, got '10'"),
    ({"dataset": "a/b-v0", "multipliers": 1}, r"agent.multipliers \(--multipliers\) must be bool"),
    ({"dataset": "a/b-v0", "precision": "fp16"}, r"must be one of fp32, bf16, auto, got 'fp16'"),
    ({"dataset": "a/b-v0", "lr": 1e-3}, r"unknown TrainConfig fields \['lr'\]"),
    ({}, "give exactly one of data.env"), ({"env": "x", "dataset": "y"}, "give exactly one of data.env"),
    ({"dataset": "a/b-v0", "extraction": "gaussian"}, "needs --gaussian-actor"),
])
def test_bad_values_fail_with_one_wording(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.create(**values)


def test_unknown_saved_fields_are_refused():
    cfg = TrainConfig.create(dataset="a/b-v0").to_dict()
    cfg["optim"]["learning_rate"] = 1.0
    with pytest.raises(ValueError, match=re.escape("unknown fields in TrainConfig.optim: ['learning_rate']")):
        TrainConfig.from_dict(cfg)


TINY = from_args(build_parser().parse_args(["--dataset", BOX_ID, *TINY_ARGS]))


def test_python_api_trains_from_a_config(box_dataset, tmp_path, monkeypatch):
    install_fake_evaluation(monkeypatch)
    cfg = TINY.replace(steps=3, batch_size=8, log_every=1, eval_episodes=0, output_dir=str(tmp_path / "api"))
    out = train.train(cfg)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["format"] == 2 and saved["config"] == cfg.resolved(BOX_ID, "Hopper-v5").to_dict()
    assert saved["command"].startswith("python training/train.py --dataset test/hopper/tiny-v0 ")
    assert "--steps 3" in saved["command"]  # the equivalent command line, for the resume hint
    with pytest.raises(train.RunDirError, match="already holds a training run"):
        train.train(cfg)
    assert train.train(cfg.replace(resume=True)) == out  # finished: nothing to train


def test_progress_is_a_plain_line_when_stderr_is_not_a_terminal(box_dataset, tmp_path, monkeypatch, capsys):
    install_fake_evaluation(monkeypatch)
    argv = ["--dataset", BOX_ID, *TINY_ARGS, "--steps", "6", "--batch-size", "8", "--log-every", "2",
            "--eval-episodes", "0", "--output-dir", str(tmp_path / "log")]
    assert train.main(argv) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if " step " in x and "steps/s" in x]
    assert len(lines) == 3 and "\r" not in err, err  # one per log line (steps 2, 4, 6), no redrawn bar
    assert re.search(r"step 2/6 \(33%\), [\d.]+ steps/s, bc [\d.]+ v [\d.]+ q [\d.]+, ETA \d+m\d\ds", lines[0])
    metrics = (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in metrics] == [2, 4, 6]  # metrics.jsonl unchanged by the progress lines


def test_preset_paper_keeps_the_official_settings_when_ours_differ(monkeypatch):
    import dataclasses

    from training import presets

    ours = dataclasses.replace(presets.PAPER_PRESETS["locomotion"], expectile=0.9)
    monkeypatch.setitem(presets.PRESETS, "locomotion", ours)
    base = TrainConfig.create(dataset="bench/hopper/medium-v0")
    assert base.run.preset == "default"
    assert base.resolved("bench/hopper/medium-v0", "Hopper-v5").optim.expectile == 0.9
    paper = base.replace(preset="paper").resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert paper.optim.expectile == 0.7 and paper.optim.batch_size == 512
    assert paper.hyperparameters()["preset"] == "paper"
    assert base.replace(expectile=0.8).resolved("bench/hopper/medium-v0", "Hopper-v5").optim.expectile == 0.8
    with pytest.raises(ValueError, match="run.preset .--preset. must be one of default, paper"):
        TrainConfig.create(dataset="x", preset="mine")
    assert presets.PRESETS.keys() == presets.PAPER_PRESETS.keys()


def test_value_layer_norm_is_a_preset_field_settable_both_ways():
    config = TrainConfig.create(dataset="bench/hopper/medium-v0")
    assert config.agent.value_layer_norm is None  # the preset decides
    paper = config.replace(preset="paper").resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert paper.agent.value_layer_norm is True  # the official launchers' LayerNorm
    assert config.resolved("bench/hopper/medium-v0", "Hopper-v5").agent.value_layer_norm is True  # kept (OUR_CHOICES)
    parser = build_parser()
    assert from_args(parser.parse_args(["--dataset", "x", "--no-value-layer-norm"])).agent.value_layer_norm is False
    assert from_args(parser.parse_args(["--dataset", "x", "--value-layer-norm"])).agent.value_layer_norm is True
    off = config.replace(value_layer_norm=False).resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert off.agent.value_layer_norm is False


def test_the_default_preset_acts_by_iqls_awr_policy_on_locomotion_and_the_paper_preset_by_alignments_rule():
    config = TrainConfig.create(dataset="bench/hopper/medium-v0")
    assert config.agent.extraction is None  # the preset decides
    ours = config.resolved("bench/hopper/medium-v0", "Hopper-v5")
    # IQL's policy mu(a|s) exp(awr_beta A): a softmax over Q at T = 1 / the preset's awr_beta
    assert (ours.agent.extraction, ours.agent.selection) == ("idql", "softmax")
    assert ours.agent.temperature == pytest.approx(1 / ours.optim.awr_beta) == pytest.approx(1 / 3)
    paper = config.replace(preset="paper").resolved("bench/hopper/medium-v0", "Hopper-v5").agent
    assert (paper.extraction, paper.selection, paper.temperature) == ("aligniql", "argmax", 1.0)
    assert config.resolved("bench/pointmaze/medium-v0", "PointMaze_Medium-v3").agent.extraction == "idql"
    assert config.resolved("bench/antmaze/umaze-v0").agent.extraction == "aligniql"
    mine = config.replace(extraction="aligniql").resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert (mine.agent.extraction, mine.agent.selection) == ("aligniql", "argmax")  # a value given always wins
    expectile = config.replace(extraction="idql_expectile").resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert expectile.agent.selection == "softmax"


def test_behaviour_weights_reach_the_trainer_and_old_runs_read_as_unweighted():
    parser = build_parser()
    config = from_args(parser.parse_args(["--dataset", "x", "--behavior-weights", "awr", "--awr-beta", "2"]))
    resolved = config.resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert (resolved.trainer_config().behavior_weights, resolved.trainer_config().awr_beta) == ("awr", 2.0)
    default = TrainConfig.create(dataset="x").resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert default.trainer_config().behavior_weights == "none"
    paper = TrainConfig.create(dataset="x", preset="paper").resolved("bench/hopper/medium-v0", "Hopper-v5")
    assert paper.optim.behavior_weights == "none"  # the paper clones the behaviour unweighted
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "x", "--behavior-weights", "exp"])
    saved = default.to_dict()
    del saved["optim"]["behavior_weights"]  # a train_config.json written before the option existed
    assert TrainConfig.from_dict(saved).optim.behavior_weights == "none"


def test_the_presets_selection_and_temperature_go_with_its_extraction_only(monkeypatch):
    import dataclasses

    from training import presets

    ours = dataclasses.replace(presets.PRESETS["locomotion"], extraction="idql", selection="softmax", temperature=0.25)
    monkeypatch.setitem(presets.PRESETS, "locomotion", ours)
    config = TrainConfig.create(dataset="bench/hopper/medium-v0")
    assert (config.agent.selection, config.agent.temperature) == (None, None)  # the preset decides

    def rule(c):
        a = c.resolved("bench/hopper/medium-v0", "Hopper-v5").agent
        return a.extraction, a.selection, a.temperature

    assert rule(config) == ("idql", "softmax", 0.25)
    assert rule(config.replace(selection="argmax")) == ("idql", "argmax", 0.25)  # a value given always wins
    # another extraction: that rule's own selection and temperature, never the preset's softmax at 0.25
    assert rule(config.replace(extraction="aligniql")) == ("aligniql", "argmax", 1.0)
    assert rule(config.replace(extraction="idql_expectile")) == ("idql_expectile", "softmax", 1.0)
    assert rule(config.replace(extraction="aligniql", temperature=0.5)) == ("aligniql", "argmax", 0.5)
    assert rule(config.replace(preset="paper")) == ("aligniql", "argmax", 1.0)
    resumed = config.resolved("bench/hopper/medium-v0", "Hopper-v5", saved=config.replace(temperature=0.5).resolved(
        "bench/hopper/medium-v0", "Hopper-v5"))
    assert resumed.agent.temperature == 0.5  # a resumed run keeps the rule it started with
    saved = config.resolved("bench/hopper/medium-v0", "Hopper-v5").to_dict()
    del saved["agent"]["selection"], saved["agent"]["temperature"]  # written before they were preset fields
    assert TrainConfig.from_dict(saved).agent.selection == "argmax"


@pytest.mark.parametrize("name", ["default", "paper"])
def test_every_preset_resolves_to_a_valid_config(name):
    from training import presets

    examples = {"locomotion": ("bench/hopper/medium-v0", "Hopper-v5"), "antmaze": ("bench/antmaze/umaze-v0", None),
                "pointmaze": ("bench/pointmaze/medium-v0", None), "adroit": ("D4RL/pen/human-v2", None),
                "kitchen": ("D4RL/kitchen/mixed-v2", None), "other": ("my/own/data-v0", None)}
    assert set(examples) == set(presets.PRESETS)
    for domain, (dataset, env) in examples.items():
        assert presets.domain_of(dataset, env) == domain
        resolved = TrainConfig.create(dataset=dataset, preset=name, multipliers=True, gaussian_actor="awr").resolved(
            dataset, env)
        a = resolved.agent
        assert a.selection in ("argmax", "softmax") and a.temperature > 0 and a.extraction is not None
