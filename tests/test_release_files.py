"""A fresh clone without the V-SEAM release files skips the tests that read them, naming the missing path; CI sets
VSEAM_REQUIRE_SHARED_DATA=1 so the same absence fails instead of passing by skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.release_files import REQUIRE, SHARED_DATA, release_file


def test_present_file_is_returned(tmp_path):
    (tmp_path / "GQA").mkdir()
    (tmp_path / "GQA" / "Animal.json").write_text("[]")
    assert release_file("GQA", "Animal.json", root=tmp_path) == tmp_path / "GQA" / "Animal.json"


def test_absent_files_skip_with_the_missing_path(tmp_path, monkeypatch):
    monkeypatch.delenv(REQUIRE, raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=r"release files not present: .*GQA.Spatial\.json is missing"
    ):
        release_file("GQA", "Spatial.json", root=tmp_path)


def test_absent_files_fail_when_required(tmp_path, monkeypatch):
    monkeypatch.setenv(REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match=r"Spatial\.json is missing.*VSEAM_REQUIRE_SHARED_DATA=1"):
        release_file("GQA", "Spatial.json", root=tmp_path)


def test_the_default_root_is_beside_the_clone():
    """``../shared/data/vseam`` relative to the repository root, where CI and docs/development.md put it."""
    assert SHARED_DATA == Path(__file__).resolve().parents[2] / "shared" / "data" / "vseam"
