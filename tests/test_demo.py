"""The README's main job runs end to end on a saved agent (a tiny one here; the embedded agent in CI's make demo)."""

from aligniql import demo
from tests.conftest import tiny_agent


def test_demo_runs_a_saved_agent(tmp_path, capsys):
    path = tiny_agent(env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0).save_pretrained(tmp_path / "a")
    assert demo.main(["--agent", str(path), "--episodes", "2", "--video", ""]) == 0
    out = capsys.readouterr().out
    assert "Hopper-v5" in out and "normalized score" in out


def test_demo_embedded_agent_is_package_data():
    import tomllib
    from pathlib import Path

    import aligniql

    assert demo.EMBEDDED.parent.parent == Path(aligniql.__file__).resolve().parent  # not the working directory
    assert demo.EMBEDDED.parts[-2:] == ("pretrained", "hopper-medium-v0")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "pretrained/*/*" in pyproject["tool"]["setuptools"]["package-data"]["aligniql"]


def test_embedded_agent_loads_strictly_and_acts():
    # a committed artifact: if a format change breaks it, this fails (regenerate with benchmarks/quality.py)
    import gymnasium as gym

    from aligniql import AlignIQLAgent

    agent = AlignIQLAgent.from_pretrained(demo.EMBEDDED)
    assert agent.config.env_id == "Hopper-v5" and agent.config.dataset_id == "bench/hopper/medium-v0"
    assert agent.config.use_multipliers and agent.config.use_gaussian_actor
    env = gym.make("Hopper-v5")
    obs, _ = env.reset(seed=0)
    for rule in ("aligniql", "aligniql_hard", "idql", "gaussian"):
        assert env.action_space.contains(agent.act(obs, extraction=rule, num_samples=8))


def test_demo_without_the_embedded_agent_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "EMBEDDED", tmp_path / "missing")  # e.g. an installed wheel
    try:
        demo.main(["--video", ""])
    except SystemExit as e:
        assert "pass --agent" in str(e.code)
    else:
        raise AssertionError("the demo must not run an untrained agent in silence")
