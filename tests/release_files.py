"""Where the tests find the V-SEAM release's question files, and what happens when they are not there.

The files are not in this repository (docs/development.md says where they come from): they sit in
``../shared/data/vseam`` beside the clone. A fresh clone without them skips the tests that read them, with a reason
naming the missing path; ``VSEAM_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``) turns that skip into a failure, so CI
cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vseam"
REQUIRE = "VSEAM_REQUIRE_SHARED_DATA"


def release_file(*parts: str, root: Path = SHARED_DATA) -> Path:
    """``root / parts`` when it exists; otherwise skip the test (or fail it when ``VSEAM_REQUIRE_SHARED_DATA=1``)."""
    path = root.joinpath(*parts)
    if path.exists():
        return path
    why = f"V-SEAM release files not present: {path} is missing (they belong in ../shared/data/vseam)"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{why}, and {REQUIRE}=1 requires them")
    pytest.skip(why)
