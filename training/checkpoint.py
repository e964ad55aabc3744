"""Training state for ``--resume``, without pickle: tensors in safetensors, the rest in JSON.

Layout of ``<output_dir>/training_state/``::

    latest.json                  {"checkpoint": "step_00001000", "step": 1000}
    step_00001000/state.safetensors
    step_00001000/state.json

Each file is written atomically, and ``latest.json`` is switched only after both files of a new checkpoint
exist, so an interruption at any moment leaves the previous checkpoint intact and loadable. Ctrl-C itself is
deferred to the end of the current step (:class:`StopOnInterrupt`), so the saved state is never half-updated.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import torch

from aligniql.hub import atomic_write_text, load_tensors, save_tensors, sha256_of

logger = logging.getLogger(__name__)
STATE_DIR = "training_state"
FORMAT = 1
_TENSOR, _TUPLE, _INTDICT = "__tensor__", "__tuple__", "__intdict__"


def flatten_state(obj: Any, prefix: str = "", tensors: dict[str, torch.Tensor] | None = None
                  ) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, tensors, JSON scalars) into a JSON skeleton and tensors.

    Tensors are replaced by ``{"__tensor__": key}``; tuples and int-keyed dicts (optimizer states) are tagged
    so that :func:`unflatten_state` restores them exactly.
    """
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {_TENSOR: prefix}, tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, f"{prefix}/{k}", tensors)[0] for k, v in obj.items()}, tensors
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            return {_INTDICT: [[k, flatten_state(v, f"{prefix}/{k}", tensors)[0]] for k, v in obj.items()]}, tensors
        raise TypeError(f"{prefix}: dict keys must be all str or all int, got {list(obj)}")
    if isinstance(obj, (list, tuple)):
        items = [flatten_state(v, f"{prefix}/{i}", tensors)[0] for i, v in enumerate(obj)]
        return ({_TUPLE: items} if isinstance(obj, tuple) else items), tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"{prefix}: cannot store {type(obj).__name__} in a training state without pickle")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {_TENSOR}:
            return tensors[skeleton[_TENSOR]]
        if set(skeleton) == {_TUPLE}:
            return tuple(unflatten_state(v, tensors) for v in skeleton[_TUPLE])
        if set(skeleton) == {_INTDICT}:
            return {int(k): unflatten_state(v, tensors) for k, v in skeleton[_INTDICT]}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def save_state(state: dict[str, Any], output_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``state`` (e.g. ``Trainer.state_dict()``) as a new checkpoint and point ``latest.json`` at it.

    Args:
        state: nested dict with an int ``step``.
        output_dir: the run directory; the state goes to ``output_dir/training_state/``.
        extra: JSON-able facts stored next to the state (e.g. the train config).

    Returns:
        The checkpoint directory.
    """
    root = Path(output_dir) / STATE_DIR
    name = f"step_{int(state['step']):08d}"
    ckpt = root / name
    skeleton, tensors = flatten_state(state)
    save_tensors(tensors, ckpt / "state.safetensors", metadata={"format": "pt", "training_state": str(FORMAT)})
    meta = {"format": FORMAT, "sha256": sha256_of(ckpt / "state.safetensors"), "state": skeleton, "extra": extra or {}}
    atomic_write_text(ckpt / "state.json", json.dumps(meta, indent=1) + "\n")
    atomic_write_text(root / "latest.json", json.dumps({"checkpoint": name, "step": int(state["step"])}) + "\n")
    for old in root.glob("step_*"):  # only after latest.json moved on, so a crash keeps one good checkpoint
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return ckpt


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One metrics line (appended: a crash loses at most the line being written)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop the metrics lines logged after the saved ``step``: they will be logged again."""
    kept = [x for x in path.read_text().splitlines() if json.loads(x)["step"] <= step] if path.is_file() else []
    atomic_write_text(path, "".join(x + "\n" for x in kept))


def has_state(output_dir: str | Path) -> bool:
    return (Path(output_dir) / STATE_DIR / "latest.json").is_file()


def load_state(output_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the latest checkpoint of a run: ``(state, extra)``, tensors on the CPU.

    ``load_state_dict`` of modules and optimizers moves them to where the parameters live (Adam's ``step``
    counters stay on the CPU, as PyTorch expects), and RNG states must be CPU ByteTensors anyway.

    Raises:
        FileNotFoundError: when the run has no training state.
    """
    root = Path(output_dir) / STATE_DIR
    latest = root / "latest.json"
    if not latest.is_file():
        raise FileNotFoundError(f"no training state to resume in {root} (expected {latest}); start without "
                                "--resume, or point --output-dir at the run to continue")
    ckpt = root / json.loads(latest.read_text())["checkpoint"]
    meta = json.loads((ckpt / "state.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{ckpt}: training state format {meta.get('format')} is not {FORMAT}")
    tensors = load_tensors(ckpt / "state.safetensors", meta.get("sha256"), str(ckpt / "state.json"),
                           "The run cannot continue from it: start it over without --resume (the exported agent "
                           "in the run directory, checked by its own hash, is unaffected)")
    return unflatten_state(meta["state"], tensors), meta.get("extra", {})


class StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step and save; a second one aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("interrupt received: finishing this step and saving the training state (Ctrl-C again to abort)")

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
