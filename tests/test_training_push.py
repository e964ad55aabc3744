"""Publishing: the model card and its model-index, and the upload through HfApi patched at the network seam."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, RepoUrl

from tests.training_fixtures import BOX_ID, TINY_ARGS, box_dataset, install_fake_evaluation, minari_root, single_thread  # noqa: F401
from training import push as push_mod
from training import train

SECRET = "hf_aligniqlTestSecretToken0123456789"
AGENT_FILES = {"config.json", "model.safetensors", "README.md", "train_config.json", "results.json", "metrics.jsonl"}


class FakeHub:
    """Records create_repo / upload_folder calls; ``fail`` makes every upload raise."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: Exception | None = None) -> None:
        self.created: list[dict] = []
        self.uploads: list[dict] = []
        hub = self

        def create_repo(self, repo_id, **kw):
            hub.created.append({"repo_id": repo_id, **kw})
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(self, *, repo_id, folder_path, **kw):
            if fail is not None:
                raise fail
            files = {p.name: p.read_text() if p.suffix in (".md", ".json") else p.stat().st_size
                     for p in Path(folder_path).iterdir()}  # the folder is temporary: read it now
            hub.uploads.append({"repo_id": repo_id, "files": files, **kw})

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(HfApi, "whoami", lambda self, *a, **kw: {"name": "me"})
        monkeypatch.setattr(push_mod.time, "sleep", lambda s: None)
        monkeypatch.setenv("HF_TOKEN", SECRET)


def train_run(out: Path, *extra: str) -> int:
    return train.main([*TINY_ARGS, "--dataset", BOX_ID, "--steps", "2", "--batch-size", "8", "--eval-episodes", "3",
                       "--output-dir", str(out), *extra])


@pytest.fixture
def run_dir(box_dataset, tmp_path, monkeypatch) -> Path:
    install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    assert train_run(out) == 0
    return out


def test_push_uploads_agent_files_with_model_index(run_dir, monkeypatch):
    hub = FakeHub(monkeypatch)
    assert push_mod.push(run_dir, "me/aligniql-hopper-test", private=True) == "me/aligniql-hopper-test"
    assert hub.created == [{"repo_id": "me/aligniql-hopper-test", "private": True, "exist_ok": True}]
    (upload,) = hub.uploads
    assert set(upload["files"]) == AGENT_FILES  # never the training state
    assert BOX_ID in upload["commit_message"]
    card = ModelCard(upload["files"]["README.md"])
    assert card.data.library_name == "aligniql" and card.data.datasets == [BOX_ID]
    assert {"reinforcement-learning", "offline-reinforcement-learning", "Hopper-v5"} <= set(card.data.tags)
    metrics = {r.metric_type: r for r in card.data.eval_results}
    assert metrics["mean_reward"].metric_value == "1.00 +/- 0.82"  # fake returns 0, 1, 2
    assert metrics["normalized_score"].metric_value == 42.0
    assert all(r.dataset_type == BOX_ID and r.task_type == "reinforcement-learning" for r in metrics.values())
    text = upload["files"]["README.md"]
    assert "model-index" in text and 'AlignIQLAgent.from_pretrained("me/aligniql-hopper-test")' in text
    assert "python training/train.py " in text and "| expectile | 0.7 |" in text and "| minari |" in text
    assert "held out (not trained on)" in text and "training batch / held-out: behaviour cloning" in text


def test_default_repo_id_uses_the_token_user(run_dir, monkeypatch):
    hub = FakeHub(monkeypatch)
    assert push_mod.push(run_dir) == "me/aligniql-hopper-tiny-v0"
    assert hub.uploads[0]["repo_id"] == "me/aligniql-hopper-tiny-v0"


def test_hand_edited_readme_is_uploaded_as_is(run_dir, monkeypatch):
    hub = FakeHub(monkeypatch)
    (run_dir / "README.md").write_text("---\nlibrary_name: aligniql\n---\nmy own card\n")
    push_mod.push(run_dir, "me/x")
    assert hub.uploads[0]["files"]["README.md"].endswith("my own card\n")


