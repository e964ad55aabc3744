"""``train.py --seeds``: K members trained in one process, each written as the single-seed run would write it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from aligniql import AlignIQLAgent
from tests.training_fixtures import (  # noqa: F401
    BOX_ID,
    TINY_ARGS,
    box_dataset,
    install_fake_evaluation,
    minari_root,
    single_thread,
)
from training import train

COMMON = [*TINY_ARGS, "--batch-size", "16", "--log-every", "2", "--dataset", BOX_ID, "--eval-episodes", "2"]


def test_seeds_write_one_ordinary_run_per_member_that_matches_the_single_seed_run(box_dataset, tmp_path,
                                                                                   monkeypatch):
    calls = install_fake_evaluation(monkeypatch)
    group = tmp_path / "group"
    assert train.main([*COMMON, "--steps", "6", "--eval-every", "3", "--output-dir", str(group),
                       "--seeds", "0", "2"]) == 0
    for seed in (0, 2):
        member = group / f"seed{seed}"
        assert {"config.json", "model.safetensors", "README.md", "train_config.json", "results.json",
                "metrics.jsonl"} <= {p.name for p in member.iterdir()}
        saved = json.loads((member / "train_config.json").read_text())
        assert saved["config"]["run"]["seed"] == seed and saved["group"]["seeds"] == [0, 2]
        assert saved["dataset"]["held_out"] > 0 and "--seeds 0 2" in saved["command"]
        agent = AlignIQLAgent.from_pretrained(member)  # strict, hash checked
        assert agent.act(torch.zeros(11)).shape == (3,)
        lines = [json.loads(x) for x in (member / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in lines if "loss/bc" in r] == [2, 4, 6] and any("eval/normalized_score" in r
                                                                              for r in lines)
        assert json.loads((member / "results.json").read_text())["normalized_score"] == 42.0
    assert sorted(c["seed"] for c in calls) == [0, 0, 2, 2]  # a curve point at step 3 and the final, per member
    summary = json.loads((group / "summary.json").read_text())
    assert summary["scores"] == {"0": 42.0, "2": 42.0} and summary["mean"] == 42.0 and summary["seeds"] == 2
    assert "mean ± sample std over 2 seeds: 42.0 ± 0.0" in (group / "summary.md").read_text()

    single = tmp_path / "single2"
    assert train.main([*COMMON, "--steps", "6", "--eval-every", "3", "--output-dir", str(single), "--seed", "2"]) == 0
    a, b = load_file(group / "seed2" / "model.safetensors"), load_file(single / "model.safetensors")
    for k in a:  # stacked (bmm) against plain (mm) kernels: float rounding only, over 6 Adam steps
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_seeds_resume_and_refuse_bad_lists(box_dataset, tmp_path, monkeypatch, capsys):
    install_fake_evaluation(monkeypatch)
    group = tmp_path / "g"
    args = [*COMMON, "--steps", "4", "--output-dir", str(group), "--seeds", "1", "3"]
    assert train.main(args) == 0
    with pytest.raises(SystemExit, match="already holds a training run"):
        train.main(args)
    assert train.main([*args, "--resume"]) == 0  # finished: resumes to the same end
    with pytest.raises(SystemExit):
        train.main([*COMMON, "--seeds", "1", "1"])
    assert "distinct seeds" in capsys.readouterr().err


def test_an_interrupted_group_resumes_to_what_an_uninterrupted_one_ends_with(box_dataset, tmp_path, monkeypatch):
    import signal

    from training import multi_seed

    install_fake_evaluation(monkeypatch)
    args = [*COMMON, "--steps", "6", "--save-every", "2"]
    full = tmp_path / "full"
    assert train.main([*args, "--output-dir", str(full), "--seeds", "1", "3"]) == 0

    step = multi_seed.MultiSeedTrainer.train_step

    def ctrl_c_at_step_3(self):
        logs = step(self)
        if self.step == 3:
            signal.raise_signal(signal.SIGINT)  # as a Ctrl-C: the group saves after this step and stops
        return logs

    monkeypatch.setattr(multi_seed.MultiSeedTrainer, "train_step", ctrl_c_at_step_3)
    part = tmp_path / "part"
    assert train.main([*args, "--output-dir", str(part), "--seeds", "1", "3"]) == 130
    assert not (part / "seed1" / "results.json").exists()
    monkeypatch.setattr(multi_seed.MultiSeedTrainer, "train_step", step)
    assert train.main([*args, "--output-dir", str(part), "--seeds", "1", "3", "--resume"]) == 0
    for seed in (1, 3):
        a = load_file(full / f"seed{seed}" / "model.safetensors")
        b = load_file(part / f"seed{seed}" / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), seed  # same process, same kernels: bit for bit
    assert json.loads((part / "summary.json").read_text())["seeds"] == 2
