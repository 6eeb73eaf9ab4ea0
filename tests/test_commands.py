"""`vseam`: one command whose subcommands are the tools' own programs, and one flag spelling (underscores) for all."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from vseam_pl.argparsing import ArgumentParser, underscore_flags, with_underscore_aliases
from vseam_pl.commands import COMMANDS, main, resolve

REPO = Path(__file__).resolve().parents[1]
DESIGN = {"train", "evaluate", "discover", "trace", "edit", "synth", "export", "compare", "sweep", "headroom"}


def test_every_stage_is_a_subcommand_with_a_docs_page():
    assert set(COMMANDS) == DESIGN
    for name, command in COMMANDS.items():
        assert callable(resolve(name)), name
        assert (REPO / command.guide).is_file(), f"{name}: {command.guide} does not exist"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in DESIGN)


def test_unknown_command_is_an_error(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(DESIGN))
def test_each_subcommand_has_help_and_takes_a_config_file(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "-c CONFIG, --config CONFIG" in text or "--config CONFIG" in text  # export: --config is the card's
    assert "--print_config" in text


def test_a_config_file_is_the_flags_written_as_yaml(tmp_path):
    from vseam_pl.discover import parser

    (tmp_path / "d.yaml").write_text(
        "model: m\npairs: p\nout: o\nbatch-size: 8\ntop_k: 3\nlevels: [object, relation]\n"
        "init_clip: [0.5, 2]\ninit_normalize: false\nfilter: true\n"
    )
    flags = [*("--model", "m", "--pairs", "p", "--out", "o", "--batch_size", "8", "--top_k", "5"), "--filter"]
    flags += [*("--levels", "object", "relation", "--init_clip", "0.5", "2"), "--no-init_normalize"]
    by_file = vars(parser().parse_args(["-c", str(tmp_path / "d.yaml"), "--top-k", "5"]))  # the flag wins
    assert by_file == vars(parser().parse_args(flags))
    assert by_file["batch_size"] == 8  # a number, as on the command line (discover reads "auto" too)
    assert (by_file["top_k"], by_file["init_clip"], by_file["init_normalize"]) == (5, [0.5, 2.0], False)
    assert "config" not in by_file  # settings recorded by the studies hold values, not file names


def test_an_unknown_config_key_fails_naming_it(tmp_path, capsys):
    from vseam_pl.trace import build_parser

    (tmp_path / "t.yaml").write_text("model: m\npairs: p\nout: o\nmin_gapp: 0.1\n")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["-c", str(tmp_path / "t.yaml")])
    assert exit_.value.code == 2 and "'min_gapp' is not accepted" in capsys.readouterr().err


def test_print_config_round_trips(tmp_path, capsys):
    from vseam_pl.studies.sweep import parse_config

    flags = ["--fractions", "0.1", "0.5", "--seeds", "3", "--data-root", "w", "--lr", "0.1"]
    with pytest.raises(SystemExit):
        parse_config([*flags, "--print_config"])
    (tmp_path / "s.yaml").write_text(capsys.readouterr().out)
    assert parse_config(["-c", str(tmp_path / "s.yaml")]) == parse_config(flags)


def test_jsonargparse_tools_take_hyphenated_aliases():
    assert underscore_flags(
        ["--trainer.max-epochs", "2", "--push-to-hub=a-b", "-c", "x-y.yaml", "--", "--a-b"]
    ) == [
        "--trainer.max_epochs",
        "2",
        "--push_to_hub=a-b",
        "-c",
        "x-y.yaml",
        "--",
        "--a_b",
    ]


def test_argparse_tools_take_underscores_and_hyphens(capsys):
    with pytest.raises(SystemExit):
        main(["discover", "--help"])
    text = capsys.readouterr().out
    assert "--batch_size" in text and "--batch-size" in text and "--top_k" in text
    from vseam_pl.discover import parser

    base = ["--model", "m", "--pairs", "p", "--out", "o"]
    under = parser().parse_args([*base, "--batch_size", "8", "--top_k", "3", "--min_edit_effect", "0.2"])
    hyphen = parser().parse_args([*base, "--batch-size", "8", "--top-k", "3", "--min-edit-effect", "0.2"])
    assert vars(under) == vars(hyphen)
    assert (under.batch_size, under.top_k, under.min_edit_effect) == (8, 3, 0.2)


def test_prefixes_of_flags_are_refused():
    p = ArgumentParser(prog="x")
    p.add_argument("--batch-size", type=int)
    with pytest.raises(SystemExit):
        p.parse_args(["--batch", "3"])


def test_alias_rule():
    assert with_underscore_aliases(("--n-val",)) == ("--n_val", "--n-val")
    assert with_underscore_aliases(("--out", "-o")) == ("--out", "-o")
    assert with_underscore_aliases(("--data_root",)) == ("--data_root", "--data-root")
    assert with_underscore_aliases(("--init_clip", "--init-clip")) == ("--init_clip", "--init-clip")


def test_vseam_synth_writes_the_world(tmp_path, capsys):
    assert (
        main(["synth", "--out", str(tmp_path / "w"), "--n_images", "4", "--n_val", "2", "--n_test", "2"]) == 0
    )
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "val", "test"}
    assert (tmp_path / "w" / "test" / "pairs" / "pairs.jsonl").is_file()


def test_module_alias_runs_the_dispatcher(monkeypatch, capsys):
    """`python -m vseam_pl.commands --help`, run in-process as `-m` runs it (a subprocess adds only an import)."""
    monkeypatch.setattr(sys, "argv", ["vseam_pl.commands", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("vseam_pl.commands", run_name="__main__")
    assert done.value.code == 0 and "sweep" in capsys.readouterr().out


def test_vseam_edit_plan_table_on_the_release_files(shared_data, capsys):
    assert (
        main(["edit", "plan-table", "--questions", str(shared_data / "GQA" / "Spatial.json"), "--rows", "3"])
        == 0
    )
    out = capsys.readouterr().out
    assert "| Spatial.json | 1000 |" in out and out.count("| relation |") == 3
