"""Precision: ``auto`` follows the hardware, and bf16 keeps every fp32 contract (shapes, bounds, strict
save/load, bit-exact resume)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from aligniql import AlignIQLAgent
from aligniql.precision import cpu_features, cpu_name, emulation_warning, native_bf16, resolve_precision
from tests.conftest import tiny_agent
from training import checkpoint, train
from training.config import TrainConfig
from training.datasets import Transitions
from training.trainer import Trainer, TrainerConfig


def cpu_with(monkeypatch, *, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("avx512_bf16,amx,expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                      (False, True, "bf16"), (True, True, "bf16")])
def test_auto_is_bf16_exactly_where_the_cpu_has_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    cpu_with(monkeypatch, avx512_bf16=avx512_bf16, amx=amx)
    assert native_bf16("cpu") == (expected == "bf16")
    assert resolve_precision("auto", "cpu") == expected
    assert tiny_agent().set_precision("auto").precision == expected
    config = TrainConfig.create(dataset="bench/hopper/medium-v0", precision="auto", device="cpu")
    assert config.resolved("bench/hopper/medium-v0").optim.precision == expected
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("native", [False, True])
def test_explicit_bf16_warns_exactly_where_it_would_be_emulated(monkeypatch, caplog, native):
    # an AVX2-only CPU runs bf16 matmuls far slower than fp32: asking for bf16 there must say so, not just be slow
    cpu_with(monkeypatch, avx512_bf16=native, amx=False)
    assert (emulation_warning("bf16", "cpu") is None) == native
    assert emulation_warning("fp32", "cpu") is None and emulation_warning("auto", "cpu") is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_agent().set_precision("bf16")
        tiny_agent().set_precision("auto")
        tiny_agent().set_precision("fp32")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if native:
        assert messages == []
    else:
        assert len(messages) == 1 and "emulated" in messages[0] and "'auto'" in messages[0]
    monkeypatch.setattr(logging.getLogger("training"), "propagate", True)  # the CLI's logging setup turns it off
    caplog.set_level(logging.WARNING, logger="training.train")
    train.warn_if_emulated("bf16", torch.device("cpu"))
    assert ("emulated" in caplog.text) != native


def test_cpu_name_is_the_model_name():
    name = cpu_name()
    assert isinstance(name, str) and name and "\n" not in name


def test_cpu_features_name_what_torch_sees():
    features = cpu_features()
    assert {"avx512_bf16", "amx_tile"} <= set(features) and all(isinstance(v, bool) for v in features.values())


def test_bf16_acting_keeps_shapes_bounds_and_save_load(tmp_path):
    agent = tiny_agent(action_low=(-0.5, -1, -2), action_high=(0.5, 1, 2)).set_precision("bf16")
    obs = np.random.default_rng(0).normal(size=(5, 11))
    out = agent.act(obs, generator=0)
    assert out.shape == (5, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    assert (out >= agent.action_low.numpy()).all() and (out <= agent.action_high.numpy()).all()
    assert agent.act(obs[0], generator=0).shape == (3,)
    cand = agent.candidates(obs, generator=0)
    assert cand.q.dtype == torch.float32 and cand.actions.shape == (5, agent.config.num_samples, 3)
    loaded = AlignIQLAgent.from_pretrained(agent.save_pretrained(tmp_path / "a"))
    assert loaded.precision == "fp32"  # a runtime choice, not part of the checkpoint
    np.testing.assert_array_equal(loaded.set_precision("bf16").act(obs, generator=0), out)


def _bf16_trainer(seed: int = 0) -> Trainer:
    g = torch.Generator().manual_seed(0)
    data = Transitions(torch.randn(200, 11, generator=g), torch.rand(200, 3, generator=g) * 2 - 1,
                       torch.rand(200, generator=g), torch.randn(200, 11, generator=g), torch.ones(200))
    torch.manual_seed(seed)
    agent = tiny_agent(seed=seed, use_multipliers=True, use_gaussian_actor=True)
    return Trainer(agent, data, TrainerConfig(steps=20, batch_size=32, precision="bf16"), seed=seed)


def test_bf16_training_resumes_bit_for_bit(tmp_path):
    full = _bf16_trainer()
    for _ in range(12):
        full.train_step()
    first = _bf16_trainer()
    for _ in range(6):
        first.train_step()
    checkpoint.save_state(first.state_dict(), tmp_path)
    resumed = _bf16_trainer(seed=9)
    resumed.load_state_dict(checkpoint.load_state(tmp_path)[0])
    for _ in range(6):
        resumed.train_step()
    a, b = full.state_dict(), resumed.state_dict()
    for part in ("agent", "online_denoiser", "online_critic"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert all(p.dtype == torch.float32 for p in full.denoiser.parameters())  # fp32 master weights
