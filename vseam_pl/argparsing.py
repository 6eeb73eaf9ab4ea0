"""The argparse parser every vseam-pl tool uses, so that all long flags have one spelling.

LightningCLI (train, evaluate) spells keys with underscores (`--trainer.max_epochs`, `--batch_size`); the argparse
tools historically used hyphens (`--batch-size`). This parser registers the underscore spelling of every hyphenated
long option as well, so the documented spelling (underscores) works everywhere and old command lines keep working.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with underscore aliases for hyphenated long options and no prefix abbreviations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a prefix of a flag (`--batch` for `--batch_size`) must fail, as LightningCLI's keys do
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _aliasing(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> Any:
        return _aliasing(super().add_mutually_exclusive_group(*args, **kwargs))

    def add_argument(self, *names: Any, **kwargs: Any) -> Any:
        return super().add_argument(*with_underscore_aliases(names), **kwargs)


def _aliasing(group: Any) -> Any:
    plain = group.add_argument
    group.add_argument = lambda *names, **kw: plain(*with_underscore_aliases(names), **kw)
    return group


def with_underscore_aliases(names: tuple[Any, ...]) -> tuple[Any, ...]:
    """`("--batch-size",)` -> `("--batch_size", "--batch-size")`: underscores first, so help and `dest` show them."""
    out: list[Any] = []
    for name in names:
        if isinstance(name, str) and name.startswith("--") and "-" in name[2:]:
            alias = "--" + name[2:].replace("-", "_")
            if alias not in names and alias not in out:
                out.append(alias)
        out.append(name)
    return tuple(out)


def underscore_flags(argv: list[str] | None) -> list[str]:
    """The jsonargparse tools' (train, evaluate, export) command line with hyphenated long flags spelled with
    underscores (`--trainer.max-epochs 2` -> `--trainer.max_epochs 2`, `--push-to-hub=x` -> `--push_to_hub=x`):
    their keys are Python names, so this is the one spelling, and the hyphenated one stays an alias. Values are
    left alone. `None` reads `sys.argv`."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            key, eq, value = arg[2:].partition("=")
            arg = "--" + key.replace("-", "_") + eq + value
        out.append(arg)
    return out
