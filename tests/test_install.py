"""The README's install lines are the route CI tests, and the `families` extra never replaces torch (issue 30.1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
PAIR = re.compile(r"pip install (?:-q )?torch==([\w.+]+) torchvision==([\w.+]+)")


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_families_extra_never_installs_torch_or_torchvision():
    """A bare `torchvision` requirement let pip swap a CPU torch for the newest CUDA build (6.4 GB)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, requirements in extras.items():
        assert not requirement_names(requirements) & {"torch", "torchvision"}, name


def test_readme_installs_the_torch_torchvision_pair_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    (readme_pair,) = set(PAIR.findall(readme))
    assert set(PAIR.findall(ci)) == {readme_pair}
    assert 'pip install -e ".[dev,families]"' in readme and '.[dev,families]"' in ci
    for page in ("families.md", "getting-started.md"):
        assert set(PAIR.findall((REPO / "docs" / page).read_text())) == {readme_pair}, page


def test_documented_torch_floor_is_pyprojects():
    (floor,) = re.findall(r'"torch>=([\d.]+)"', (REPO / "pyproject.toml").read_text())
    for page in (REPO / "README.md", REPO / "docs" / "getting-started.md"):
        text = page.read_text()
        assert re.findall(r"torch (?:>=|≥) ?([\d.]+)", text) and set(
            re.findall(r"torch (?:>=|≥) ?([\d.]+)", text)
        ) == {floor}, page
