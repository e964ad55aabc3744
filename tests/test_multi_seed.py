"""Multi-seed training (issue 14): member k of a K-seed run is the single-seed run k, members are independent,
every member exports as an ordinary agent, and a resumed group continues as an uninterrupted one."""

from __future__ import annotations

import copy
import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from aligniql import AlignIQLAgent, AlignIQLConfig
from tests.conftest import CUDA, TINY
from tests.test_training_trainer import random_data
from tests.training_fixtures import single_thread  # noqa: F401
from training import checkpoint
from training.datasets import split_holdout
from training.multi_seed import (Interrupted, MultiSeedTrainer, _clip_grad_norm_per_member, load_member,
                                 member_dir, stack_modules, train_members)
from training.trainer import Trainer, TrainerConfig, init_networks

MEAN, STD = np.linspace(-0.5, 0.5, 11), np.linspace(0.5, 2.0, 11)  # not the identity, so normalization shows
EXTRAS = {"use_multipliers": True, "use_gaussian_actor": True}
# Member k against the single run k after 50 steps. The two differ only in float rounding: batched matmuls
# (bmm vs mm) and the unfused LayerNorm affine round differently by ~1 ulp (1.2e-7 relative) per op, and 50
# Adam steps carry that along; observed at most 2.3e-6 relative in the logged losses and 6e-8 absolute in the
# weights. The tolerance leaves ~20x room, yet is ~1000x below what one different batch, noise draw or dropout
# mask moves (one Adam step moves weights by up to lr = 3e-4; the negative control below checks it shows).
LOSS_TOL = {"rtol": 5e-5, "atol": 1e-6}
WEIGHT_TOL = {"rtol": 1e-5, "atol": 1e-6}


def config(**overrides) -> AlignIQLConfig:
    return AlignIQLConfig(obs_dim=11, act_dim=3, **{**TINY, **overrides})


def single_run(seed: int, agent_config: AlignIQLConfig, tconf: TrainerConfig, holdout: float,
               device: str = "cpu") -> Trainer:
    """Built as training/train.py builds a single-seed run."""
    torch.manual_seed(seed)
    train_set, held_out = split_holdout(random_data(), holdout, seed)
    agent = AlignIQLAgent(agent_config)
    init_networks(agent, tconf.init)
    agent.set_normalization(MEAN, STD)
    return Trainer(agent, train_set, tconf, seed=seed, device=device, validation=held_out)


def multi_run(seeds, agent_config, tconf, holdout=0.0, device="cpu") -> MultiSeedTrainer:
    return MultiSeedTrainer.from_seeds(random_data(), agent_config, tconf, seeds, obs_mean=MEAN, obs_std=STD,
                                       holdout=holdout, device=device)


def weights(agent: AlignIQLAgent) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in agent.state_dict().items()}


@pytest.mark.parametrize("device", ["cpu", *CUDA])
@pytest.mark.parametrize("extras, behavior_weights, init", [
    ({}, "none", "xavier"), (EXTRAS, "none", "xavier"), ({}, "awr", "xavier"),
    ({**EXTRAS, "actor_log_std": "sigmoid", "value_layer_norm": False}, "none", "torch")])
def test_member_k_equals_the_single_seed_run_k(extras, behavior_weights, init, device):
    seeds, tconf = [3, 0, 7], TrainerConfig(steps=50, batch_size=32, behavior_weights=behavior_weights, init=init)
    agent_config = config(**extras)
    multi = multi_run(seeds, agent_config, tconf, holdout=0.1, device=device)
    singles = [single_run(s, agent_config, tconf, 0.1, device) for s in seeds]
    for k, single in enumerate(singles):  # the same initial weights and statistics, bit for bit
        assert all(torch.equal(a, b) for a, b in zip(weights(multi.member_agent(k)).values(),
                                                     weights(single.agent).values()))
    first = multi.sample_batch()  # the same first batch (same rows of the same hold-out split)
    for k, single in enumerate(singles):
        batch = single.sample_batch()
        assert all(torch.equal(getattr(first, f)[k], getattr(batch, f)) for f in ("obs", "actions", "rewards"))
    for _ in range(50):
        logs = multi.train_step()
        for k, single in enumerate(singles):
            ref = single.train_step()
            assert set(logs) == set(ref)
            for name in ref:
                torch.testing.assert_close(logs[name][k], ref[name], **LOSS_TOL, msg=f"member {k} {name}")
    val = multi.validation_losses()
    for k, single in enumerate(singles):
        for name, v in single.validation_losses().items():
            torch.testing.assert_close(val[name][k], v, **LOSS_TOL)
        got, want = weights(multi.member_agent(k)), weights(single.agent)
        for name in want:
            torch.testing.assert_close(got[name], want[name], **WEIGHT_TOL, msg=f"member {k} {name}")
        assert multi.learning_rates() == single.learning_rates()
    # negative control: the tolerance does tell runs apart (member 0 is not the run of member 1's seed)
    a, b = weights(multi.member_agent(0)), weights(singles[1].agent)
    assert not torch.allclose(a["denoiser.input.weight"], b["denoiser.input.weight"], **WEIGHT_TOL)


