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
