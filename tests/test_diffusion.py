import math

import pytest
import torch

from aligniql.diffusion import add_noise, make_schedule, sample
from aligniql.networks import Denoiser


def test_vp_schedule_t5_pinned():
    # docs/algorithm.md §4.2
    s = make_schedule("vp", 5)
    assert s.betas == pytest.approx([0.195875, 0.458818, 0.635781, 0.754878, 0.835031], abs=1e-6)
    assert s.alphas == pytest.approx([0.804125, 0.541182, 0.364219, 0.245122, 0.164969], abs=1e-6)
    assert s.alpha_bars == pytest.approx([0.804125, 0.435178, 0.158500, 0.038852, 0.006409], abs=1e-6)


@pytest.mark.parametrize("name", ["vp", "cosine", "linear"])
def test_schedules_are_valid(name):
    s = make_schedule(name, 10)
    assert all(0 < b < 1 for b in s.betas)
    assert all(a > b for a, b in zip(s.alpha_bars, s.alpha_bars[1:]))


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown beta schedule 'sigmoid'"):
        make_schedule("sigmoid", 5)


def test_add_noise_matches_formula():
    s = make_schedule("vp", 5)
    a, eps, t = torch.rand(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 4])
    expected = torch.stack([math.sqrt(s.alpha_bars[i]) * a[k] + math.sqrt(1 - s.alpha_bars[i]) * eps[k]
                            for k, i in enumerate(t.tolist())])
    torch.testing.assert_close(add_noise(a, eps, t, s), expected)


class LinearEps(Denoiser):
    """A dummy denoiser with eps(x, t) = 0.3 (x + t) - 0.1, through the same split first layer sample() uses,
    so the reverse loop's arithmetic, its raw step index and its noise indexing are all pinned."""

    def split_input(self, obs):
        return torch.zeros(obs.shape[0], 1), torch.ones(1, 1), torch.ones(1, 1)

    def time_embedding(self, t):
        return t  # the step index as sample() passes it (raw 0..T-1, as in training: docs/algorithm.md §12.2.4)

    def trunk(self, h):
        return 0.3 * h - 0.1


def _reverse_by_hand(s, noise, clip):
    x = noise[0]
    for t in reversed(range(5)):  # the reverse update of docs/algorithm.md §4.4 written out by hand
        eps = 0.3 * (x + t) - 0.1
        x = (x - s.betas[t] / math.sqrt(1 - s.alpha_bars[t]) * eps) / math.sqrt(s.alphas[t])
        x = x + (math.sqrt(s.betas[t]) * noise[t] if t > 0 else 0.0)
        x = min(max(x, -1.0), 1.0) if clip else x
    return x


@pytest.mark.parametrize("clip", [False, True])
def test_sampler_pinned_with_dummy_denoiser(clip):
    s = make_schedule("vp", 5)
    den = LinearEps(obs_dim=2, act_dim=1, hidden_dim=8, num_blocks=1, time_dim=4)
    draws = [0.4, -0.3, 0.2, 0.5, -0.6]  # a different draw per step, none of them clipped away when clip=False
    out = sample(den, torch.zeros(1, 2), s, noise=torch.tensor(draws).reshape(5, 1, 1), clip=clip)
    expected = _reverse_by_hand(s, draws, clip)
    assert out.item() == pytest.approx(expected, abs=1e-5)
    if not clip:
        assert abs(expected) > 1  # so clipping at every step would have given another number
    else:
        assert abs(expected) <= 1


def test_fast_first_layer_equals_forward():
    # sample() projects the state once; it must equal the plain forward pass
    torch.manual_seed(0)
    den = Denoiser(obs_dim=5, act_dim=2, hidden_dim=16, num_blocks=2, time_dim=8).eval()
    obs, x, t = torch.randn(7, 5), torch.randn(7, 2), torch.full((7, 1), 3.0)
    obs_part, w_a, w_t = den.split_input(obs)
    fast = den.trunk(obs_part + x @ w_a.T + den.time_embedding(t) @ w_t.T)
    torch.testing.assert_close(fast, den(obs, x, t), rtol=1e-5, atol=1e-6)


def test_sampler_is_reproducible_and_clipped():
    den = Denoiser(obs_dim=3, act_dim=2, hidden_dim=16, num_blocks=1, time_dim=8).eval()
    obs = torch.randn(50, 3)
    s = make_schedule("vp", 5)
    a1 = sample(den, obs, s, generator=torch.Generator().manual_seed(1))
    a2 = sample(den, obs, s, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a1, a2) and a1.shape == (50, 2) and a1.abs().max() <= 1
