"""save_pretrained / from_pretrained: local dirs, the Hugging Face cache offline, strict loading."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import aligniql
from aligniql import AlignIQLAgent
from tests.conftest import tiny_agent

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def saved(tmp_path):
    agent = tiny_agent(use_multipliers=True, use_gaussian_actor=True, action_low=(-0.5, -1, -2),
                       action_high=(0.5, 1, 2))
    agent.set_normalization(np.arange(11.0), np.linspace(0.5, 2, 11))
    return agent, agent.save_pretrained(tmp_path / "agent")


def _assert_same(a, b, obs=np.random.default_rng(0).normal(size=(4, 11))):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.config == b.config
    for rule in ("aligniql", "idql", "aligniql_hard", "gaussian"):
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        assert np.array_equal(a.act(obs, extraction=rule, generator=g()), b.act(obs, extraction=rule, generator=g()))


def test_round_trip_local_dir(saved):
    agent, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = AlignIQLAgent.from_pretrained(path)
    assert not loaded.training and loaded.device.type == "cpu"
    _assert_same(agent, loaded)
    assert torch.equal(loaded.obs_mean, torch.arange(11.0))


def test_checkpoint_is_self_contained(saved):
    _, path = saved
    keys = load_file(path / "model.safetensors").keys()
    for needed in ("obs_mean", "obs_std", "action_low", "action_high", "denoiser.output.weight",
                   "critic.q1.0.weight", "value.net.0.weight", "beta_net.net.1.weight", "actor.log_std"):
        assert needed in keys


def test_from_hf_cache_offline(saved, tmp_path, monkeypatch):
    agent, path = saved
    cache = tmp_path / "hf-cache"
    repo = cache / "models--org--aligniql-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(path, repo / "snapshots" / COMMIT)
    import huggingface_hub.constants
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # set by conftest before huggingface_hub was imported
    loaded = AlignIQLAgent.from_pretrained("org/aligniql-test", cache_dir=cache)
    _assert_same(agent, loaded)
    # also through the HF_HUB_CACHE default location
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _assert_same(agent, AlignIQLAgent.from_pretrained("org/aligniql-test", local_files_only=True,
                                                      cache_dir=cache))


def test_missing_repo_offline_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'org/not-there'.*not cached"):
        AlignIQLAgent.from_pretrained("org/not-there", cache_dir=tmp_path)


def test_mistyped_local_path_says_no_such_directory_either(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "runs/my-agent" is a valid repo id too
    with pytest.raises(FileNotFoundError, match=r"not cached.*no local directory '.*runs/my-agent' either"):
        AlignIQLAgent.from_pretrained("runs/my-agent", cache_dir=tmp_path / "cache")


def test_not_a_dir_nor_repo_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory nor a Hugging Face repo id"):
        AlignIQLAgent.from_pretrained(str(tmp_path / "a" / "b" / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        AlignIQLAgent.from_pretrained(tmp_path / "empty")


def _edit_weights(path, fn):
    """Rewrite the weights and the hash that config.json records for them, as a consistent writer would: the
    strict checks behind the hash are tested on their own."""
    tensors = load_file(path / "model.safetensors")
    fn(tensors)
    save_file(tensors, path / "model.safetensors")
    cfg = json.loads((path / "config.json").read_text())
    cfg["weights_sha256"] = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(cfg))


def _damage(path, offset_from_end=4096, length=64):
    """Zero bytes inside the tensor data, leaving the safetensors header (names, shapes, dtypes) intact."""
    data = bytearray((path / "model.safetensors").read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    start = len(data) - offset_from_end
    assert start > header and any(data[start:start + length])
    data[start:start + length] = bytes(length)
    (path / "model.safetensors").write_bytes(bytes(data))


def test_config_records_the_weights_hash_and_the_version(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["aligniql_version"] == aligniql.__version__
    assert cfg["weights_sha256"] == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_damaged_weights_are_refused_naming_the_file(saved):
    _, path = saved
    _damage(path)
    load_file(path / "model.safetensors")  # still a valid safetensors file: only the hash can tell
    with pytest.raises(ValueError, match=r"model.safetensors is damaged: its sha256 [0-9a-f]{64} differs from "
                                         r"[0-9a-f]{64}, recorded in .*config.json.*download it again"):
        AlignIQLAgent.from_pretrained(path)


def test_damaged_weights_in_the_hf_cache_are_refused(saved, tmp_path):
    _, path = saved
    repo = tmp_path / "hf-cache" / "models--org--damaged"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(path, repo / "snapshots" / COMMIT)
    _damage(repo / "snapshots" / COMMIT)
    with pytest.raises(ValueError, match="models--org--damaged.*is damaged"):
        AlignIQLAgent.from_pretrained("org/damaged", cache_dir=tmp_path / "hf-cache")


def test_checkpoints_without_a_hash_still_load_with_a_note(saved, caplog):
    agent, path = saved
    cfg = json.loads((path / "config.json").read_text())
    del cfg["weights_sha256"], cfg["aligniql_version"]
    (path / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.INFO, logger="aligniql.hub"):
        loaded = AlignIQLAgent.from_pretrained(path)
    assert "not verified" in caplog.text and "model.safetensors" in caplog.text
    _assert_same(agent, loaded)


def test_strict_missing_tensor(saved):
    _, path = saved
    _edit_weights(path, lambda t: t.pop("obs_std"))
    with pytest.raises(ValueError, match=r"missing tensors \['obs_std'\]"):
        AlignIQLAgent.from_pretrained(path)


def test_strict_unexpected_tensor(saved):
    _, path = saved
    _edit_weights(path, lambda t: t.update(extra=torch.zeros(1)))
    with pytest.raises(ValueError, match=r"unexpected tensors \['extra'\]"):
        AlignIQLAgent.from_pretrained(path)


def test_strict_mis_shaped_tensor(saved):
    _, path = saved
    _edit_weights(path, lambda t: t.update({"value.net.5.bias": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"value.net.5.bias: expected \(1,\), found \(2,\)"):
        AlignIQLAgent.from_pretrained(path)


def test_strict_mis_typed_tensor(saved):
    _, path = saved
    _edit_weights(path, lambda t: t.update({"critic.q1.0.weight": t["critic.q1.0.weight"].half()}))
    with pytest.raises(ValueError, match=r"another dtype \[critic.q1.0.weight: expected torch.float32, found "
                                         r"torch.float16\]"):
        AlignIQLAgent.from_pretrained(path)


def test_config_without_multipliers_but_weights_with_them(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["use_multipliers"] = False
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unexpected tensors.*alpha_net"):
        AlignIQLAgent.from_pretrained(path)


def test_bad_stats_and_bounds_rejected(saved):
    _, path = saved
    _edit_weights(path, lambda t: t["obs_std"].fill_(float("inf")))
    with pytest.raises(ValueError, match="normalization statistics are not finite"):
        AlignIQLAgent.from_pretrained(path)
    agent, path2 = tiny_agent(), path.parent / "b"
    agent.save_pretrained(path2)
    _edit_weights(path2, lambda t: t["action_high"].fill_(3.0))
    with pytest.raises(ValueError, match="disagree with config.json"):
        AlignIQLAgent.from_pretrained(path2)


def test_unknown_config_key(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["learning_rate"] = 1e-3
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        AlignIQLAgent.from_pretrained(path)


def test_save_is_atomic(saved, monkeypatch):
    agent, path = saved
    before = (path / "model.safetensors").read_bytes()
    import aligniql.hub

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(aligniql.hub, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        agent.save_pretrained(path)
    assert (path / "model.safetensors").read_bytes() == before
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]


def test_saved_files_reach_the_disk_before_the_rename(saved, monkeypatch):
    import os

    agent, path = saved
    events = []
    real_fsync, real_replace, real_open = os.fsync, os.replace, os.open
    opened = {}

    def track_open(p, flags, *a, **k):
        fd = real_open(p, flags, *a, **k)
        opened[fd] = os.fspath(p)
        return fd

    monkeypatch.setattr(os, "open", track_open)
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", opened.get(fd))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", os.fspath(b))) or real_replace(a, b))
    agent.save_pretrained(path)
    for name in ("model.safetensors", "config.json"):
        final = str(path / name)
        i = events.index(("replace", final))
        # the temp file's data is flushed before it takes the final name, the directory entry after
        assert events[i - 1][0] == "fsync" and Path(events[i - 1][1]).name.startswith(f".{name}.")
        assert events[i + 1] == ("fsync", str(path))


@pytest.mark.parametrize("device, match", [("tpu", "device must be"), ("cuda:99", "CUDA")])
def test_bad_device(saved, device, match):
    _, path = saved
    with pytest.raises((ValueError, RuntimeError), match=match):
        AlignIQLAgent.from_pretrained(path, device=device)


def test_device_auto(saved):
    _, path = saved
    agent = AlignIQLAgent.from_pretrained(path, device="auto")
    assert agent.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_saved_files_follow_the_umask_not_private(saved):
    import os
    import stat

    _, path = saved
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o666 & ~mask


def test_revision_picks_its_snapshot_from_the_hf_cache(tmp_path):
    a, b = tiny_agent(seed=0), tiny_agent(seed=1, action_low=(-2, -2, -2), action_high=(2, 2, 2))
    commit_a, commit_b = "a" * 40, "b" * 40
    repo = tmp_path / "hf-cache" / "models--org--x"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit_a)
    a.save_pretrained(repo / "snapshots" / commit_a)
    b.save_pretrained(repo / "snapshots" / commit_b)
    def same_weights(x, y):
        return all(torch.equal(v, y.state_dict()[k]) for k, v in x.state_dict().items())

    assert not same_weights(a, b)
    default = AlignIQLAgent.from_pretrained("org/x", cache_dir=tmp_path / "hf-cache")
    pinned = AlignIQLAgent.from_pretrained("org/x", revision=commit_b, cache_dir=tmp_path / "hf-cache")
    assert default.config == a.config and same_weights(default, a)
    assert pinned.config == b.config and same_weights(pinned, b)


def test_hub_arguments_reach_hf_hub_download(saved, tmp_path, monkeypatch):
    import huggingface_hub

    _, path = saved
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        return str(path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    AlignIQLAgent.from_pretrained("org/private", revision="v1.2", cache_dir=tmp_path / "c", token="hf_secret",
                                  local_files_only=True)
    assert [(r, f) for r, f, _ in calls] == [("org/private", "config.json"), ("org/private", "model.safetensors")]
    for _, _, kwargs in calls:
        assert kwargs["revision"] == "v1.2" and kwargs["token"] == "hf_secret"
        assert kwargs["local_files_only"] is True and str(kwargs["cache_dir"]) == str(tmp_path / "c")


def test_truncated_weights_without_a_hash_are_refused_by_the_reader(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    del cfg["weights_sha256"]
    (path / "config.json").write_text(json.dumps(cfg))
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        AlignIQLAgent.from_pretrained(path)
