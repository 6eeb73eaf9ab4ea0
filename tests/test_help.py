"""`vseam <command> --help` reads like the rest of the ecosystem's and is fast (issue 30.8): usage names the `vseam`
subcommand, types read `str`, `%` is not escaped, train/evaluate fit on a screen (`--help_all` keeps
LightningCLI's full help), and `vseam edit --help` does not import the editing stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vseam_pl.commands import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def help_text(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setattr(sys, "argv", ["vseam"])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_the_subcommand_and_shows_plain_types(name, capsys, monkeypatch):
    text = help_text([name, "--help"], capsys, monkeypatch)
    assert text.startswith(f"usage: vseam {name} "), text.splitlines()[0]
    assert "<function" not in text and " at 0x" not in text
    assert "%%" not in text
    assert len(text.splitlines()) < 160, f"{name} --help is {len(text.splitlines())} lines"


def test_percent_signs_are_shown_once(capsys, monkeypatch):
    assert "over 25% of the synthetic train split" in " ".join(
        help_text(["compare", "--help"], capsys, monkeypatch).split()
    )


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_short_help_shows_current_values_and_help_all_the_full_tree(name, capsys, monkeypatch):
    short = help_text([name, "--help"], capsys, monkeypatch)
    default = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())["model"]["model"]
    assert "--model.model" in short and f"(now: {default})" in " ".join(short.split())
    assert "--trainer.max_epochs" in short and "--trainer.gradient_clip_val" not in short
    full = help_text([name, "--help_all"], capsys, monkeypatch)
    assert "--trainer.gradient_clip_val" in full and len(full.splitlines()) > 300


def test_edit_help_does_not_import_the_editing_stack():
    code = (
        "import sys\n"
        "from vseam_pl.commands import main\n"
        "try:\n    main(['edit', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('diffusers', 'lightning', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_edit_dtype_choices_are_the_inpainters():
    from vseam_pl.edit import DTYPE_NAMES
    from vseam_pl.editing.inpaint import DTYPES

    assert sorted(DTYPE_NAMES) == sorted(DTYPES)
