"""Alias of :mod:`vseam_pl.editing.tiny_pipeline` (the module's old name), so ``python -m vseam_pl.editing.tiny``
keeps working."""

from __future__ import annotations

from .tiny_pipeline import build_tiny_inpaint_pipeline, main

__all__ = ["build_tiny_inpaint_pipeline", "main"]

if __name__ == "__main__":
    main()
