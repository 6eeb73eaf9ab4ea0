"""Atomic file writes: a crash never leaves a half-written output behind.

The temporary file is ``.<name>.<host>-<pid>.<random>.tmp`` beside the output. A process killed mid-write (SIGKILL)
cannot remove it, so the next write of the same output removes leftovers of processes on this host that are gone.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _host() -> str:
    return re.sub(r"[^\w.-]", "_", socket.gethostname())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def folder_mode() -> int:
    """The permissions the user's umask gives a new folder (`tempfile.mkdtemp` makes 0700 ones)."""
    return 0o777 & ~_umask()


@contextmanager
def staging_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside `path`, unique to this process (``.<name>.<host>-<pid>.<random>.tmp``), with
    the user's usual folder permissions; it is removed if the block fails and must be moved away by the block on
    success. Two processes writing one output never share it; a killed process's leftover is removed by the next."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{_host()}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    )
    os.chmod(tmp, folder_mode())
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def apply_umask(folder: str | os.PathLike) -> None:
    """Give the files and folders under `folder` the permissions the user's umask gives new ones (libraries that
    stage writes with `mkstemp`, e.g. Transformers' `save_pretrained` of safetensors, leave files 0600)."""
    umask = _umask()
    for p in [Path(folder), *Path(folder).rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{_host()}-{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.<host>-<pid>.*.tmp`` files (and `staging_dir` folders) left beside `path` by processes of
    this host that no longer run (a write interrupted by SIGKILL); returns what was removed. Temporaries of live or
    other-host processes stay."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.{_host()}-") + r"(\d+)\..*\.tmp")
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        m = pattern.fullmatch(tmp.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` then move the result to `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write JSON atomically."""
    return write_atomic(
        path, lambda p: p.write_text(json.dumps(obj, indent=indent, default=_jsonable) + "\n")
    )


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text))


def read_json(
    path: str | os.PathLike, what: str = "JSON file", error: type[Exception] = ValueError, hint: str = ""
) -> Any:
    """Parse a whole JSON file; a missing file or invalid JSON is an error naming the file (and the line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e.msg}, line {e.lineno}){hint}") from None


def read_cached(path: str | os.PathLike, settings: dict[str, Any], what: str, remedy: str) -> dict[str, Any]:
    """A cached result whose `"settings"` must equal `settings` (a rerun with other settings must not reuse it)."""
    cached = read_json(path, what)
    if cached.get("settings") != settings:
        raise ValueError(f"{path}: computed with settings {cached.get('settings')}, not {settings}; {remedy}")
    return cached


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
