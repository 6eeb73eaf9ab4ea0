"""Run folders claimed atomically: two trainings under one `trainer.default_root_dir` never share `version_N`.

Lightning's TensorBoard and CSV loggers pick `version_N` by listing the folder and taking the next number, so two runs
started together both took `version_0` and mixed their config, hparams, checkpoints and scales. These loggers create
the folder exclusively (`os.mkdir`) and take the next free number when another run got there first. `VSeamCLI` gives
the plain loggers this behaviour; they can also be named directly as `vseam_pl.versions.ExclusiveTensorBoardLogger`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


def claim_version(root_dir: str | os.PathLike, first: int = 0) -> int:
    """Create `root_dir/version_<n>` for the first `n >= first` whose folder does not exist yet; returns `n`. The
    creation is exclusive, so of two processes claiming at once each gets its own number."""
    root = Path(root_dir)
    root.mkdir(parents=True, exist_ok=True)
    n = first
    while True:
        try:
            os.mkdir(root / f"version_{n}")
            return n
        except FileExistsError:
            n += 1


def _next_version(logger: Any, listed: int) -> int:
    """`listed` (Lightning's next number by listing), claimed exclusively on rank 0 of a local filesystem."""
    protocol = getattr(getattr(logger, "_fs", None), "protocol", ("file",))
    local = bool({"file", "local"} & set((protocol,) if isinstance(protocol, str) else protocol))
    if not local or rank_zero_only.rank != 0:  # other ranks take rank 0's folder (Lightning broadcasts it)
        return listed
    return claim_version(logger.root_dir, listed)


class ExclusiveTensorBoardLogger(TensorBoardLogger):
    """`TensorBoardLogger` whose automatic `version_N` folder is claimed atomically."""

    def _get_next_version(self) -> int:
        return _next_version(self, super()._get_next_version())


class ExclusiveCSVLogger(CSVLogger):
    """`CSVLogger` whose automatic `version_N` folder is claimed atomically."""

    def _get_next_version(self) -> int:
        return _next_version(self, super()._get_next_version())


def exclusive_versions(loggers: list[Any]) -> None:
    """Give Lightning's plain TensorBoard / CSV loggers (version not fixed yet) atomically claimed run folders."""
    swap = {TensorBoardLogger: ExclusiveTensorBoardLogger, CSVLogger: ExclusiveCSVLogger}
    for logger in loggers:
        if type(logger) in swap and getattr(logger, "_version", 0) is None:
            logger.__class__ = swap[type(logger)]  # adds no state: only how the version is picked
