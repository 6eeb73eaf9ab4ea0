"""Where an evaluation's outputs go, decided and checked *before* any work.

One metrics file `<stem>.json` comes with the printed table `<stem>.txt`, the per-question samples
`<stem>.samples.jsonl` and, for training, `head_scales.safetensors` in the same folder. A destination that is a
folder, a file where a folder is needed, or not writable fails here, in a second, instead of after an hour of
evaluation; two outputs never share a path. A default destination (one the user did not name) never replaces an
existing file: it takes the next free name, `metrics-2.json`, ...
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCALES_NAME = "head_scales.safetensors"
METRICS_NAME = "metrics.json"


@dataclass(frozen=True)
class OutputPaths:
    """The files one evaluation writes (`scales` only when training wrote scales)."""

    metrics: Path
    table: Path
    samples: Path
    scales: Path | None = None

    @property
    def folder(self) -> Path:
        return self.metrics.parent

    def all(self) -> list[Path]:
        return [p for p in (self.scales, self.metrics, self.table, self.samples) if p is not None]


def derive(metrics: str | os.PathLike, with_scales: bool = False) -> OutputPaths:
    """The outputs that go with the metrics file `metrics`; an error when two of them would share a path
    (`--output results.txt` would write the table over the metrics)."""
    metrics = Path(metrics)
    paths = OutputPaths(
        metrics=metrics,
        table=metrics.with_name(metrics.stem + ".txt"),
        samples=metrics.with_name(metrics.stem + ".samples.jsonl"),
        scales=metrics.with_name(SCALES_NAME) if with_scales else None,
    )
    names = {"scales": paths.scales, "metrics": paths.metrics, "table": paths.table, "samples": paths.samples}
    seen: dict[Path, str] = {}
    for name, path in names.items():
        if path is None:
            continue
        if path in seen:
            raise ValueError(
                f"{metrics}: the {name} and the {seen[path]} would both be written to {path}; "
                "name the metrics file *.json (the table goes to <stem>.txt, the samples to <stem>.samples.jsonl)"
            )
        seen[path] = name
    return paths


def free_name(folder: str | os.PathLike, name: str = METRICS_NAME) -> OutputPaths:
    """`folder/name`, or `folder/<stem>-2<suffix>`, `-3`, ... : the first whose outputs do not exist yet, so a
    default destination never replaces a file (e.g. the metrics of the run whose scales are evaluated)."""
    folder, stem, suffix = Path(folder), Path(name).stem, Path(name).suffix
    for i in range(1, 10_000):
        paths = derive(folder / (name if i == 1 else f"{stem}-{i}{suffix}"))
        if not any(p.exists() for p in paths.all()):
            return paths
    raise FileExistsError(f"{folder}: no free name {stem}-<n>{suffix} below 10000")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(folder: str | os.PathLike, flag: str) -> Path:
    """Fail now, naming `flag`, when `folder` could not be created or written later: a file stands in its path,
    or the nearest existing folder cannot be written (read-only, no permission). Creates nothing."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise NotADirectoryError(f"{flag}: {existing} is a file, so the folder {folder} cannot be created")
    try:
        fd, probe = tempfile.mkstemp(prefix=".vseam-write-check.", dir=existing)
    except OSError as e:
        raise PermissionError(
            f"{flag}: cannot write in {existing} ({e.strerror}), needed for {folder}"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def check_writable(paths: OutputPaths, flag: str = "--output") -> OutputPaths:
    """`check_folder` for the outputs' folder, and none of the outputs may be a folder."""
    for path in paths.all():
        if path.is_dir():
            raise IsADirectoryError(f"{flag}: {path} is a folder; the {path.name} output must be a file path")
    check_folder(paths.folder, flag)
    return paths


def resolve_metrics_path(output: str | None, default_folder: str | os.PathLike) -> OutputPaths:
    """`--output` of `vseam evaluate`, checked: a file path is used as given (replacing what is there: it was
    asked for); a folder (existing, or written with a trailing `/`) or no `--output` gets a free
    `metrics[-n].json` in it (lmms-eval's `--output_path` is a folder)."""
    if output is None:
        paths = free_name(default_folder)
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        paths = free_name(output)
    else:
        paths = derive(output)
    return check_writable(paths)
