"""Edges of resuming and evaluating: a damaged training state, another device type, a missing maze package."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from aligniql import AlignIQLConfig
from aligniql.evaluation import agent_env
from tests.test_training_trainer import make_trainer
from tests.training_fixtures import BOX_ID, TINY_ARGS, box_dataset, install_fake_evaluation, minari_root  # noqa: F401
from training import checkpoint, train


def test_a_damaged_training_state_stops_resume_with_one_line_saying_to_start_over(box_dataset, tmp_path,
                                                                                monkeypatch):
    install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    args = [*TINY_ARGS, "--dataset", BOX_ID, "--steps", "4", "--batch-size", "16", "--eval-episodes", "0",
            "--output-dir", str(out)]
    assert train.main(args) == 0
    state = next((out / checkpoint.STATE_DIR).glob("step_*")) / "state.safetensors"
    data = bytearray(state.read_bytes())
    assert any(data[-256:-192])
    data[-256:-192] = bytes(64)
    state.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match=r"cannot continue .*state.safetensors is damaged.*start it over without "
                                         r"--resume"):
        train.main([*args, "--resume"])


def test_a_state_saved_on_another_device_type_resumes_with_a_warning(caplog):
    state = make_trainer().state_dict()
    state["rng"]["noise"] = state["rng"]["noise"][:16]  # a CUDA generator's state is another size
    state["rng"]["noise_device"] = "cuda"
    resumed = make_trainer()
    log = logging.getLogger("training.trainer")  # train.main's logging setup stops propagation to the root
    log.addHandler(caplog.handler)
    try:
        resumed.load_state_dict(state)
    finally:
        log.removeHandler(caplog.handler)
    assert "saved on cuda, resumed on cpu" in caplog.text
    resumed.train_step()


def test_an_agent_of_a_robotics_env_says_which_extra_it_needs(monkeypatch):
    from aligniql import demo

    shipped = AlignIQLConfig.from_json(demo.EMBEDDED.parent / "antmaze-umaze-v0" / "config.json")
    config = AlignIQLConfig(obs_dim=2, act_dim=1, eval_env=shipped.eval_env)
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gymnasium_robotics"
                        else find(name, *a))
    monkeypatch.setattr("aligniql.evaluation._register_robotics", lambda env_id: None)
    with pytest.raises(ValueError, match=r"needs gymnasium-robotics: pip install 'aligniql\[maze\]'"):
        agent_env(config)


def test_a_run_resumes_with_the_preset_values_it_started_with_after_the_presets_change(box_dataset, tmp_path,
                                                                                       monkeypatch):
    import dataclasses
    import json

    from training import presets

    install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    args = [*TINY_ARGS, "--dataset", BOX_ID, "--steps", "4", "--batch-size", "16", "--eval-episodes", "0",
            "--save-every", "2", "--output-dir", str(out)]
    assert train.main(args) == 0
    started = json.loads((out / "config.json").read_text())
    changed = {d: dataclasses.replace(p, extraction="idql" if p.extraction != "idql" else "aligniql",
                                      value_layer_norm=not p.value_layer_norm) for d, p in presets.PRESETS.items()}
    monkeypatch.setattr(presets, "PRESETS", changed)
    assert train.main([*args, "--resume"]) == 0  # the new preset values are not differences of the run
    resumed = json.loads((out / "config.json").read_text())
    assert (resumed["extraction"], resumed["value_layer_norm"]) == (started["extraction"], started["value_layer_norm"])
    other = "idql" if started["extraction"] != "idql" else "aligniql"
    with pytest.raises(SystemExit, match=r"--resume: these settings differ.*'extraction'"):
        train.main([*args, "--resume", "--extraction", other])  # a value given explicitly still defines the run
