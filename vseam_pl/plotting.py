"""What every figure writer shares: saving a Matplotlib figure as a PNG atomically (no half-written plot on a
crash or a concurrent writer)."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from .io import write_atomic


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save atomically (the temporary name has no .png suffix, so the format is explicit)."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
