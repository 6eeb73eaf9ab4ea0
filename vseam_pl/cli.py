"""What `train.py` and `evaluate.py` share: the Lightning CLI, synthetic-data bootstrap, and the run's outputs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from .argparsing import underscore_flags
from .cli_help import full_help_argv, short_help, wants_short_help
from .distributed import all_gather_object
from .evaluation import Outcome
from .io import write_text
from .outputs import METRICS_NAME, SCALES_NAME, OutputPaths, check_folder, check_writable, derive
from .report import format_table, write_metrics_json
from .resume import check_checkpoint, read_checkpoint, same_model
from .samples import write_samples
from .signals import track
from .synth import generate_benchmarks
from .versions import exclusive_versions

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


def gather_skipped(skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every rank's skipped records (source, reason), each once: a rank only sees the bad images of its own shard.
    Every rank must call it."""
    parts = all_gather_object(list(skipped))
    merged: dict[str, str] = {}
    for part in parts:
        for source, reason in part:
            merged.setdefault(source, reason)
    return list(merged.items())


def ensure_synthetic(root: str | os.PathLike | None, seed: int = 0) -> None:
    """Generate the synthetic world at `root` unless it is complete already (a no-op then)."""
    if root is None:
        return
    if not (Path(root) / "manifest.json").exists():
        rank_zero_info(f"generating the synthetic benchmarks in {root} (seed {seed}) ...")
    generate_benchmarks(root, seed=seed)


class VSeamCLI(LightningCLI):
    """LightningCLI with vseam-pl's extra top-level keys (`synth_root`, `ckpt_path`, `output_dir`)."""

    def init_parser(self, **kwargs: Any) -> Any:
        # argparse would accept a prefix of a key (`--trainer.max_epoch` for max_epochs): an unknown key must fail.
        kwargs.setdefault("allow_abbrev", False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Hyphenated long flags are aliases of the underscore keys (`underscore_flags`); `args=None` reads
        `sys.argv` (no warning when `vseam` passes the same list)."""
        if isinstance(args, dict | Namespace):
            self.config = parser.parse_object(args)
        else:
            argv = list(sys.argv[1:] if args is None else args)
            if wants_short_help(argv):  # LightningCLI's own help is ~600 lines: that is `--help_all`
                print(short_help(parser, parser.prog, self.help_summary()), end="")
                raise SystemExit(0)
            self.config = parser.parse_args(underscore_flags(full_help_argv(argv)))
        model = self.config.get("model")
        if model is not None and isinstance(model.get("model"), str):
            model["model"] = package_path(model["model"])

    def help_summary(self) -> str:
        """The first line of `--help`: the subcommand's summary and guide when run as `vseam <name>`."""
        from .commands import COMMANDS

        name = sys.argv[0].removeprefix("vseam ")
        if name in COMMANDS:
            return f"{COMMANDS[name].summary} (guide: {COMMANDS[name].guide})"
        return (self.parser.description or "").strip().split("\n")[0] if hasattr(self, "parser") else ""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--synth_root",
            type=str | None,
            default=None,
            help="generate the synthetic world here first if it is missing (the embedded default)",
        )
        parser.add_argument("--synth_seed", type=int, default=0)
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume fit from this checkpoint ('last' for the newest in the run's checkpoint dir)",
        )
        parser.add_argument(
            "--output_dir",
            type=str | None,
            default=None,
            help="where head_scales.safetensors and metrics.json go (default: the logger's run dir)",
        )

    def input_files(self) -> list[tuple[str, str]]:
        """(flag, path) of the files the command line names and the run reads."""
        init = self.config.get("model.init_scales")
        ckpt = self.config.get("ckpt_path")
        named = [("--ckpt_path", None if ckpt == "last" else ckpt), ("--model.init_scales", init)]
        return [(flag, path) for flag, path in named if path and path != "ones"]

    def check_inputs(self) -> None:
        """A named input file that does not exist is one `error:` line, before the model is loaded."""
        for flag, path in self.input_files():
            if not Path(path).is_file():
                self.parser.error(f"{flag} {path}: no such file")

    def before_instantiate_classes(self) -> None:
        """Fail on a missing input or an unwritable destination before the model is loaded and trained (not
        after), in one `error:` line."""
        self.check_inputs()
        try:
            if self.config.get("output_dir"):
                check_writable(derive(Path(self.config["output_dir"]) / METRICS_NAME, True), "--output_dir")
            else:
                root = self.config["trainer"].get("default_root_dir") or "."
                check_folder(root, "--trainer.default_root_dir")
        except (OSError, ValueError) as e:
            self.parser.error(str(e))

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        track(self.trainer)  # a SIGTERM report names its last checkpoint (vseam_pl.signals)
        exclusive_versions(self.trainer.loggers)  # concurrent runs under one root never share version_N
        vlm = getattr(self.model, "vlm", None)
        model = (vlm.name, (vlm.num_layers, vlm.num_heads, vlm.head_dim)) if vlm is not None else None
        if self.config.get("ckpt_path") == "last":
            self.config["ckpt_path"] = resolve_last_checkpoint(checkpoint_roots(self.trainer), model)
        elif self.config.get("ckpt_path") and model is not None:  # fail before any training, naming the file
            check_checkpoint(
                read_checkpoint(self.config["ckpt_path"]), *model, where=self.config["ckpt_path"]
            )