def test_single_trainer_draws_step_noise_from_its_own_generator():
    # the global RNG is left alone, so what other code draws from it changes nothing in the run
    tconf = TrainerConfig(steps=5, batch_size=16)
    a, b = (single_run(0, config(), tconf, 0.0) for _ in range(2))
    for _ in range(3):
        state = torch.get_rng_state()
        a.train_step()
        assert torch.equal(torch.get_rng_state(), state)
        torch.rand(100)
        b.train_step()
    assert all(torch.equal(x, y) for x, y in zip(weights(a.agent).values(), weights(b.agent).values()))
    assert "noise" in a.state_dict()["rng"]


@pytest.mark.parametrize("opt", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("fused", [True, False])
def test_one_optimizer_over_stacked_members_equals_independent_optimizers(opt, fused):
    # Adam's moments, eps and bias correction (and AdamW's decay) are elementwise, fused kernel included;
    # gradients over 9 decades, so that eps matters for some elements, and slices off vector-width alignment
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 37, 13, generator=g)
    stacked, singles = nn.Parameter(w.clone()), [nn.Parameter(w[k].clone()) for k in range(3)]
    kw = {"lr": 3e-4, "fused": fused, **({"weight_decay": 1e-4} if opt is torch.optim.AdamW else {})}
    o, os_ = opt([stacked], **kw), [opt([p], **kw) for p in singles]
    for _ in range(20):
        grad = torch.randn(3, 37, 13, generator=g) * 10.0 ** torch.randint(-8, 2, (3, 1, 13), generator=g)
        stacked.grad = grad.clone()
        o.step()
        for k in range(3):
            singles[k].grad = grad[k].clone()
            os_[k].step()
    assert all(torch.equal(stacked.detach()[k], singles[k].detach()) for k in range(3))


def test_gradient_clipping_is_per_member():
    g = torch.Generator().manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 1)) for _ in range(3)]
    stacked = stack_modules(nets)
    grads = [torch.randn(p.shape, generator=g) * torch.tensor([100.0, 0.01, 3.0]).view(3, *[1] * (p.dim() - 1))
             for p in stacked.parameters()]
    for p, grad in zip(stacked.parameters(), grads):
        p.grad = grad.clone()
    _clip_grad_norm_per_member(list(stacked.parameters()), 1.0)
    for k, net in enumerate(nets):
        for p, grad in zip(net.parameters(), grads):
            p.grad = grad[k].reshape(p.shape).clone()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        for p, q in zip(net.parameters(), stacked.parameters()):
            torch.testing.assert_close(q.grad[k].reshape(p.shape), p.grad, rtol=1e-6, atol=1e-9)
    member1 = [p.grad[1] for p in stacked.parameters()]
    assert all(torch.equal(a, b[1]) for a, b in zip(member1, grads))  # under the limit: untouched


def test_members_are_independent():
    # member 0 gets other rows to train on and wild weights; member 1 is unchanged, bit for bit
    tconf = TrainerConfig(steps=20, batch_size=32, multiplier_grad_clip=0.5)
    agent_config = config(**EXTRAS)
    base = multi_run([0, 1], agent_config, tconf)
    agents = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        agents.append(AlignIQLAgent(agent_config))
        agents[-1].set_normalization(MEAN, STD)
    perturbed = MultiSeedTrainer(agents, random_data(), tconf, seeds=[0, 1], rows=[torch.arange(0, 300, 3), None])
    with torch.no_grad():
        for net in perturbed.nets.values():
            for p in net.parameters():
                p[0].mul_(50.0)
    for _ in range(20):
        logs, plogs = base.train_step(), perturbed.train_step()
        assert all(torch.equal(logs[k][1], plogs[k][1]) for k in logs)
        assert not torch.equal(logs["loss/q"][0], plogs["loss/q"][0])
    assert all(torch.equal(a, b) for a, b in zip(weights(base.member_agent(1)).values(),
                                                 weights(perturbed.member_agent(1)).values()))


