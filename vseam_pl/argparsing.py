"""One parser style for every `vseam` command: jsonargparse, one flag spelling (underscores), `-c/--config` YAML.

`train` and `evaluate` are LightningCLIs and `export` a jsonargparse `CLI`; the other tools build their flags with
this module's `ArgumentParser`, a `jsonargparse.ArgumentParser` that keeps argparse's `add_argument` API and adds
what the LightningCLIs have: `-c/--config FILE` (a YAML mapping of flag names to values; several files are merged in
order and flags given on the command line win; an unknown key is an error naming it) and `--print_config`. Every
hyphenated long option also gets its underscore spelling, which is the documented one (`--batch_size`), so older
command lines (`--batch-size`) keep working; `underscore_flags` gives the jsonargparse tools the same aliases.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import jsonargparse


def _text(value: Any) -> str:
    return str(value)


# an option without a type reads a string on the command line; from a YAML file it must be one too (`batch_size: 8`
# is "8", as `--batch_size 8` is)
_text.__name__ = "str"


class _HelpFormatter(jsonargparse.DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions (the tools' docstrings) keep their line breaks; an untyped option shows `type: str` (not the
    converter's repr), and argparse's `%%` escape shows as `%` (jsonargparse does not expand it)."""

    def _get_type_str(self, action: argparse.Action) -> str | None:
        return "str" if action.type is _text else super()._get_type_str(action)

    def _expand_help(self, action: argparse.Action) -> str:
        return super()._expand_help(action).replace("%%", "%")


class ArgumentParser(jsonargparse.ArgumentParser):
    """`jsonargparse.ArgumentParser` with `-c/--config`, underscore aliases for hyphenated long options and no
    prefix abbreviations. `parse_args` returns the flags only (not the config file names), as argparse did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a prefix of a flag (`--batch` for `--batch_size`) must fail, as LightningCLI's keys do
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        # run as `vseam synth`: usage and errors name that, not the module
        if sys.argv[0].startswith("vseam "):
            kwargs["prog"] = sys.argv[0]
        super().__init__(*args, **kwargs)
        super().add_argument(
            "-c",
            "--config",
            action=jsonargparse.ActionConfigFile,
            help="YAML file of flag values (keys: the flag names); flags given after it win",
        )

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _aliasing(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> Any:
        return _aliasing(super().add_mutually_exclusive_group(*args, **kwargs))

    def add_argument(self, *names: Any, **kwargs: Any) -> Any:
        return super().add_argument(*with_underscore_aliases(names), **_typed(kwargs))

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:
        ns = super().parse_args(*args, **kwargs)
        if (
            "config" in ns
        ):  # its values are in the namespace; tools that record their settings must not see paths
            del ns["config"]
        return ns


def _typed(kwargs: dict[str, Any]) -> dict[str, Any]:
    takes_value = kwargs.get("action") in (None, "store", "append") and kwargs.get("nargs") != 0
    return {"type": _text, **kwargs} if takes_value else kwargs


def _aliasing(group: Any) -> Any:
    plain = group.add_argument
    group.add_argument = lambda *names, **kw: plain(*with_underscore_aliases(names), **_typed(kw))
    return group


def with_underscore_aliases(names: tuple[Any, ...]) -> tuple[Any, ...]:
    """`("--batch-size",)` -> `("--batch_size", "--batch-size")` and `("--data_root",)` -> `("--data_root",
    "--data-root")`: the underscore spelling first, so help and `dest` show it, then the hyphenated alias."""
    out: list[Any] = []
    for name in names:
        if isinstance(name, str) and name.startswith("--") and ("-" in name[2:] or "_" in name[2:]):
            key = name[2:]
            spellings = ["--" + key.replace("-", "_"), "--" + key.replace("_", "-")]
        else:
            spellings = [name]
        out += [s for s in spellings if s not in out]
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