def test_train_push_flag(box_dataset, tmp_path, monkeypatch):
    install_fake_evaluation(monkeypatch)
    hub = FakeHub(monkeypatch)
    assert train_run(tmp_path / "run", "--push", "--repo-id", "org/agent", "--private") == 0
    assert hub.created[0]["private"] is True and set(hub.uploads[0]["files"]) == AGENT_FILES


def test_failed_push_keeps_checkpoint_and_prints_retry(box_dataset, tmp_path, monkeypatch, capsys):
    install_fake_evaluation(monkeypatch)
    FakeHub(monkeypatch, fail=RuntimeError("connection reset"))
    out = tmp_path / "run"
    assert train_run(out, "--push", "--repo-id", "org/agent") == 1
    err = capsys.readouterr().err
    assert "connection reset" in err and f"Retry with: python training/push.py {out} --repo-id org/agent" in err
    assert AGENT_FILES <= {p.name for p in out.iterdir()} and (out / "training_state" / "latest.json").is_file()
    hub = FakeHub(monkeypatch)  # the retry command works once the network is back
    assert push_mod.main([str(out), "--repo-id", "org/agent"]) == 0 and len(hub.uploads) == 1


def test_the_token_is_never_printed_or_written(box_dataset, tmp_path, monkeypatch, capsys, caplog):
    install_fake_evaluation(monkeypatch)
    FakeHub(monkeypatch, fail=RuntimeError("connection reset"))  # sets HF_TOKEN to SECRET
    out = tmp_path / "run"
    assert train_run(out, "--push", "--repo-id", "org/agent") == 1
    assert push_mod.main([str(out), "--repo-id", "org/agent"]) == 1
    seen = capsys.readouterr()
    assert SECRET not in seen.out + seen.err + caplog.text
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_push_checks_the_folder_repo_id_and_token_before_the_network(run_dir, monkeypatch, capsys):
    hub = FakeHub(monkeypatch)
    with pytest.raises(ValueError, match="'not a repo' is not a Hub repo id"):
        push_mod.push(run_dir, "not a repo")
    with pytest.raises(SystemExit):
        push_mod.main([str(run_dir), "--repo-id", "not a repo"])
    assert "is not a Hub repo id" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # and train.py refuses it before loading anything
        train.main(["--dataset", BOX_ID, "--push", "--repo-id", "bad id!"])
    assert "--repo-id) must be a Hub repo id" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(push_mod, "has_token", lambda token=None: bool(token))  # no saved login either
    sleeps: list[float] = []
    monkeypatch.setattr(push_mod.time, "sleep", sleeps.append)
    with pytest.raises(push_mod.PushError, match="no Hugging Face token found"):
        push_mod.push(run_dir, "org/agent")
    assert sleeps == [] and hub.created == [] and hub.uploads == []


def test_unfinished_run_is_not_pushed_unless_asked(run_dir, monkeypatch, capsys):
    hub = FakeHub(monkeypatch)
    (run_dir / "results.json").unlink()  # e.g. stopped before its final evaluation
    with pytest.raises(FileNotFoundError, match=r"has not finished.*--resume.*--allow-unfinished"):
        push_mod.push(run_dir, "org/agent")
    with pytest.raises(SystemExit):
        push_mod.main([str(run_dir), "--repo-id", "org/agent"])
    assert "has not finished" in capsys.readouterr().err and hub.uploads == []
    assert push_mod.main([str(run_dir), "--repo-id", "org/agent", "--allow-unfinished"]) == 0
    assert len(hub.uploads) == 1


def test_retry_hint_is_a_command_that_runs(run_dir, monkeypatch, capsys):
    import shlex

    FakeHub(monkeypatch, fail=RuntimeError("connection reset"))
    odd = run_dir.rename(run_dir.parent / "my run (1)")
    assert not push_mod.push_with_retry_hint(odd, "org/agent", private=True)
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("Retry with: "))
    argv = shlex.split(line.removeprefix("Retry with: "))
    assert argv == ["python", "training/push.py", str(odd), "--repo-id", "org/agent", "--private"]


