"""Faults injected into sweep trials (training/sweep.py ``on_save``) and into the sweep's driver (a Tune callback).

They live in an importable module, not in the test file, because Ray pickles them by reference: each worker
imports this module (the tests put the repository on the workers' PYTHONPATH). Marker files make every fault
fire once, across worker processes, retries and a restored driver.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from ray import tune


class TrialFaults:
    """``on_save`` of every trial: logs each checkpoint (``saves.jsonl``: trial, step, pid), and makes the trial
    ``fail_key`` fail once at its first checkpoint, by an exception or a SIGKILL of its worker process."""

    def __init__(self, folder: Path, fail_key: str | None = None, how: str = "raise") -> None:
        self.folder, self.fail_key, self.how = Path(folder), fail_key, how

    def __call__(self, params: dict, step: int, run_dir: Path) -> None:
        with open(self.folder / "saves.jsonl", "a") as f:
            f.write(json.dumps({"key": params["key"], "step": step, "pid": os.getpid()}) + "\n")
        marker = self.folder / "failed"
        if params["key"] == self.fail_key and not marker.exists():
            marker.write_text(str(step))
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected failure of {params['key']} after its checkpoint of step {step}")


def saves(folder: Path) -> list[dict]:
    path = Path(folder) / "saves.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


class InterruptDriver(tune.Callback):
    """Sends the driver SIGINT (Ctrl-C) once, when the first trial completes."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.marker.exists():
            self.marker.write_text(trial.config["trial"]["key"])
            os.kill(os.getpid(), signal.SIGINT)
