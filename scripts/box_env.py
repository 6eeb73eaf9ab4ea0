"""Rehearse the device box on this machine: a venv whose Python sees only the packages the box has.

    python3 scripts/box_env.py VENV            # create VENV (system site-packages, all others blocked)
    VENV/bin/python -c "import jsonargparse"    # ModuleNotFoundError: ... not on the device box

The box (bench/box-packages.txt) has torch, lightning, transformers and ~190 other packages but not everything
pyproject.toml asks for, and no network. Copying torch into a fresh venv costs gigabytes, so the venv (without this
machine's site-packages) gets symbolic links to the installed files of the box's distributions alone, and of what
they require here: a package here may be newer than the box's and need something the box's version did not
(huggingface_hub and httpx2). Everything else is absent, as on the box; a `pip install --target` folder on
PYTHONPATH (what scripts/gpu_check.sh fills from bench/wheels) imports as usual. Versions are this machine's, not the
box's: the rehearsal catches missing packages, not version drift.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = REPO / "bench" / "box-packages.txt"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def box_packages(path: Path = PACKAGES) -> list[str]:
    """The names in bench/box-packages.txt (one per line, # comments)."""
    names = [line.strip() for line in path.read_text().splitlines()]
    return [n for n in names if n and not n.startswith("#")]


def with_requirements(names: list[str]) -> set[str]:
    """`names` and, transitively, what their installed versions here require (extras left out): a package here may
    be newer than the box's and need something the box's version did not (huggingface_hub and httpx2)."""
    todo, seen = [norm(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req.replace('"', "'").replace("extra==", "extra =="):
                continue
            todo.append(norm(re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0]))
    return seen


def link_distributions(names: set[str], site: Path) -> None:
    """Symlink into `site` the top-level files and folders (and the .dist-info) of each installed distribution in
    `names`."""
    for dist in importlib.metadata.distributions():
        if norm(dist.metadata["Name"] or "") not in names:
            continue
        for f in dist.files or []:
            top = Path(f).parts[0]
            src = Path(dist.locate_file(top))
            if top in ("..", "__pycache__") or not src.exists():
                continue
            dst = site / top
            if not dst.exists() and not dst.is_symlink():
                dst.symlink_to(src.resolve())


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    target = Path(args[0])
    if target.exists():
        print(f"{target} exists: give a new folder (nothing is overwritten)", file=sys.stderr)
        return 1
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(target)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    link_distributions(with_requirements(box_packages()), target / "lib" / py / "site-packages")
    print(target / "bin" / "python3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