def test_offline_push_fails_at_once_without_retries(run_dir, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    sleeps: list[float] = []
    monkeypatch.setattr(push_mod.time, "sleep", sleeps.append)
    with pytest.raises(push_mod.PushError, match="Offline"):
        push_mod.push(run_dir, "org/agent")
    assert sleeps == []


def test_push_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        push_mod.push(tmp_path, "org/agent")


def test_final_evaluation_records_a_replay_and_the_card_shows_it(box_dataset, tmp_path, monkeypatch):
    calls = install_fake_evaluation(monkeypatch)
    out = tmp_path / "run"
    assert train_run(out) == 0
    assert calls[-1]["record_video"] == out / "replay.mp4"  # only the final evaluation records
    assert all(c["record_video"] is None for c in calls[:-1])
    assert "<video" not in (out / "README.md").read_text()  # the fake evaluator rendered nothing
    (out / "replay.mp4").write_bytes(b"\x00" * 64)
    hub = FakeHub(monkeypatch)
    push_mod.push(out, "me/aligniql-hopper-test")
    (upload,) = hub.uploads
    assert "replay.mp4" in upload["files"]
    assert 'src="https://huggingface.co/me/aligniql-hopper-test/resolve/main/replay.mp4"' in \
        upload["files"]["README.md"]
    calls.clear()
    assert train_run(tmp_path / "novideo", "--no-video") == 0
    assert calls[-1]["record_video"] is None


def test_card_before_a_push_names_a_placeholder_user_and_plays_the_local_video(tmp_path):
    from training.push import _needs_robotics, render_card

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"dataset_id": "bench/hopper/medium-v0", "env_id": "Hopper-v5",
                                                     "num_diffusion_steps": 5, "num_samples": 64,
                                                     "extraction": "aligniql", "selection": "argmax"}))
    (folder / "replay.mp4").write_bytes(b"")
    text = str(render_card(folder))
    assert 'from_pretrained("YOUR-HF-USER/aligniql-hopper-medium-v0")  # or the local folder' in text
    assert 'src="replay.mp4"' in text and "gymnasium_robotics" not in text
    pushed = str(render_card(folder, "me/agent"))
    assert 'from_pretrained("me/agent")\n' in pushed and "huggingface.co/me/agent/resolve/main/replay.mp4" in pushed
    assert not _needs_robotics("Hopper-v5") and not _needs_robotics("Humanoid-v5") and not _needs_robotics(None)
    assert _needs_robotics("PointMaze_UMaze-v3")


def test_card_of_an_argmax_q_agent_says_where_the_papers_rule_is(tmp_path):
    from training.push import render_card

    folder = tmp_path / "run"
    folder.mkdir()
    config = {"dataset_id": "bench/hopper/medium-v0", "env_id": "Hopper-v5", "num_diffusion_steps": 5,
              "num_samples": 64, "extraction": "idql", "selection": "argmax"}
    (folder / "config.json").write_text(json.dumps(config))
    text = str(render_card(folder))
    assert "picking one with the `idql` rule (argmax). That rule is argmax Q" in text
    assert 'agent.act(obs, extraction="aligniql")' in text
    (folder / "config.json").write_text(json.dumps(config | {"extraction": "aligniql"}))
    assert "That rule is argmax Q" not in str(render_card(folder))
    (folder / "config.json").write_text(json.dumps(config | {"selection": "softmax", "temperature": 1 / 3}))
    text = str(render_card(folder))
    assert "IQL's extracted policy" in text and "temperature\n0.333" in text and "That rule is argmax Q" not in text


def test_card_says_when_the_behaviour_model_was_advantage_weighted(tmp_path):
    from training.config import TrainConfig
    from training.push import render_card

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"dataset_id": "bench/hopper/medium-v0", "env_id": "Hopper-v5",
                                                     "num_diffusion_steps": 5, "num_samples": 64,
                                                     "extraction": "idql", "selection": "argmax"}))
    for weights, said in (("awr", True), ("none", False)):
        config = TrainConfig.create(dataset="bench/hopper/medium-v0", behavior_weights=weights)
        config = config.resolved("bench/hopper/medium-v0", "Hopper-v5")
        (folder / "train_config.json").write_text(json.dumps({"format": 2, "config": config.to_dict()}))
        text = str(render_card(folder))
        assert ("advantage-weighted denoising" in text) is said
        assert f"| behavior_weights | {weights} |" in text
