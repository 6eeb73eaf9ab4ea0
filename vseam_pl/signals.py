"""SIGTERM ends `train.py` / `evaluate.py` with exit status 143 (128 + 15, as a signalled process), never 0.

Lightning turns SIGTERM into `SIGTERMException`, a `SystemExit` without a code, so a killed run used to exit 0 and a
scheduler took it for a finished one. `stop_on_sigterm(main, name)` wraps a command's `main`: a SIGTERM stops it
with status 143 and a message saying what was saved (the trainer's last checkpoint) and how to resume.

Inside a Lightning loop the stop is graceful (Lightning stops at the next batch boundary, so a checkpoint being
written is finished) but bounded: if the loop is still running `grace_s` seconds later (one long step), or a second
SIGTERM comes, it stops at once. Outside a loop, or with `graceful=False` (evaluation keeps no partial results), it
stops at once.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

SIGTERM_STATUS = 128 + signal.SIGTERM
F = TypeVar("F", bound=Callable[..., Any])
_trainers: weakref.WeakSet = weakref.WeakSet()


class Terminated(SystemExit):
    """Raised in the main thread by the SIGTERM handler (or its grace timer) to stop the command now."""

    def __init__(self) -> None:
        super().__init__(SIGTERM_STATUS)


def track(trainer: Any) -> None:
    """Remember `trainer` so a SIGTERM report can name its last checkpoint (`VSeamCLI` calls this)."""
    _trainers.add(trainer)


def saved_checkpoints() -> list[Path]:
    """The last (or best) checkpoint each tracked trainer's checkpoint callbacks wrote, if the file exists."""
    found = []
    for trainer in list(_trainers):
        for cb in getattr(trainer, "checkpoint_callbacks", []):
            path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
            if path and Path(path).is_file():
                found.append(Path(path))
    return list(dict.fromkeys(found))


def report(name: str, outputs: str) -> str:
    """What a SIGTERM left behind (`outputs`: what the command writes at its end) and how to go on."""
    ckpts = saved_checkpoints()
    if ckpts:
        saved = (
            f"last checkpoint: {ckpts[-1]}; resume with the same command and --ckpt_path {ckpts[-1]} "
            "(or --ckpt_path last)"
        )
    else:
        saved = "no checkpoint was written; rerun the same command"
    return (
        f"{name}: stopped by SIGTERM before it finished (exit status {SIGTERM_STATUS}); {outputs} not written. "
        f"{saved}"
    )


class _Handler:
    def __init__(self, graceful: bool, grace_s: float) -> None:
        self.graceful, self.grace_s, self.received = graceful, grace_s, 0

    def __call__(self, signum: int, frame: Any) -> None:
        self.received += 1
        in_lightning_loop = signal.getsignal(signal.SIGTERM) is not self  # Lightning's handler calls this one
        if not self.graceful or not in_lightning_loop or self.received > 1 or self.grace_s <= 0:
            raise Terminated()
        signal.setitimer(
            signal.ITIMER_REAL, self.grace_s
        )  # -> `timeout`, installed before Lightning's handlers

    def timeout(self, signum: int, frame: Any) -> None:
        raise Terminated()


_active = threading.local()


def stop_on_sigterm(
    main: F,
    name: str,
    outputs: str = "head_scales.safetensors and metrics.json were",
    graceful: bool = True,
    grace_s: float = 30.0,
) -> F:
    """`main` that exits with status 143 and a report when SIGTERM stops it (see the module doc). Wrapping an
    already wrapped call (or calling from another thread, where signals cannot be handled) just calls `main`."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if getattr(_active, "on", False) or threading.current_thread() is not threading.main_thread():
            return main(*args, **kwargs)
        handler = _Handler(graceful, grace_s)
        previous = signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGALRM, handler.timeout)
        _active.on = True
        try:
            result = main(*args, **kwargs)
        except SystemExit as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if not handler.received and not isinstance(e, Terminated):
                raise
            print(report(name, outputs), file=sys.stderr, flush=True)
            raise SystemExit(SIGTERM_STATUS) from None
        finally:
            _active.on = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGALRM, previous[1])
        if handler.received:  # Lightning swallowed it (e.g. on the last batch) and the run went on to the end
            print(
                f"{name}: SIGTERM received; the run had finished and its outputs are complete, but it exits "
                f"with status {SIGTERM_STATUS} as a stopped process does",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(SIGTERM_STATUS)
        return result

    return wrapped  # type: ignore[return-value]
