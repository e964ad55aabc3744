"""--behavior-from (a critic trained on a reused, frozen behaviour model) and --critic-updates."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from aligniql import AlignIQLAgent
from tests.training_fixtures import BOX_ID, TINY_ARGS, box_dataset, minari_root  # noqa: F401
from training import train
from training.trainer import Trainer, TrainerConfig


def run(*args: str) -> int:
    return train.main([*TINY_ARGS, "--batch-size", "16", "--log-every", "2", "--dataset", BOX_ID,
                       "--eval-episodes", "0", "--save-every", "0", *args])


def denoiser_weights(path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path / "model.safetensors").items() if k.startswith("denoiser.")}


@pytest.fixture
def source(box_dataset, tmp_path):  # noqa: F811
    out = tmp_path / "source"
    assert run("--steps", "6", "--output-dir", str(out)) == 0
    return out


def test_reused_behaviour_stays_as_trained_and_only_the_critic_learns(source, tmp_path):
    out = tmp_path / "critic"
    assert run("--steps", "6", "--expectile", "0.9", "--multipliers", "--behavior-from", str(source),
               "--output-dir", str(out)) == 0
    before, after = denoiser_weights(source), denoiser_weights(out)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    src_w, new_w = load_file(source / "model.safetensors"), load_file(out / "model.safetensors")
    value_keys = [k for k in src_w if k.startswith("value.") and src_w[k].dim() == 2]
    assert value_keys and all(not torch.equal(src_w[k], new_w[k]) for k in value_keys)  # V trained anew
    assert any(k.startswith("alpha_net.") for k in new_w)  # --multipliers: nets the source does not have
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("loss/bc" not in r and "loss/value" in r and "val/bc" in r for r in records)
    assert len({r["val/bc"] for r in records}) == 1  # the behaviour model does not change
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["behavior"]["from"] == str(source) and saved["behavior"]["seed"] == 0
    assert saved["behavior"]["weights_sha256"] == json.loads((source / "config.json").read_text())["weights_sha256"]
    agent = AlignIQLAgent.from_pretrained(out)
    assert agent.config.expectile == 0.9 and agent.act(torch.zeros(11).numpy()).shape == (3,)


def test_reuse_resumes_as_an_uninterrupted_run(source, tmp_path, monkeypatch):
    common = ["--steps", "8", "--critic-updates", "2", "--behavior-from", str(source), "--seed", "0"]
    assert run(*common, "--output-dir", str(tmp_path / "full")) == 0
    update = Trainer.update

    def interrupted(self, batch):
        if self.step == 3:
            signal.raise_signal(signal.SIGINT)
        return update(self, batch)

    monkeypatch.setattr(Trainer, "update", interrupted)
    part = tmp_path / "part"
    assert run(*common, "--output-dir", str(part)) == 130
    monkeypatch.setattr(Trainer, "update", update)
    source.rename(tmp_path / "moved")  # the state holds the reused denoiser: resuming needs no source
    assert run(*common, "--output-dir", str(part), "--resume") == 0
    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(part / "model.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


@pytest.mark.parametrize("flags", [["--denoiser-hidden-dim", "16"], ["--no-normalize-obs"]])
def test_a_behaviour_model_of_other_settings_is_refused(source, tmp_path, flags):
    with pytest.raises(SystemExit, match="behaviour model differs"):
        run("--steps", "2", "--behavior-from", str(source), "--output-dir", str(tmp_path / "x"), *flags)


def test_an_unfinished_or_missing_source_is_refused(source, tmp_path):
    (source / "results.json").unlink()
    with pytest.raises(SystemExit, match="has not finished"):
        run("--steps", "2", "--behavior-from", str(source), "--output-dir", str(tmp_path / "x"))
    with pytest.raises(SystemExit, match="cannot load it as an agent"):
        run("--steps", "2", "--behavior-from", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "y"))


def test_critic_updates_run_extra_critic_steps_on_fresh_batches(box_dataset, monkeypatch):  # noqa: F811
    from tests.conftest import tiny_agent
    from training.datasets import load_dataset, prepare

    data = prepare(load_dataset(BOX_ID, download=False)).transitions
    calls = []
    update_critic = Trainer.update_critic

    def counted(self, batch, **kw):
        calls.append(batch.actions.clone())
        return update_critic(self, batch, **kw)

    monkeypatch.setattr(Trainer, "update_critic", counted)
    trainer = Trainer(tiny_agent(obs_dim=11, act_dim=3), data, TrainerConfig(steps=4, batch_size=8, critic_updates=3))
    trainer.train_step()
    assert len(calls) == 3 and trainer.step == 1
    assert not torch.equal(calls[0], calls[1]) and not torch.equal(calls[1], calls[2])  # three different batches
    with pytest.raises(ValueError, match="critic_updates must be >= 1"):
        TrainerConfig(critic_updates=0)


def test_multi_seed_runs_refuse_the_single_seed_options(box_dataset, tmp_path):  # noqa: F811
    with pytest.raises(SystemExit, match="single-seed options"):
        train.main([*TINY_ARGS, "--dataset", BOX_ID, "--steps", "2", "--critic-updates", "2", "--seeds", "0", "1",
                    "--output-dir", str(tmp_path / "g")])
