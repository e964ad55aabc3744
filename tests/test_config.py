import json

import pytest

from aligniql import AlignIQLConfig
from aligniql.config import FORMAT_VERSION


def test_defaults_are_the_papers():
    c = AlignIQLConfig(obs_dim=11, act_dim=3)
    assert (c.hidden_dim, c.denoiser_hidden_dim, c.denoiser_blocks, c.time_dim) == (256, 256, 3, 128)
    assert (c.num_diffusion_steps, c.beta_schedule, c.num_samples) == (5, "vp", 64)
    assert (c.extraction, c.selection, c.eta, c.expectile, c.discount) == ("aligniql", "argmax", 1.0, 0.7, 0.99)
    assert c.denoiser_dropout == 0.1 and c.clip_sampler and c.format_version == FORMAT_VERSION
    assert c.bounds() == ((-1.0,) * 3, (1.0,) * 3)


def test_frozen():
    c = AlignIQLConfig(obs_dim=11, act_dim=3)
    with pytest.raises(AttributeError):
        c.obs_dim = 4  # type: ignore[misc]


def test_json_round_trip(tmp_path):
    c = AlignIQLConfig(obs_dim=6, act_dim=2, obs_keys=("observation", "desired_goal"), obs_key_dims=(4, 2),
                       action_low=(-2.0, -1.0), action_high=(2.0, 0.5), reward_transform="antmaze",
                       reward_shift=-1.0, env_id="PointMaze_UMaze-v3")
    c.to_json(tmp_path / "config.json")
    assert AlignIQLConfig.from_json(tmp_path / "config.json") == c
    assert json.loads((tmp_path / "config.json").read_text())["obs_keys"] == ["observation", "desired_goal"]


def test_unknown_and_missing_keys(tmp_path):
    d = AlignIQLConfig(obs_dim=11, act_dim=3).to_dict()
    with pytest.raises(ValueError, match=r"unknown keys \['hiden_dim'\]"):
        AlignIQLConfig.from_dict({**d, "hiden_dim": 3})
    del d["act_dim"]
    with pytest.raises(ValueError, match=r"missing required keys \['act_dim'\]"):
        AlignIQLConfig.from_dict(d)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AlignIQLConfig.from_json(tmp_path / "bad.json")


@pytest.mark.parametrize("kwargs, match", [
    (dict(obs_dim=0), "obs_dim must be a positive int"),
    (dict(extraction="awr"), "extraction must be one of"),
    (dict(selection="greedy"), "selection must be one of"),
    (dict(extraction="aligniql_hard"), "needs use_multipliers=True"),
    (dict(extraction="gaussian"), "needs use_gaussian_actor=True"),
    (dict(extraction="idql_expectile"), "first such candidate"),
    (dict(action_low=(-1.0,)), "action_low must have act_dim=3"),
    (dict(action_low=(1.0, 1.0, 1.0)), "must be < action_high"),
    (dict(obs_keys=("a",), obs_key_dims=(5,)), "sum to 5, not obs_dim=11"),
    (dict(expectile=1.0), "expectile must be in"),
    (dict(normalize_obs="false"), "normalize_obs must be true or false"),
    (dict(discount=5.0), r"discount must be in \(0, 1\]"),
    (dict(ddpm_temperature=-1.0), "ddpm_temperature must be >= 0"),
    (dict(reward_scale=float("nan")), "reward_scale must be a finite number"),
    (dict(time_dim=2.0), "time_dim must be a positive even int"),
    (dict(eta=float("inf")), "eta must be a finite number"),
    (dict(format_version=FORMAT_VERSION + 1), "upgrade aligniql"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlignIQLConfig(**{"obs_dim": 11, "act_dim": 3, **kwargs})