def test_train_members_exports_ordinary_agents_that_load_strictly_and_act(tmp_path):
    tconf = TrainerConfig(steps=6, batch_size=16)
    evaluated = []

    def evaluate(seed, agent):  # a stand-in for evaluate_agent: acts, and records who was asked
        evaluated.append((seed, agent.act(np.zeros(11, np.float32), generator=seed).shape))
        return {"mean_return": float(seed)}

    agents = train_members(random_data(), config(extraction="aligniql_hard", **EXTRAS), tconf, [5, 2], tmp_path,
                           obs_mean=MEAN, obs_std=STD, holdout=0.1, log_every=3, eval_every=2, evaluate=evaluate)
    assert evaluated == [(5, (3,)), (2, (3,))] * 2  # steps 2 and 4; the final evaluation is the caller's
    for seed, trained in zip([5, 2], agents):
        d = member_dir(tmp_path, seed)
        assert {"config.json", "model.safetensors", "metrics.jsonl"} <= {p.name for p in d.iterdir()}
        loaded = AlignIQLAgent.from_pretrained(d)  # strict, with the weights' hash checked
        assert all(torch.equal(a, b) for a, b in zip(weights(loaded).values(), weights(trained).values()))
        for extraction in ("aligniql", "aligniql_hard", "gaussian"):
            action = loaded.act(np.zeros(11, np.float32), extraction=extraction, generator=0)
            assert action.shape == (3,) and np.isfinite(action).all()
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert [x.get("eval/mean_return") for x in lines if x["step"] in (2, 4)] == [float(seed)] * 2
        lines = [x for x in lines if "loss/bc" in x]
        assert [x["step"] for x in lines] == [3, 6]
        assert {"loss/bc", "val/bc", "loss/beta", "lr/denoiser"} <= set(lines[0])
    assert not torch.equal(weights(agents[0])["value.net.1.weight"], weights(agents[1])["value.net.1.weight"])
    assert checkpoint.load_state(tmp_path)[1] == {"seeds": [5, 2], "holdout": 0.1, "transitions": 300}
    with pytest.raises(FileExistsError, match="already holds"):
        train_members(random_data(), config(), tconf, [5, 2], tmp_path, obs_mean=MEAN, obs_std=STD)


def test_resume_of_a_group_continues_as_the_uninterrupted_run(tmp_path, monkeypatch):
    tconf, agent_config = TrainerConfig(steps=12, batch_size=16), config(**EXTRAS)
    kwargs = dict(obs_mean=MEAN, obs_std=STD, holdout=0.1, log_every=1, save_every=5)
    full = train_members(random_data(), agent_config, tconf, [0, 1], tmp_path / "full", **kwargs)

    original = MultiSeedTrainer.train_step

    def crash_at_8(self):  # a crash after the save at step 5, with metrics of steps 6-7 already written
        if self.step == 7:
            raise RuntimeError("simulated crash")
        return original(self)

    monkeypatch.setattr(MultiSeedTrainer, "train_step", crash_at_8)
    with pytest.raises(RuntimeError, match="simulated"):
        train_members(random_data(), agent_config, tconf, [0, 1], tmp_path / "cut", **kwargs)
    monkeypatch.setattr(MultiSeedTrainer, "train_step", original)
    assert checkpoint.load_state(tmp_path / "cut")[0]["step"] == 5
    resumed = train_members(random_data(), agent_config, tconf, [0, 1], tmp_path / "cut", resume=True, **kwargs)
    def lines(run, seed):
        return [{k: v for k, v in json.loads(x).items() if k != "steps_per_second"}
                for x in (member_dir(tmp_path / run, seed) / "metrics.jsonl").read_text().splitlines()]

    for seed, a, b in zip([0, 1], full, resumed):
        assert all(torch.equal(x, y) for x, y in zip(weights(a).values(), weights(b).values()))
        assert lines("full", seed) == lines("cut", seed)
        assert [x["step"] for x in lines("cut", seed)] == list(range(1, 13))
    with pytest.raises(ValueError, match="other members or data.*seeds"):
        train_members(random_data(), agent_config, tconf, [1, 0], tmp_path / "cut", resume=True, **kwargs)
    with pytest.raises(ValueError, match="other members or data.*holdout"):
        train_members(random_data(), agent_config, tconf, [0, 1], tmp_path / "cut", resume=True,
                      **{**kwargs, "holdout": 0.2})
    with pytest.raises(FileNotFoundError, match="no saved training state"):
        train_members(random_data(), agent_config, tconf, [0, 1], tmp_path / "none", resume=True, **kwargs)


