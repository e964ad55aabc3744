"""The README's main job runs end to end on a saved agent (a tiny one here; the embedded agent in CI's make demo)."""

from aligniql import demo
from tests.conftest import tiny_agent


def test_demo_runs_a_saved_agent(tmp_path, capsys):
    path = tiny_agent(env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0).save_pretrained(tmp_path / "a")
    assert demo.main(["--agent", str(path), "--episodes", "2", "--video", ""]) == 0
    out = capsys.readouterr().out
    assert "Hopper-v5" in out and "normalized score" in out


def test_demo_embedded_agent_path_is_inside_the_repo():
    assert demo.EMBEDDED.parts[-3:] == ("benchmarks", "pretrained", "hopper-medium-v0")
