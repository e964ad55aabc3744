"""The public episode builder gives prepare()'s transitions with their boundaries (the d3rlpy baseline uses it)."""

from __future__ import annotations

import numpy as np

from tests.training_fixtures import BOX_ID, box_dataset, minari_root  # noqa: F401
from training.datasets import episodes, from_unit_actions, load_dataset, prepare, to_unit_actions


def test_episodes_match_the_transitions(box_dataset):
    ds = load_dataset(BOX_ID, download=False)
    data = prepare(ds)
    eps = list(episodes(ds, data))
    t = data.transitions
    assert [e.terminated for e in eps] == [True, False, False, False]
    np.testing.assert_allclose(np.concatenate([e.observations[:-1] for e in eps]), t.obs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([e.observations[1:] for e in eps]), t.next_obs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([e.actions for e in eps]), t.actions.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([e.rewards for e in eps]), t.rewards.numpy(), rtol=1e-5)


def test_action_scaling_round_trips_inside_the_bounds():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    a = np.array([[-2.0, 0.5], [1.0, 1.0]])
    unit = to_unit_actions(a, low, high)
    assert np.abs(unit).max() < 1
    np.testing.assert_allclose(from_unit_actions(unit, low, high), a, atol=1e-4)
    assert (from_unit_actions(np.array([[5.0, -5.0]]), low, high) == [[2.0, 0.0]]).all()
