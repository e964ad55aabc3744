"""The installed commands and the documented script paths run (``--help`` only: no dataset, no training)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a fresh process sees this checkout's packages, as an installed (or editable) one would
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_console_scripts_point_at_main_functions():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"aligniql-train", "aligniql-eval", "aligniql-push", "aligniql-demo",
                            "aligniql-sweep"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


@pytest.mark.parametrize("command, expected", [
    (["training/train.py", "--help"], "--critic-lr"),
    (["training/push.py", "--help"], "--allow-unfinished"),
    (["training/sweep.py", "--help"], "--cpus-per-trial"),  # without importing ray
    (["-m", "aligniql.evaluate", "--help"], "NAME_OR_DIR"),
    (["-m", "aligniql.demo", "--help"], "--agent"),
])
def test_documented_commands_run_from_the_repository(command, expected):
    out = subprocess.run([sys.executable, *command], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and expected in out.stdout, out.stderr


def test_the_evaluate_function_is_not_shadowed_by_a_module():
    import aligniql
    from aligniql.eval_cli import main  # noqa: F401

    with pytest.raises(ImportError, match="aligniql.eval_cli"):
        importlib.import_module("aligniql.evaluate")
    assert callable(aligniql.evaluate) and not isinstance(aligniql.evaluate, type(aligniql))
