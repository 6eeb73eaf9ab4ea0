"""`vseam train --help` / `vseam evaluate --help` on one screen.

LightningCLI's help lists every key of the Trainer, the module, the optimizer and the scheduler (about 600 lines).
The short help shows what a first run needs — vseam's own keys, every `--model.*` key, the data class, the Trainer
keys recipes set — each with its current value (after `configs/default.yaml` and any `-c` file); `--help_all`
prints LightningCLI's full help, `--data.help CLASS` one DataModule's keys.
"""

from __future__ import annotations

import textwrap
from typing import Any

#: The Trainer keys the recipes and guides use; `--help_all` lists the rest.
TRAINER_KEYS: tuple[str, ...] = (
    "accelerator",
    "devices",
    "strategy",
    "precision",
    "max_epochs",
    "max_steps",
    "default_root_dir",
    "log_every_n_steps",
    "accumulate_grad_batches",
    "callbacks",
    "logger",
    "enable_progress_bar",
)
#: Options LightningCLI adds that a first run does not need (the optimizer is set by `model.lr`).
HIDDEN: frozenset[str] = frozenset({"optimizer", "lr_scheduler", "seed_everything"})
HELP_FLAGS = ("-h", "--help")
FULL_HELP_FLAG = "--help_all"


def wants_short_help(argv: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv) and FULL_HELP_FLAG not in argv


def full_help_argv(argv: list[str]) -> list[str]:
    """`--help_all` is LightningCLI's own `--help`."""
    return ["--help" if a == FULL_HELP_FLAG else a for a in argv]


def _first_sentence(text: str | None) -> str:
    text = " ".join((text or "").split())
    for end in (". ", ".\n"):
        if end in text:
            text = text[: text.index(end) + 1]
    return text.removesuffix(" Default: ``None``.")


def _line(flag: str, text: str, value: Any, width: int = 110) -> str:
    now = "" if value is None else f"(now: {value})"
    body = textwrap.wrap(f"{text} {now}".strip(), width - 28) or [""]
    indent = " " * 28
    if len(flag) > 25:  # the flag on its own line, the text below it
        return "\n".join([f"  {flag}", *(indent + b for b in body)])
    return "\n".join([f"  {flag:<26}" + body[0], *(indent + b for b in body[1:])])


def short_help(parser: Any, prog: str, summary: str) -> str:
    """The one-screen help of a VSeamCLI parser: `summary`, then vseam's keys, `model.*`, `data`, common
    `trainer.*` keys, each with its current value."""
    defaults = parser.get_defaults()
    actions = {a.dest: a for a in parser._actions}

    def value(dest: str) -> Any:
        try:
            v = defaults[dest]
        except KeyError:
            return None
        if hasattr(v, "class_path"):
            return v.class_path
        if isinstance(v, list) and v and all(hasattr(x, "class_path") for x in v):
            return ", ".join(x.class_path.rsplit(".", 1)[-1] for x in v)
        return v

    def rows(dests: list[str]) -> list[str]:
        return [_line(f"--{d}", _first_sentence(actions[d].help), value(d)) for d in dests if d in actions]

    own = [
        d
        for d in actions
        if "." not in d and d not in {"help", "config", "print_config", "trainer", "model", "data"}
    ]
    own = [d for d in own if d not in HIDDEN]
    model = [d for d in actions if d.startswith("model.") and not d.endswith(".help")]
    n_keys = sum(1 for a in parser._actions if a.option_strings)
    lines = [
        f"usage: {prog} [-h] [--help_all] [-c CONFIG] [--print_config] [--KEY VALUE ...]",
        "",
        summary,
        "",
        "options:",
        _line("-h, --help", "this summary", None),
        _line("--help_all", f"every key ({n_keys} options), as LightningCLI prints them", None),
        _line(
            "-c CONFIG, --config CONFIG",
            "a recipe (configs/*.yaml) or a run's config.yaml; later flags win",
            None,
        ),
        _line("--print_config", "print the resolved configuration (every key's value) and exit", None),
        "",
        "vseam:",
        *rows(own),
        "",
        "model (vseam_pl.lit_module.HeadModulationModule):",
        *rows(model),
        "",
        "data:",
        _line(
            "--data CLASS",
            "the LightningDataModule (vseam_pl.data.*); --data.help CLASS lists its keys",
            value("data"),
        ),
        "",
        "trainer (the keys the recipes set; --help_all lists all):",
        *rows([f"trainer.{k}" for k in TRAINER_KEYS]),
    ]
    return "\n".join(lines) + "\n"
