"""`vseam`: one command for every stage, dispatching to the tools' own `main(argv)`.

    vseam <command> [flags]     vseam <command> --help     vseam --help

Each subcommand is the same program as its older entry point (`python train.py`, `python evaluate.py`,
`python -m vseam_pl.<tool>`), which stay as aliases.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", the function takes argv
    summary: str
    guide: str  # docs page


COMMANDS: dict[str, Command] = {
    "synth": Command(
        "vseam_pl.synth.__main__:main",
        "generate the synthetic world and its exact edited pairs",
        "docs/guides/data.md",
    ),
    "edit": Command(
        "vseam_pl.edit:cli",
        "edit real GQA photos into clean/edited pairs with diffusers",
        "docs/guides/editing.md",
    ),
    "discover": Command(
        "vseam_pl.discover:main",
        "score every head by ablation, patching or attribution",
        "docs/guides/discovery.md",
    ),
    "trace": Command(
        "vseam_pl.trace:main",
        "layer/token patching and the logit lens on image pairs",
        "docs/guides/tracing.md",
    ),
    "train": Command(
        "vseam_pl.train:main",
        "learn per-head scales of a frozen VLM, then test them (LightningCLI)",
        "docs/guides/training.md",
    ),
    "evaluate": Command(
        "vseam_pl.evaluate:main",
        "baseline vs modulated on GQA, POPE and COCO-QA",
        "docs/guides/evaluation.md",
    ),
    "export": Command(
        "vseam_pl.export:main",
        "write scales as a merged model (or an adapter) with a model card",
        "docs/sharing.md",
    ),
    "compare": Command(
        "vseam_pl.studies.compare:main",
        "every method (discovery, random heads, IA3, LoRA, ...) on the same test questions",
        "docs/results.md",
    ),
    "sweep": Command(
        "vseam_pl.studies.sweep:main", "low-data ablation: training fractions x seeds", "docs/results.md"
    ),
    "headroom": Command(
        "vseam_pl.studies.headroom:main",
        "is the answer in the frozen model? AUROC and best-threshold accuracy of its yes/no margin",
        "docs/results.md",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = [f"  {name:<{width}}  {c.summary}  [{c.guide}]" for name, c in COMMANDS.items()]
    return (
        "usage: vseam <command> [flags]   (vseam <command> --help for its flags)\n\ncommands:\n"
        + "\n".join(rows)
    )


def resolve(name: str):
    """The `main(argv)` function of a subcommand."""
    module, func = COMMANDS[name].target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vseam: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    sys.argv = [f"vseam {name}", *rest]  # so each tool's --help and errors name the command
    run = resolve(name)
    if name == "train":  # SIGTERM: exit 143 naming the last checkpoint, never 0 (evaluate wraps itself)
        from .signals import stop_on_sigterm

        run = stop_on_sigterm(run, "vseam train")
    result = run(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
