"""Initialisation as in jaxrl5: flax's lecun_normal inside the ResNet blocks, xavier_uniform elsewhere."""

from __future__ import annotations

import math

import torch

from aligniql.networks import Denoiser


def test_block_layers_are_flax_lecun_normal():
    torch.manual_seed(0)
    den = Denoiser(obs_dim=11, act_dim=3, hidden_dim=256, num_blocks=3, time_dim=128)
    for block in den.blocks:
        for layer in (block.fc1, block.fc2):
            w, fan_in = layer.weight.detach(), layer.in_features
            # truncated at two (pre-scaling) standard deviations, rescaled to unit variance * 1/fan_in
            assert abs(w.std().item() * math.sqrt(fan_in) - 1) < 0.02  # was 1.14 when nothing was cut
            assert w.abs().max().item() <= 2 / 0.87962566103423978 / math.sqrt(fan_in) + 1e-7
            assert not layer.bias.any()


def test_time_mlp_is_xavier_uniform_like_jaxrl5s_mlp():
    torch.manual_seed(0)
    den = Denoiser(obs_dim=11, act_dim=3, time_dim=128)
    for layer in (den.time_mlp[0], den.time_mlp[2]):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        w = layer.weight.detach()
        assert w.abs().max().item() <= bound and w.abs().max().item() > 0.95 * bound  # uniform, not normal
        assert abs(w.std().item() / (bound / math.sqrt(3)) - 1) < 0.03


def test_gaussian_actor_log_std_modes_stay_in_bounds_and_sigmoid_keeps_its_gradient():
    import pytest

    from aligniql.networks import GaussianActor

    obs = torch.randn(4, 5)
    clamp, sigmoid = GaussianActor(5, 3, 16), GaussianActor(5, 3, 16, log_std="sigmoid")
    assert torch.equal(clamp(obs)[1], torch.zeros(4, 3))  # the IQL authors' start: std 1
    torch.testing.assert_close(sigmoid(obs)[1], torch.full((4, 3), -1.5))  # d3rlpy's: -5 + 7 / 2
    for actor in (clamp, sigmoid):
        with torch.no_grad():
            actor.log_std.copy_(torch.tensor([-40.0, 0.3, 40.0]))
        mean, log_std = actor(obs)
        assert mean.abs().max() < 1 and log_std.min() >= -5.0 and log_std.max() <= 2.0
    sigmoid.log_std.data.fill_(4.0)  # near the top bound: clamp's gradient past it is 0, sigmoid's is not
    sigmoid(obs)[1].sum().backward()
    assert (sigmoid.log_std.grad > 0).all()
    with pytest.raises(ValueError, match="log_std must be one of"):
        GaussianActor(5, 3, 16, log_std="softplus")
