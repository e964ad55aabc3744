import pytest
import torch

from aligniql.selection import (aligniql_hard_log_weights, aligniql_log_weights, idql_expectile_log_weights,
                                idql_log_weights, select, softmax_probabilities)

Q = torch.tensor([[1.0, 5.0, 2.9, -3.0], [0.0, 0.5, 10.0, 2.0]])
V = torch.tensor([3.0, 2.2])


def test_aligniql_picks_smallest_squared_gap():
    assert select(aligniql_log_weights(Q, V)).tolist() == [2, 3]  # |2.9-3| and |2-2.2| are smallest


def test_idql_picks_largest_q():
    assert select(idql_log_weights(Q)).tolist() == [1, 2]


def test_hard_with_negative_beta_is_greedy_and_positive_beta_is_not():
    assert select(aligniql_hard_log_weights(Q, torch.tensor([-0.5, -2.0]))).tolist() == [1, 2]
    assert select(aligniql_hard_log_weights(Q, torch.tensor([0.5, 2.0]))).tolist() == [3, 0]


def test_expectile_weights():
    w = idql_expectile_log_weights(Q, V, 0.7).exp()
    torch.testing.assert_close(w, torch.tensor([[0.3, 0.7, 0.3, 0.3], [0.3, 0.3, 0.7, 0.3]]))
    # Q = V exactly is "not above", as IDQL's where(Q - V > 0, tau, 1 - tau)
    tie = idql_expectile_log_weights(torch.tensor([[1.0, 1.0 + 1e-6]]), torch.tensor([1.0]), 0.7).exp()
    torch.testing.assert_close(tie, torch.tensor([[0.3, 0.7]]))


def test_low_temperature_softmax_equals_argmax():
    log_w = aligniql_log_weights(Q, V)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert torch.equal(select(log_w, selection="softmax", temperature=1e-4, generator=g), select(log_w))


def test_softmax_sampling_frequencies_match_probabilities():
    # the official sampler used p ∝ raw log-weight (inverting AlignIQL's preference); ours samples softmax
    log_w = torch.tensor([[0.0, -1.0, -4.0]]).expand(20000, 3)
    p = softmax_probabilities(log_w[:1])[0]
    assert p.sum().item() == pytest.approx(1.0)
    idx = select(log_w, selection="softmax", generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=3).float() / idx.numel()
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)
    assert freq[0] > freq[1] > freq[2]  # the candidate closest to V (log-weight 0) is the most likely


def test_unknown_selection():
    with pytest.raises(ValueError, match="selection must be 'argmax' or 'softmax'"):
        select(Q, selection="topk")


def test_aligniql_eta_scales_the_log_weight():
    expected = -2.5 * (Q - V.reshape(-1, 1)) ** 2
    assert torch.equal(aligniql_log_weights(Q, V, eta=2.5), expected)
    assert torch.equal(aligniql_log_weights(Q, V.reshape(-1, 1), 2.5), expected)
    assert not torch.equal(aligniql_log_weights(Q, V, eta=2.5), aligniql_log_weights(Q, V))
