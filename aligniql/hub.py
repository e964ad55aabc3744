"""Files on disk and on the Hugging Face Hub: atomic writes, resolving a dir or repo id, strict safetensors."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
logger = logging.getLogger(__name__)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same directory, then rename: readers never see half a file, and the
    data is on disk before the rename, so a power loss cannot leave an empty file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; a saved agent should not be
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":  # the rename itself lives in the directory (Windows cannot open directories)
        _fsync(path.parent)


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Save contiguous CPU copies to safetensors, atomically."""
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(cpu, tmp, metadata=metadata))


def check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str) -> None:
    """Raise a ValueError naming every missing, unexpected, mis-shaped or mis-typed tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
              for k in sorted(set(expected) & set(found)) if expected[k].shape != found[k].shape]
    # a float16 or float64 file would load by a silent cast: another writer's file, not one of ours
    dtypes = [f"{k}: expected {expected[k].dtype}, found {found[k].dtype}"
              for k in sorted(set(expected) & set(found)) if expected[k].dtype != found[k].dtype]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if shapes:
        problems.append(f"mis-shaped tensors [{'; '.join(shapes)}]")
    if dtypes:
        problems.append(f"tensors of another dtype [{'; '.join(dtypes)}]")
    if problems:
        raise ValueError(f"{source} does not match its config.json: " + ", ".join(problems)
                         + ". The checkpoint is incomplete or was written for another configuration.")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (6-20 ms for a shipped agent's 8.7 MB on a 2-core EPYC)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, recorded_in: str, what_to_do: str | None = None) -> None:
    """Refuse a file whose content differs from the sha256 recorded when it was written. Safetensors checks
    names, shapes and dtypes, not values: a damaged weight would otherwise load and act in silence."""
    if expected is None:
        logger.info("%s has no sha256 in %s (written by an older aligniql): its content is not verified",
                    path, recorded_in)
        return
    found = sha256_of(path)
    if found != expected:
        raise ValueError(f"{path} is damaged: its sha256 {found} differs from {expected}, recorded in "
                         f"{recorded_in} when it was written. " + (what_to_do or (
                             "Delete it and download it again (a Hub agent: remove the repo's models--* folder in "
                             "the Hugging Face cache, part of this path), or re-export it from its training run")))


def load_tensors(path: Path, sha256: str | None = None, recorded_in: str | None = None,
                 what_to_do: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file to the CPU; with ``sha256``, first check the file's content against it."""
    if sha256 is not None or recorded_in is not None:
        verify_sha256(Path(path), sha256, recorded_in or "its metadata", what_to_do)
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as e:  # its message names no file
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it is truncated or corrupt: save or "
                         "download it again") from e


def resolve_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                       local_files_only: bool = False) -> Path:
    """Return a local directory holding ``config.json`` and ``model.safetensors``.

    A path that exists is used as is; anything else is taken as a Hub repo id and downloaded (or read from
    the Hugging Face cache when offline or ``local_files_only``).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is a directory but has no {name}; expected a folder written by "
                                        "AlignIQLAgent.save_pretrained (config.json + model.safetensors)")
        return path
    repo_id = str(name_or_path)
    if path.exists() or not _REPO_ID.match(repo_id):
        raise FileNotFoundError(f"{repo_id!r} is neither a local directory nor a Hugging Face repo id "
                                "('org/name')")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    # a mistyped local path ("runs/my-agent") also looks like a repo id: say that both were tried
    no_dir = f"; there is no local directory {str(path.resolve())!r} either"
    files = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            files.append(Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir,
                                              token=token, local_files_only=local_files_only)))
        except LocalEntryNotFoundError as e:  # offline, or local_files_only, and not in the cache
            raise FileNotFoundError(
                f"{repo_id!r} (revision {revision or 'main'}) is not cached locally and could not be downloaded "
                f"(offline mode, local_files_only, or no network); missing file {name}. Download it once with "
                f"network access, or pass the path of a local directory{no_dir}") from e
        except (RepositoryNotFoundError, GatedRepoError) as e:
            raise FileNotFoundError(f"Hugging Face repo {repo_id!r} does not exist or is not accessible "
                                    f"with the given token{no_dir}") from e
        except RevisionNotFoundError as e:
            raise FileNotFoundError(f"revision {revision!r} not found in Hugging Face repo {repo_id!r}") from e
        except EntryNotFoundError as e:
            raise FileNotFoundError(f"Hugging Face repo {repo_id!r} has no {name}; it is not an aligniql "
                                    "checkpoint") from e
    return files[0].parent
