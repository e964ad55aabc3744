"""benchmarks/paired_critic.py: both critics train on the source's behaviour model with its seed and budget."""

import json

from benchmarks import paired_critic
from training.config import TrainConfig


def test_each_preset_gets_a_critic_only_run_on_the_sources_behaviour_model(tmp_path):
    source = tmp_path / "seed3"
    source.mkdir()
    config = TrainConfig.create(dataset="bench/hopper/medium-expert-v0", seed=3, steps=1234, batch_size=64)
    (source / "train_config.json").write_text(json.dumps({"config": config.to_dict()}))
    runs = {p: paired_critic.critic_config(source, p, threads=1) for p in paired_critic.PRESETS}
    for preset, run in runs.items():
        assert (run.run.preset, run.optim.behavior_from, run.run.seed) == (preset, str(source), 3)
        assert (run.optim.steps, run.optim.batch_size, run.data.dataset) == (1234, 64, config.data.dataset)
        assert run.run.output_dir == str(tmp_path / f"seed3_{preset}_critic")
    resolved = {p: r.resolved(r.data.dataset, "Hopper-v5") for p, r in runs.items()}
    assert resolved["paper"].run.preset == "paper" and resolved["default"].run.preset == "default"
    assert {r.agent.extraction for r in resolved.values()} == {"idql"}  # the same act default: scored per rule anyway
