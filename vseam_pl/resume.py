"""Which checkpoint a run may resume from: read safely, and only one written for the same model and head grid.

A checkpoint holds the scales of one model; resumed into another model with the same grid it would train on
silently (the tiny LLaVA and tiny InstructBLIP share a 4x4 grid). `HeadModulationModule` records its model in every
checkpoint (`CHECKPOINT_KEY`) and refuses a mismatch on load; `--ckpt_path last` only considers checkpoints of the
model being trained. Checkpoints are always read with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_KEY = "vseam_model"  # {"name": VLM.name, "grid": [layers, heads, head_dim]}


class CheckpointMismatchError(ValueError):
    """A checkpoint written for another model (or head grid) than the one being trained."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at `path`, loaded with ``weights_only=True`` on the CPU; a clear error when it is unreadable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad or unsafe file
        raise ValueError(
            f"{path}: not a readable checkpoint with weights_only=True ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a Lightning checkpoint (got {type(ckpt).__name__})")
    return ckpt


def checkpoint_model(ckpt: dict[str, Any]) -> tuple[str | None, tuple[int, ...] | None]:
    """(model name, head grid) a checkpoint was written for. Older checkpoints without `CHECKPOINT_KEY` give the
    folder/repo name from their hyperparameters and the scales' shape."""
    info = ckpt.get(CHECKPOINT_KEY)
    if isinstance(info, dict):
        return info.get("name"), tuple(info["grid"]) if info.get("grid") else None
    model = (ckpt.get("hyper_parameters") or {}).get("model")
    scales = (ckpt.get("state_dict") or {}).get("modulation.scales")
    grid = tuple(scales.shape) if isinstance(scales, torch.Tensor) else None
    return (Path(str(model)).name if model else None), grid


def same_model(ckpt: dict[str, Any], name: str, grid: tuple[int, ...]) -> str | None:
    """None when `ckpt` was written for model `name` with head grid `grid` ([layers, heads(, head_dim)]), else why not."""
    saved_name, saved_grid = checkpoint_model(ckpt)
    if saved_grid is not None and tuple(saved_grid) != tuple(grid)[: len(saved_grid)]:
        return f"it holds a {'x'.join(map(str, saved_grid))} head grid, {name} has {'x'.join(map(str, grid))}"
    legacy = CHECKPOINT_KEY not in ckpt
    if saved_name is not None and (Path(saved_name).name if legacy else saved_name) != (
        Path(name).name if legacy else name
    ):
        return f"it was written for model {saved_name!r}, not {name!r}"
    return None


def check_checkpoint(
    ckpt: dict[str, Any], name: str, grid: tuple[int, ...], where: str = "checkpoint"
) -> None:
    """Raise `CheckpointMismatchError` unless `ckpt` belongs to model `name` with head grid `grid`."""
    why = same_model(ckpt, name, grid)
    if why:
        raise CheckpointMismatchError(
            f"{where}: cannot resume: {why}. Resume with the model that wrote it, or "
            "start a new run without --ckpt_path"
        )