def package_path(value: str) -> str:
    """A relative path of the embedded recipes (``checkpoints/tiny-instructblip``) that does not exist in the
    working directory but does in the package's repository: that folder, absolute. Run from another folder, the
    default recipe's relative model path otherwise reached the hub as a repo id ("couldn't connect" offline)."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists() or not (REPO_ROOT / path).exists():
        return value
    rank_zero_info(f"{value}: not in the working directory; using the package's {REPO_ROOT / path}")
    return str(REPO_ROOT / path)


def checkpoint_roots(trainer: Any) -> list[Path]:
    """Where earlier runs of this configuration keep checkpoints: the trainer's root dir and each logger's root."""
    roots = [Path(trainer.default_root_dir)]
    roots += [Path(logger.root_dir) for logger in trainer.loggers if getattr(logger, "root_dir", None)]
    return list(dict.fromkeys(roots))


def resolve_last_checkpoint(
    roots: list[Path], model: tuple[str, tuple[int, ...]] | None = None
) -> str | None:
    """`--ckpt_path last`: the newest `last*.ckpt` under `roots` (every logger version counts, so a new run
    resumes the previous one) written for `model` ((name, head grid); any model when None), or None with a warning
    when there is none yet (so `last` can be always set)."""
    found = [p for root in roots if root.is_dir() for p in root.rglob("last*.ckpt")]
    if model is not None:
        others = [p for p in found if same_model(read_checkpoint(p), *model)]
        if others:
            rank_zero_info(
                f"--ckpt_path last: ignoring {len(others)} checkpoint(s) of other models (e.g. {others[0]})"
            )
        found = [p for p in found if p not in others]
    if not found:
        rank_zero_warn(
            f"--ckpt_path last: no last*.ckpt under {', '.join(map(str, roots))}; starting from scratch"
        )
        return None
    newest = max(found, key=lambda p: (p.stat().st_mtime, str(p)))
    rank_zero_info(f"--ckpt_path last: resuming from {newest}")
    return str(newest)


def run_dir(trainer: Any, output_dir: str | None) -> Path:
    if output_dir:
        return Path(output_dir)
    return Path(trainer.log_dir or trainer.default_root_dir)


@rank_zero_only
def write_outputs(
    out: Path | OutputPaths,
    model_name: str,
    rows: list[dict],
    modulation: Any | None,
    extra: dict | None = None,
    metrics_name: str = METRICS_NAME,
    scales_path: str | None = None,
    outcomes: Sequence[Outcome] | None = None,
) -> dict[str, Path]:
    """Write head_scales.safetensors (when `modulation` is given), metrics.json, metrics.txt and, with `outcomes`
    (the module's `test_outcomes`), the per-question samples `metrics.samples.jsonl`; print the table and, last,
    the paths. `out` is a folder (the files get `metrics_name`'s stem) or the `OutputPaths` checked before the run."""
    paths_out = (
        out if isinstance(out, OutputPaths) else derive(Path(out) / metrics_name, modulation is not None)
    )
    paths_out.folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if modulation is not None:
        paths["scales"] = modulation.save(paths_out.scales or paths_out.folder / SCALES_NAME)
        scales_path = str(paths["scales"])
    extra = dict(extra or {})
    if outcomes is not None:
        parser = extra.get("answer_parser", "vseam")
        paths["samples"] = write_samples(paths_out.samples, outcomes, parser)
        extra["samples"] = paths_out.samples.name
    table = format_table(rows)
    paths["metrics"] = write_metrics_json(paths_out.metrics, model_name, scales_path, rows, extra)
    paths["table"] = write_text(paths_out.table, table + "\n")
    paths = {k: paths[k] for k in ("scales", "metrics", "table", "samples") if k in paths}
    print()
    print(table)
    print()
    for name, path in paths.items():
        print(f"{name:>8}: {path}")
    return paths


def synthetic_conventions(root: str | os.PathLike) -> dict[str, Any]:
    """The image-name conventions a synthetic-world root records in its manifest ({} for other roots)."""
    import json

    manifest = Path(root) / "manifest.json"
    if not manifest.exists():
        return {}
    return json.loads(manifest.read_text()).get("conventions", {})