def test_state_dict_round_trip_through_the_checkpoint_files(tmp_path):
    tconf = TrainerConfig(steps=10, batch_size=16)
    a = multi_run([0, 1, 2], config(**EXTRAS), tconf)
    for _ in range(4):
        a.train_step()
    checkpoint.save_state(a.state_dict(), tmp_path)
    b = multi_run([0, 1, 2], config(**EXTRAS), tconf)
    b.load_state_dict(checkpoint.load_state(tmp_path)[0])
    for _ in range(3):
        la, lb = a.train_step(), b.train_step()
        assert all(torch.equal(la[k], lb[k]) for k in la)
    c = multi_run([0, 1, 2], config(), tconf)
    with pytest.raises(ValueError, match="optimizers"):
        c.load_state_dict(a.state_dict())


def test_bad_members_are_refused_with_the_reason():
    tconf = TrainerConfig(steps=5, batch_size=8)
    data = random_data()
    with pytest.raises(ValueError, match="at least one member"):
        MultiSeedTrainer([], data, tconf, seeds=[])
    with pytest.raises(ValueError, match="distinct"):
        multi_run([1, 1], config(), tconf)
    with pytest.raises(ValueError, match="integers"):
        multi_run([0, 1.5], config(), tconf)
    with pytest.raises(ValueError, match="hidden_dim"):
        MultiSeedTrainer.from_seeds(data, [config(), config(hidden_dim=16)], tconf, [0, 1], obs_mean=MEAN,
                                    obs_std=STD)
    with pytest.raises(ValueError, match="2 agent configs for 3 seeds"):
        MultiSeedTrainer.from_seeds(data, [config(), config()], tconf, [0, 1, 2])
    agent = AlignIQLAgent(config())
    agent.set_normalization(MEAN, STD)
    with pytest.raises(ValueError, match="same agent object"):
        MultiSeedTrainer([agent, agent], data, tconf, seeds=[0, 1])
    with pytest.raises(ValueError, match="statistics are not set"):
        MultiSeedTrainer.from_seeds(data, config(), tconf, [0])
    with pytest.raises(ValueError, match="outside"):
        MultiSeedTrainer([agent], data, tconf, seeds=[0], rows=[torch.tensor([0, 300])])
    # other extraction defaults are not a training difference: allowed
    run = MultiSeedTrainer.from_seeds(data, [config(), config(extraction="idql", num_samples=8)], tconf, [0, 1],
                                      obs_mean=MEAN, obs_std=STD)
    assert run.member_agent(1).config.extraction == "idql"
    with pytest.raises(IndexError, match="2 members"):
        run.member_agent(2)


def test_stacking_refuses_modules_it_does_not_know_and_exports_by_name():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3, 3))

        def forward(self, x):
            return x @ self.scale

    with pytest.raises(TypeError, match="cannot stack Scaled"):
        stack_modules([Scaled(), Scaled()])
    with pytest.raises(ValueError, match="same architecture"):
        stack_modules([nn.Linear(3, 4), nn.Linear(3, 5)])
    nets = [nn.Sequential(nn.LayerNorm(3), nn.Linear(3, 2)) for _ in range(2)]
    stacked = stack_modules(nets)
    x = torch.randn(2, 7, 3)
    for k, net in enumerate(nets):
        torch.testing.assert_close(stacked(x)[k], net(x[k]))
        copy_ = copy.deepcopy(net)
        nn.init.zeros_(copy_[1].weight)
        load_member(copy_, stacked, k)
        assert all(torch.equal(a, b) for a, b in zip(copy_.state_dict().values(), net.state_dict().values()))


def test_ctrl_c_finishes_the_step_saves_the_group_and_resumes(tmp_path, monkeypatch):
    tconf, original = TrainerConfig(steps=8, batch_size=16), MultiSeedTrainer.train_step

    def interrupt_at_3(self):
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C: StopOnInterrupt lets this step finish
        return original(self)

    monkeypatch.setattr(MultiSeedTrainer, "train_step", interrupt_at_3)
    with pytest.raises(Interrupted):
        train_members(random_data(), config(), tconf, [0, 1], tmp_path, obs_mean=MEAN, obs_std=STD)
    assert checkpoint.load_state(tmp_path)[0]["step"] == 4
    assert all(AlignIQLAgent.from_pretrained(member_dir(tmp_path, s)) is not None for s in (0, 1))
    monkeypatch.setattr(MultiSeedTrainer, "train_step", original)
    agents = train_members(random_data(), config(), tconf, [0, 1], tmp_path, obs_mean=MEAN, obs_std=STD,
                           resume=True)
    assert checkpoint.load_state(tmp_path)[0]["step"] == 8 and len(agents) == 2
