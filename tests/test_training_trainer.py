"""Losses, one training step (order, optimizers, EMA/Polyak), and exact resume from a training state."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from aligniql import AlignIQLAgent, AlignIQLConfig
from tests.conftest import tiny_config, with_unit_statistics
from tests.training_fixtures import single_thread  # noqa: F401
from training import checkpoint, losses
from training.datasets import Transitions
from training.trainer import Trainer, TrainerConfig

TINY = {"hidden_dim": 32, "denoiser_hidden_dim": 32, "denoiser_blocks": 1, "time_dim": 8, "num_samples": 4}


def random_data(n: int = 300, obs_dim: int = 11, act_dim: int = 3) -> Transitions:
    g = torch.Generator().manual_seed(0)
    return Transitions(torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
                       torch.rand(n, generator=g), torch.randn(n, obs_dim, generator=g),
                       (torch.rand(n, generator=g) > 0.05).float())


def make_trainer(steps: int = 20, seed: int = 0, **config) -> Trainer:
    torch.manual_seed(seed)
    agent = with_unit_statistics(AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, **{**TINY, **config})))
    return Trainer(agent, random_data(), TrainerConfig(steps=steps, batch_size=32), seed=seed)


def test_expectile_and_value_losses():
    u = torch.tensor([-2.0, 1.0])
    torch.testing.assert_close(losses.expectile_loss(u, 0.7), torch.tensor([0.3 * 4, 0.7 * 1]))
    # asymmetric: Q above V weighs tau (0.9), so a loss on v - q (weight 0.1) would fail
    assert losses.value_loss(torch.tensor([1.0]), torch.tensor([0.0], requires_grad=True), 0.9).item() == \
        pytest.approx(0.9)
    assert losses.value_loss(torch.tensor([0.0]), torch.tensor([2.0], requires_grad=True), 0.9).item() == \
        pytest.approx(0.1 * 4)
    # twin errors -1 and +2 (q1 alone would give 0.5 or 1, the sum over the twin 5)
    q1, q2, y = torch.tensor([1.0, 2.0]), torch.tensor([4.0, 2.0]), torch.tensor([2.0, 2.0])
    assert losses.q_loss(q1, q2, y).item() == pytest.approx(0.5 * (1 + 4 + 0 + 0) / 2)
    assert losses.td_target(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([5.0]), 0.99).item() == 1.0
    # a live transition: 1 + 0.5 * 1 * 5 (without the discount it would be 6)
    assert losses.td_target(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([5.0]), 0.5).item() == 3.5
    assert losses.denoising_loss(torch.ones(4, 3), torch.zeros(4, 3)).item() == 3.0


def test_policy_weights_and_log_prob():
    q, v = torch.tensor([0.0, 10.0, -1.0]), torch.zeros(3)
    torch.testing.assert_close(losses.awr_weights(q, v, 3.0), torch.tensor([1.0, 100.0, math.exp(-3.0)]))
    torch.testing.assert_close(losses.aligniql_weights(q, v, 1.0), torch.exp(-q.square()))
    mean, log_std, a = torch.randn(5, 3), torch.randn(5, 3) * 0.3, torch.randn(5, 3)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(a).sum(-1)
    torch.testing.assert_close(losses.gaussian_log_prob(mean, log_std, a), expected)


def test_multiplier_losses_match_formula_and_reach_only_their_net():
    alpha = torch.tensor([0.1, -0.2], requires_grad=True)
    beta = torch.tensor([-0.5, 0.3], requires_grad=True)
    alpha_old, beta_old = torch.tensor([0.4, 0.7]), torch.tensor([0.2, -0.9])  # distinct: a mix-up shows
    q, v = torch.tensor([2.0, 1.0]), torch.tensor([1.5, 0.5])
    l_alpha, l_beta = losses.multiplier_losses(alpha, beta, alpha_old, beta_old, q, v)
    a, b = alpha.detach(), beta.detach()
    assert l_alpha.item() == pytest.approx((torch.exp(-a - beta_old * q - 1).mean() + a.mean()).item())
    assert l_beta.item() == pytest.approx((torch.exp(-alpha_old - b * q - 1).mean() + (v * b).mean()).item())
    l_alpha.backward()
    assert alpha.grad is not None and beta.grad is None
    l_beta.backward()
    assert beta.grad is not None
    # d L_beta / d beta = mean(-q exp(-alpha_old - beta q - 1)) + mean(v), per element / B
    torch.testing.assert_close(beta.grad, (-q * torch.exp(-alpha_old - b * q - 1) + v) / 2)


def test_update_trains_online_nets_and_averages_into_agent():
    trainer = make_trainer(use_multipliers=True, use_gaussian_actor=True)
    agent = trainer.agent
    ema0 = [p.clone() for p in agent.denoiser.parameters()]
    target0 = [p.clone() for p in agent.critic.parameters()]
    logs = trainer.train_step()
    assert set(logs) >= {"loss/bc", "loss/value", "loss/q", "loss/alpha", "loss/beta", "loss/actor"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in logs.values())
    # EMA 0.001 towards the online denoiser, Polyak 0.005 towards the online critic (both started equal)
    for p, p0, online in zip(agent.denoiser.parameters(), ema0, trainer.denoiser.parameters()):
        torch.testing.assert_close(p, p0 + 0.001 * (online - p0))
    for p, p0, online in zip(agent.critic.parameters(), target0, trainer.critic.parameters()):
        torch.testing.assert_close(p, p0 + 0.005 * (online - p0))
    assert trainer.denoiser.training and not agent.denoiser.training
    for _ in range(5):
        logs = trainer.train_step()
    assert trainer.step == 6 and all(torch.isfinite(v) for v in logs.values())


def test_optimizers_as_in_the_official_code():
    trainer = make_trainer(steps=10, use_multipliers=True, use_gaussian_actor=True)
    opt = trainer.optimizers
    assert isinstance(opt["denoiser"], torch.optim.AdamW) and opt["denoiser"].defaults["weight_decay"] == 1e-4
    assert type(opt["critic"]) is torch.optim.Adam and opt["critic"].defaults["lr"] == 3e-4
    assert type(opt["value"]) is torch.optim.Adam and opt["alpha"].defaults["lr"] == 3e-5
    assert trainer.learning_rates()["lr/denoiser"] == pytest.approx(3e-4)
    for _ in range(5):
        trainer.train_step()
    assert trainer.learning_rates()["lr/denoiser"] == pytest.approx(1.5e-4)  # cosine, half way
    for _ in range(5):
        trainer.train_step()
    assert trainer.learning_rates()["lr/denoiser"] == pytest.approx(0.0, abs=1e-12)
    assert trainer.learning_rates()["lr/critic"] == 3e-4


def test_state_flattening_round_trip():
    state = {"a": torch.arange(3), "n": None, "f": 0.1,
             "opt": {"state": {0: {"step": torch.tensor(2.0)}}, "groups": [{"betas": (0.9, 0.999)}]}}
    skeleton, tensors = checkpoint.flatten_state(state)
    json.dumps(skeleton)
    back = checkpoint.unflatten_state(json.loads(json.dumps(skeleton)), tensors)
    assert back["opt"]["state"][0]["step"].item() == 2.0 and back["opt"]["groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["a"], state["a"]) and back["n"] is None and back["f"] == 0.1
    with pytest.raises(TypeError, match="without pickle"):
        checkpoint.flatten_state({"x": object()})


@pytest.mark.parametrize("extras", [{}, {"use_multipliers": True, "use_gaussian_actor": True}])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, extras):
    full = make_trainer(**extras)
    for _ in range(20):
        full.train_step()
    first = make_trainer(**extras)
    for _ in range(10):
        first.train_step()
    checkpoint.save_state(first.state_dict(), tmp_path)
    del first
    resumed = make_trainer(seed=123, **extras)  # other init and RNG: everything must come from the state
    state, _ = checkpoint.load_state(tmp_path)
    resumed.load_state_dict(state)
    assert resumed.step == 10
    for _ in range(10):
        resumed.train_step()
    a, b = full.state_dict(), resumed.state_dict()
    for part in ("agent", "online_denoiser", "online_critic"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert torch.equal(a["rng"]["batch"], b["rng"]["batch"]) and torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_checkpoint_directory_is_switched_atomically(tmp_path):
    trainer = make_trainer()
    trainer.train_step()
    checkpoint.save_state(trainer.state_dict(), tmp_path)
    trainer.train_step()
    checkpoint.save_state(trainer.state_dict(), tmp_path)
    root = tmp_path / checkpoint.STATE_DIR
    assert json.loads((root / "latest.json").read_text())["step"] == 2
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_00000002"]
    with pytest.raises(ValueError, match="other trainer settings"):
        make_trainer(steps=99).load_state_dict(checkpoint.load_state(tmp_path)[0])
    with pytest.raises(FileNotFoundError, match="no training state"):
        checkpoint.load_state(tmp_path / "elsewhere")


def test_damaged_training_state_is_refused(tmp_path):
    trainer = make_trainer()
    trainer.train_step()
    ckpt = checkpoint.save_state(trainer.state_dict(), tmp_path)
    tensors = ckpt / "state.safetensors"
    data = bytearray(tensors.read_bytes())
    assert any(data[-256:-192])
    data[-256:-192] = bytes(64)  # inside the tensor data: the header still parses
    tensors.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"state.safetensors is damaged: its sha256 .* recorded in .*state.json"):
        checkpoint.load_state(tmp_path)


def test_bf16_precision_trains_and_is_validated():
    from aligniql import AlignIQLAgent
    from training.datasets import Transitions
    from training.trainer import Trainer, TrainerConfig

    with pytest.raises(ValueError, match="precision must be"):
        TrainerConfig(steps=10, batch_size=4, precision="fp16")
    g = torch.Generator().manual_seed(0)
    data = Transitions(torch.randn(64, 11, generator=g), torch.rand(64, 3, generator=g) * 2 - 1,
                       torch.randn(64, generator=g), torch.randn(64, 11, generator=g), torch.ones(64))
    torch.manual_seed(0)
    trainer = Trainer(with_unit_statistics(AlignIQLAgent(tiny_config())), data,
                      TrainerConfig(steps=10, batch_size=16, precision="bf16"))
    for _ in range(3):
        logs = trainer.train_step()
    assert all(torch.isfinite(v) for v in logs.values())
    assert next(trainer.denoiser.parameters()).dtype == torch.float32  # master weights stay fp32


def test_update_critic_alone_leaves_the_denoiser():
    from aligniql import AlignIQLAgent
    from training.datasets import Transitions
    from training.trainer import Trainer, TrainerConfig

    g = torch.Generator().manual_seed(0)
    data = Transitions(torch.randn(64, 11, generator=g), torch.rand(64, 3, generator=g) * 2 - 1,
                       torch.randn(64, generator=g), torch.randn(64, 11, generator=g), torch.ones(64))
    trainer = Trainer(with_unit_statistics(AlignIQLAgent(tiny_config())), data,
                      TrainerConfig(steps=10, batch_size=16))
    before = [p.clone() for p in trainer.denoiser.parameters()]
    critic_before = [p.clone() for p in trainer.critic.parameters()]
    logs = trainer.update_critic(trainer.sample_batch())
    assert set(logs) >= {"loss/value", "loss/q"}
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.denoiser.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, trainer.critic.parameters()))


def test_validation_losses_are_fixed_and_leave_the_training_rng_alone():
    torch.manual_seed(0)
    # discount 0.5 and expectile 0.9 so that a wrong constant shows; statistics that are not the identity
    agent = AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, discount=0.5, expectile=0.9, **TINY))
    mean, std = torch.linspace(-0.5, 0.5, 11), torch.linspace(0.5, 2.0, 11)
    agent.set_normalization(mean.numpy(), std.numpy())
    held = random_data(50)
    # large Polyak and EMA rates: after two steps the acting nets differ clearly from the online ones
    trainer = Trainer(agent, random_data(), TrainerConfig(steps=5, batch_size=32, polyak=0.5, ema_rate=0.5),
                      validation=held)
    for _ in range(2):
        trainer.train_step()
    rng = torch.get_rng_state()
    first = trainer.validation_losses()
    assert set(first) == {"val/bc", "val/value", "val/q"} and all(torch.isfinite(v) for v in first.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert trainer.validation_losses() == first  # same rows, noise and steps every time
    # the stored rows, integer diffusion steps and noise are what val/bc is computed on
    rows, t, noise = trainer.validation
    assert torch.equal(rows.actions, held.actions) and noise.shape == held.actions.shape
    assert t.dtype == torch.int64 and 0 <= int(t.min()) and int(t.max()) <= agent.config.num_diffusion_steps - 1
    # independent formulas on the acting networks: EMA denoiser (no dropout), target twin Q, V
    obs, next_obs = (held.obs - mean) / std, (held.next_obs - mean) / std
    with torch.no_grad():
        alpha_bar = torch.tensor(agent.schedule.alpha_bars, dtype=torch.float32)[t].unsqueeze(-1)
        noisy = alpha_bar.sqrt() * held.actions + (1 - alpha_bar).sqrt() * noise
        eps = agent.denoiser.eval()(obs, noisy, t.float().unsqueeze(-1))
        bc = (eps - noise).square().sum(-1).mean()
        q1, q2 = agent.critic.both(obs, held.actions)
        v = agent.value(obs)
        u = torch.minimum(q1, q2) - v
        value = (torch.where(u < 0, 0.1, 0.9) * u.square()).mean()
        y = held.rewards + 0.5 * held.masks * agent.value(next_obs)
        q = 0.5 * ((q1 - y).square() + (q2 - y).square()).mean()
    torch.testing.assert_close(first["val/bc"], bc)
    torch.testing.assert_close(first["val/value"], value)
    torch.testing.assert_close(first["val/q"], q)
    trainer.train_step()
    assert trainer.validation_losses() != first  # the networks moved
    assert Trainer(agent, random_data(), TrainerConfig(steps=5, batch_size=32)).validation_losses() == {}


def test_update_critic_matches_the_iql_formulas():
    # one critic update, reference formulas written out: V by expectile regression on the target twin-min,
    # both online heads towards r + discount * mask * V_new(s'), with discount 0.5 and expectile 0.9
    torch.manual_seed(0)
    agent = AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, discount=0.5, expectile=0.9, **TINY))
    mean, std = torch.linspace(-0.5, 0.5, 11), torch.linspace(0.5, 2.0, 11)
    agent.set_normalization(mean.numpy(), std.numpy())
    trainer = Trainer(agent, random_data(), TrainerConfig(steps=20, batch_size=32, polyak=0.3, critic_lr=1e-2))
    for _ in range(3):  # so that the target twin differs from the online one
        trainer.train_step()
    target, online, value = (copy.deepcopy(m) for m in (agent.critic, trainer.critic, agent.value))
    batch = trainer.sample_batch()
    obs, next_obs = (batch.obs - mean) / std, (batch.next_obs - mean) / std
    with torch.no_grad():
        x = torch.cat([obs, batch.actions], -1)
        assert not torch.allclose(torch.minimum(target.q1(x), target.q2(x)),
                                  torch.minimum(online.q1(x), online.q2(x)))
    logs = trainer.update_critic(batch)
    with torch.no_grad():
        u = torch.minimum(target.q1(x), target.q2(x)).squeeze(-1) - value(obs)
        expected_value = ((0.9 - (u < 0).float()).abs() * u.square()).mean()
        y = batch.rewards + 0.5 * batch.masks * agent.value(next_obs)  # V after this step's update
        q1, q2 = online.q1(x).squeeze(-1), online.q2(x).squeeze(-1)
        expected_q = 0.5 * ((q1 - y).square() + (q2 - y).square()).mean()
    assert batch.masks.sum() > 0 and not torch.allclose(agent.value(next_obs), value(next_obs))
    torch.testing.assert_close(logs["loss/value"], expected_value)
    torch.testing.assert_close(logs["loss/q"], expected_q)
    for head in ("q1", "q2"):
        before, after = getattr(online, head).parameters(), getattr(trainer.critic, head).parameters()
        assert any(not torch.equal(a, b) for a, b in zip(before, after)), head


def test_training_and_sampling_feed_the_denoiser_the_same_raw_step_index(monkeypatch):
    # docs/algorithm.md §12.2.4: the time features see the integer step 0..T-1 (cast to float, not t / T), in
    # training exactly as in sampling; otherwise the trained denoiser is sampled at steps it never saw
    from aligniql.networks import Denoiser

    seen: list[torch.Tensor] = []
    original = Denoiser.time_embedding

    def recording(self, t):
        seen.append(t.detach().clone())
        return original(self, t)

    monkeypatch.setattr(Denoiser, "time_embedding", recording)
    trainer = make_trainer()
    T = trainer.agent.config.num_diffusion_steps
    trainer.train_step()
    train_t = torch.cat([t.flatten() for t in seen])
    assert train_t.numel() == 32 and train_t.is_floating_point()
    assert torch.equal(train_t, train_t.round()) and train_t.min() >= 0 and train_t.max() <= T - 1
    assert set(train_t.tolist()) == set(map(float, range(T)))  # 32 uniform draws from 5 steps hit all of them
    seen.clear()
    trainer.agent.act(torch.zeros(2, 11), generator=0)
    assert seen and set(torch.cat([t.flatten() for t in seen]).tolist()) == set(map(float, range(T)))


@pytest.mark.parametrize("rule, log_std", [("awr", "clamp"), ("aligniql", "clamp"), ("awr", "sigmoid")])
def test_gaussian_actor_uses_its_weights_and_climbs_the_weighted_log_likelihood(rule, log_std):
    torch.manual_seed(0)
    agent = with_unit_statistics(AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, eta=2.5, actor_log_std=log_std,
                                                              use_gaussian_actor=True, **TINY)))
    trainer = Trainer(agent, random_data(), TrainerConfig(steps=20, batch_size=32, gaussian_weights=rule,
                                                          awr_beta=2.0, actor_lr=1e-3, critic_lr=1e-2))
    batch = trainer.sample_batch()
    actor_before = copy.deepcopy(agent.actor)
    logs = trainer.update(batch)
    with torch.no_grad():  # the critic after this step's V, Q and Polyak updates, as the actor saw it
        gap = agent.critic(batch.obs, batch.actions) - agent.value(batch.obs)
        weights = {"awr": torch.exp(2.0 * gap).clamp(max=100.0), "aligniql": torch.exp(-2.5 * gap.square())}
        assert abs(weights["awr"].mean() - weights["aligniql"].mean()) > 0.05  # the rules are told apart

        def weighted_log_likelihood(actor):
            mean, log_std = actor(batch.obs)
            log_prob = torch.distributions.Normal(mean, log_std.exp()).log_prob(batch.actions).sum(-1)
            return (weights[rule] * log_prob).mean()

        before, after = weighted_log_likelihood(actor_before), weighted_log_likelihood(agent.actor)
    torch.testing.assert_close(logs["actor/weight_mean"], weights[rule].mean())
    torch.testing.assert_close(logs["loss/actor"], -before)
    assert after > before  # a step of weighted regression makes the batch actions more likely, not less


def test_weighted_denoising_loss_weights_each_sample():
    g = torch.Generator().manual_seed(0)
    predicted, noise = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    torch.testing.assert_close(losses.weighted_denoising_loss(predicted, noise, torch.ones(6)),
                               losses.denoising_loss(predicted, noise))
    w = torch.tensor([0.0, 0.0, 2.0, 1.0, 0.0, 3.0])
    per_sample = (predicted - noise).square().sum(-1)
    torch.testing.assert_close(losses.weighted_denoising_loss(predicted, noise, w), (w * per_sample).mean())
    predicted.requires_grad_(True)
    losses.weighted_denoising_loss(predicted, noise, w).backward()
    assert predicted.grad[w == 0].abs().sum() == 0 and predicted.grad[w > 0].abs().sum() > 0


def test_advantage_weighted_behaviour_cloning_weights_by_the_critic_before_its_update():
    from aligniql.diffusion import add_noise
    from training.trainer import draw_step_noise

    torch.manual_seed(0)
    agent = with_unit_statistics(AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, **TINY)))
    trainer = Trainer(agent, random_data(), TrainerConfig(steps=20, batch_size=32, behavior_weights="awr",
                                                          awr_beta=2.0, critic_lr=1e-2))
    for _ in range(5):  # a critic that is not at its init, so the weights differ between samples
        trainer.train_step()
    batch = trainer.sample_batch()
    noise_state = trainer.noise_generator.get_state()
    online = copy.deepcopy(trainer.denoiser)
    with torch.no_grad():
        weights = torch.exp(2.0 * (agent.critic(batch.obs, batch.actions) - agent.value(batch.obs))).clamp(max=100)
        t, noise, masks = draw_step_noise(torch.Generator().set_state(noise_state), 32, agent.config, trainer.device)
        predicted = online(batch.obs, add_noise(batch.actions, noise, t, agent.schedule), t.unsqueeze(-1).float(),
                           masks)
    assert weights.std() > 1e-3
    logs = trainer.update(batch)
    torch.testing.assert_close(logs["bc/weight_mean"], weights.mean())
    torch.testing.assert_close(logs["loss/bc"], (weights * (predicted - noise).square().sum(-1)).mean())
    assert not torch.allclose(logs["loss/bc"], (predicted - noise).square().sum(-1).mean())
    with pytest.raises(ValueError, match="behavior_weights must be one of"):
        TrainerConfig(behavior_weights="exp")


def test_torch_init_resets_the_critic_side_mlps_and_leaves_the_denoiser():
    from torch import nn

    from training.trainer import init_networks

    torch.manual_seed(0)
    agent = with_unit_statistics(AlignIQLAgent(AlignIQLConfig(obs_dim=11, act_dim=3, use_multipliers=True,
                                                              use_gaussian_actor=True, **TINY)))
    before = copy.deepcopy(agent.state_dict())
    init_networks(agent, "xavier")  # how the agent is built: nothing moves
    assert all(torch.equal(v, agent.state_dict()[k]) for k, v in before.items())
    init_networks(agent, "torch")
    after = agent.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert not any(k.startswith("denoiser.") for k in changed)
    for net in (agent.critic, agent.value, agent.alpha_net, agent.beta_net, agent.actor):
        for layer in (m for m in net.modules() if isinstance(m, nn.Linear)):
            bound = 1 / math.sqrt(layer.in_features)  # nn.Linear's kaiming_uniform(a=sqrt 5): U(-bound, bound)
            assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
            assert layer.bias.abs().max() > 0  # xavier leaves biases at 0
    assert {k for k in before if k.endswith(".weight") and not k.startswith("denoiser.")
            and after[k].dim() == 2} <= changed
    with pytest.raises(ValueError, match="init must be one of"):
        init_networks(agent, "orthogonal")
    with pytest.raises(ValueError, match="init must be one of"):
        TrainerConfig(init="orthogonal")
